"""Teacher-forced scoring: every per-token metric of a response under both models.

`score_traces` runs one forward pass per model per batch over prompt+response, takes the
logits that predict each response token, and computes the registered metrics
(core/metrics.py) and both models' top-k in row chunks, so that no more than
`chunk_rows` x vocabulary floats are expanded at once beyond the batch's logits.

GPU path (untested here: no CUDA on the development machine; tests/test_gpu_scoring.py runs
on a GPU and skips elsewhere): models run in bf16 (core.engine.pair.pick_device);
`batch_size=0` sizes batches from free GPU memory (`auto_batch_size`); the two models may sit
on two devices (core.engine.pair.place_pair), the tuned logits then move to the base logits'
device for the metric math, which runs in float32 on CUDA and float64 on CPU. Full-vocabulary
JS is computed on the device that holds the logits. At most one batch of logits per model
exists at a time. On CPU every result is byte-identical to the pre-GPU code.

Output is columnar (dict of numpy arrays) in the order of the input traces, ready for
core.store.storage. Shapes: for T response tokens in all, every column has length T; top-k
columns are (T, k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.engine.batching import Columns, padded_batches, row_offsets, token_ids
from core.metrics import compute_metrics, rank_of, topk


@dataclass
class ScoreSettings:
    batch_size: int = 16       # traces per forward pass; 0 = auto from free GPU memory
    top_k: int = 10            # top-k lists stored per position and model
    js_top_p: float = 0.7      # nucleus for the `js_top_p` column
    chunk_rows: int = 4096     # positions expanded at once for the metric math


def auto_batch_size(free_bytes: int, max_len: int, vocab: int, hidden: int, *,
                    logit_bytes: int = 4, chunk_rows: int = 4096, safety: float = 0.5,
                    cap: int = 256) -> int:
    """Traces per batch that fit in `free_bytes` of accelerator memory.

    Per token of a batch, the two models hold: their logits (HF may upcast to float32, so
    `logit_bytes` = 4 by default) and the response-row copy `response_logits` makes, i.e.
    4 * vocab * logit_bytes; plus transient activations of the layer being run, taken as
    16 * hidden * 2 bytes (bf16: residual, attention and MLP intermediates). The metric math
    expands `chunk_rows` rows at a time into about 8 float32 (N, V) tensors, reserved first:

        batch = floor(safety * (free - 8 * 4 * chunk_rows * vocab) /
                      (max_len * (4 * vocab * logit_bytes + 32 * hidden)))

    clamped to [1, cap]. `safety` leaves room for the allocator and KV/attention workspace.
    """
    reserve = 8 * 4 * chunk_rows * vocab
    per_token = 4 * vocab * logit_bytes + 32 * hidden
    usable = max(0.0, safety * (free_bytes - reserve))
    return int(max(1, min(cap, usable // max(1, max_len * per_token))))


def _resolve_batch_size(settings: "ScoreSettings", base, lengths: list[int]) -> int:
    if settings.batch_size > 0:
        return settings.batch_size
    dev = next(base.parameters()).device
    if dev.type != "cuda" or not lengths:  # CPU: the old default
        return 16
    # UNTESTED here (no CUDA on the development machine).
    free, _ = torch.cuda.mem_get_info(dev)
    cfg = getattr(base, "config", None)
    vocab = int(getattr(cfg, "vocab_size", 0) or 0) or 152_000
    hidden = int(getattr(cfg, "hidden_size", 0) or 0) or 4096
    return auto_batch_size(free, max(lengths), vocab, hidden, chunk_rows=settings.chunk_rows)


def _forward(model, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    dev = next(model.parameters()).device
    with torch.no_grad():
        return model(input_ids=ids.to(dev), attention_mask=attn.to(dev)).logits


def response_logits(logits: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Rows of `logits` (B, L, V) that predict response tokens: for row b with prompt length
    p and response length r, positions p-1 .. p+r-2. Returns (sum r, V)."""
    return torch.cat([logits[b, p - 1:p + r - 1] for b, (p, r) in enumerate(spans)])


def score_traces(base, tuned, traces: list[tuple[list[int], list[int]]], pad_id: int,
                 settings: ScoreSettings = ScoreSettings(), progress=None) -> dict:
    """Score `traces` = [(prompt_ids, response_ids), ...] under both models.

    Returns {"offsets": (n_traces+1,) int64 row offsets per trace, "token_id": (T,),
    each metric name: (T,), "base_topk_ids"/"tuned_topk_ids": (T, k) int, "..._probs": (T, k),
    "tuned_top1_rank_base": (T,), "tuned_top1_prob_base": (T,)}.
    """
    lengths = [len(p) + len(r) for p, r in traces]
    offsets = row_offsets(traces)
    cols = Columns(int(offsets[-1]))
    put = cols.put

    size = _resolve_batch_size(settings, base, lengths)
    for ids, attn, spans, tok, rows in padded_batches(traces, pad_id, size, offsets):
        lb = response_logits(_forward(base, ids, attn), spans)
        lt = response_logits(_forward(tuned, ids, attn), spans)
        lt = lt.to(lb.device)  # two-GPU placement: metric math on one device (no-op otherwise)
        mdtype = torch.float64 if lb.device.type == "cpu" else torch.float32
        tok = tok.to(lb.device)
        for s in range(0, len(tok), settings.chunk_rows):
            sl = slice(s, s + settings.chunk_rows)
            cb, ct, tk = lb[sl].to(mdtype), lt[sl].to(mdtype), tok[sl]
            for name, v in compute_metrics(cb, ct, tk, settings.js_top_p).items():
                put(name, rows[sl], v)
            b_ids, b_probs = topk(cb, settings.top_k)
            t_ids, t_probs = topk(ct, settings.top_k)
            put("base_topk_ids", rows[sl], b_ids)
            put("base_topk_probs", rows[sl], b_probs)
            put("tuned_topk_ids", rows[sl], t_ids)
            put("tuned_topk_probs", rows[sl], t_probs)
            logp_b = torch.log_softmax(cb, -1)
            put("tuned_top1_rank_base", rows[sl], rank_of(logp_b, t_ids[:, 0]))
            put("tuned_top1_prob_base", rows[sl], logp_b.gather(-1, t_ids[:, :1]).squeeze(-1).exp())
        if progress is not None:
            progress(len(tok))
    cols["token_id"] = token_ids(traces)
    cols["offsets"] = offsets
    return dict(cols)
