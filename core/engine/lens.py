"""The logit lens of two models at once: each decoder layer's residual stream read out
through the model's own final norm and output head, and per layer how far the two models
are apart and how far each is from its own final distribution.

Works on Llama/Qwen2-style decoders: `model.model.layers` (a list of decoder layers whose
output is the residual stream, a tensor or a tuple whose first item is), `model.model.norm`
and `model.lm_head`; anything else is refused with one line (PairError) before any
forward pass. Layer 0 is the token embedding, layer l (1..L) the residual stream after
decoder layer l; layer L read out this way is exactly the model's output distribution.

Positions are rows of the full (prompt + response) sequence: the row that predicts
response token `pos` is `len(prompt) + pos - 1`. Metric math runs in float64 on the CPU
and float32 on accelerators, on the rows asked for only (never L x T x V at once).

Does not: load models, read or write run folders (core.experiments.layers does), patch
activations (core.engine.patching does).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from core.errors import PairError
from core.metrics.kernels import entropy_from_logprobs, js_from_logprobs, kl_from_logprobs


def decoder_parts(model, role: str = "model"):
    """(embedding, decoder layers, final norm, output head) of a Llama/Qwen2-style causal LM,
    else PairError naming what is missing."""
    body = getattr(model, "model", None)
    layers = getattr(body, "layers", None)
    norm = getattr(body, "norm", None)
    embed = getattr(body, "embed_tokens", None)
    head = getattr(model, "lm_head", None)
    if not (isinstance(layers, torch.nn.ModuleList) and len(layers) and norm is not None
            and embed is not None and isinstance(head, torch.nn.Module)):
        raise PairError(f"{role}: layer views need a Llama/Qwen2-style decoder "
                        "(model.model.layers, model.model.norm, model.lm_head); "
                        f"{type(model).__name__} is not one")
    return embed, layers, norm, head


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@contextmanager
def residual_capture(model):
    """Collects the residual stream of one forward pass: yields a list that fills with
    L + 1 tensors (1, T, H): the embedding output, then each decoder layer's output."""
    embed, layers, _, _ = decoder_parts(model)
    got: list[torch.Tensor] = []
    hooks = [embed.register_forward_hook(lambda m, i, o: got.append(_first(o)))]
    hooks += [layer.register_forward_hook(lambda m, i, o: got.append(_first(o)))
              for layer in layers]
    try:
        yield got
    finally:
        for h in hooks:
            h.remove()


def math_dtype(device) -> torch.dtype:
    return torch.float64 if torch.device(device).type == "cpu" else torch.float32


@torch.no_grad()
def readout(model, hidden: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Log-probabilities (N, V) of residual rows `hidden` (N, H) through the model's final
    norm and output head (in `dtype`, default the math dtype of its device)."""
    _, _, norm, head = decoder_parts(model)
    logits = head(norm(hidden))
    return torch.log_softmax(logits.to(dtype or math_dtype(logits.device)), -1)


@torch.no_grad()
def residuals(model, ids: list[int], rows: list[int]) -> list[torch.Tensor]:
    """The residual stream at sequence rows `rows` of `ids`: L + 1 tensors (len(rows), H)."""
    dev = next(model.parameters()).device
    with residual_capture(model) as got:
        model(input_ids=torch.tensor([ids], device=dev), logits_to_keep=1)
    idx = torch.tensor(rows, device=dev)
    return [h[0].index_select(0, idx.to(h.device)) for h in got]


@torch.no_grad()
def lens_logprobs(model, ids: list[int], rows: list[int]) -> torch.Tensor:
    """(L + 1, len(rows), V) logit-lens log-probabilities of `model` on `ids` at `rows`."""
    return torch.stack([readout(model, h) for h in residuals(model, ids, rows)])


ROW_CHUNK = 64  # rows read out at once: 4 x ROW_CHUNK x vocabulary floats live at a time


def row_chunks(n: int, size: int = ROW_CHUNK):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@torch.no_grad()
def js_rows(model_a, hidden_a: torch.Tensor, model_b, hidden_b: torch.Tensor,
            chunk: int = ROW_CHUNK) -> np.ndarray:
    """js between `model_a`'s readout of residual rows `hidden_a` and `model_b`'s of
    `hidden_b` (same number of rows), row by row, `chunk` rows at a time: (N,) float64."""
    out = np.empty(len(hidden_a))
    for sl in row_chunks(len(hidden_a), chunk):
        a = readout(model_a, hidden_a[sl])
        b = readout(model_b, hidden_b[sl]).to(a.device)
        out[sl] = js_from_logprobs(a, b).double().cpu().numpy()
    return out


@torch.no_grad()
def compare(base, tuned, ids: list[int], rows: list[int], chunk: int = ROW_CHUNK) -> dict:
    """Per layer and row, the two models' logit lenses compared (all arrays (L+1, len(rows))):
    js (base lens vs tuned lens at the same layer), {m}_kl_final = KL(final || lens) and
    {m}_js_final (each model's lens against its own final distribution), {m}_entropy,
    {m}_top1 (token id) and {m}_top1_prob, for m in base, tuned. Float64 on the CPU. One
    forward per model; the readouts run `chunk` rows at a time (memory: a few chunk x
    vocabulary tensors, never layers x rows x vocabulary)."""
    decoder_parts(base, "base")
    decoder_parts(tuned, "tuned")
    models = {"base": base, "tuned": tuned}
    res = {m: residuals(model, ids, rows) for m, model in models.items()}
    n_layers, n = len(res["base"]), len(rows)
    keys = ["js"] + [f"{m}_{k}" for m in models for k in
                     ("kl_final", "js_final", "entropy", "top1", "top1_prob")]
    out = {k: np.empty((n_layers, n), dtype=np.int64 if k.endswith("top1") else np.float64)
           for k in keys}
    for sl in row_chunks(n, chunk):
        final = {m: readout(models[m], res[m][-1][sl]) for m in models}
        dev = final["base"].device
        for layer in range(n_layers):
            lp = {}
            for m, model in models.items():
                x = final[m] if layer == n_layers - 1 else readout(model, res[m][layer][sl])
                lp[m] = x.to(dev)
                put = {"kl_final": kl_from_logprobs(final[m].to(dev), lp[m]),
                       "js_final": js_from_logprobs(final[m].to(dev), lp[m]),
                       "entropy": entropy_from_logprobs(lp[m])}
                p, i = lp[m].max(-1)
                put["top1"], put["top1_prob"] = i, p.exp()
                for k, v in put.items():
                    out[f"{m}_{k}"][layer, sl] = v.cpu().numpy()
            out["js"][layer, sl] = js_from_logprobs(lp["base"], lp["tuned"]).cpu().numpy()
    return out
