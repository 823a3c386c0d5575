"""Component activation patching between two models of a pair, teacher-forced on one
sequence: run a recipient model with some components' outputs taken from a donor model
(forward hooks that replace the output), so one forward per patched set covers every
position of the sequence.

Components of a Llama/Qwen2-style decoder (core.engine.lens.decoder_parts), in order:
  Component(0, "embed")          the token embedding's output
  Component(l, "attn"), (l, "mlp")  decoder layer l's (1..L) attention and MLP outputs,
                                 each the term it adds to the residual stream
  Component(L + 1, "readout")    the final norm and output head: a weight swap (the
                                 recipient's last residual read out through the donor's norm
                                 and head), as there is no activation to carry over
The residual stream is the sum of embed, attn and mlp terms, so patching every component
gives the donor's distribution exactly and patching none gives the recipient's
(tests/test_layers.py checks both).

`weight_change` is each component's relative weight change |dW| / |W| (Frobenius norms
over its parameters; a layer's input norm counts with its attention, its post-attention
norm with its MLP).

Does not: choose rows or compute shares (core.experiments.attribution), load models.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import torch

from core.engine.lens import decoder_parts, readout, residual_capture

KINDS = ("embed", "attn", "mlp", "readout")


@dataclass(frozen=True, order=True)
class Component:
    layer: int
    kind: str

    @property
    def label(self) -> str:
        return self.kind if self.kind in ("embed", "readout") else f"L{self.layer} {self.kind}"


def components(model) -> list[Component]:
    """Every component of `model`, embedding first, readout last."""
    _, layers, _, _ = decoder_parts(model)
    n = len(layers)
    return ([Component(0, "embed")]
            + [Component(lay, k) for lay in range(1, n + 1) for k in ("attn", "mlp")]
            + [Component(n + 1, "readout")])


def module_of(model, c: Component) -> torch.nn.Module | None:
    """The module whose output is component `c` (None for the readout, a weight swap)."""
    embed, layers, _, _ = decoder_parts(model)
    if c.kind == "embed":
        return embed
    if c.kind == "readout":
        return None
    layer = layers[c.layer - 1]
    return layer.self_attn if c.kind == "attn" else layer.mlp


def _params(model, c: Component) -> list[torch.Tensor]:
    embed, layers, norm, head = decoder_parts(model)
    if c.kind == "embed":
        return [embed.weight]
    if c.kind == "readout":
        return list(norm.parameters()) + list(head.parameters())
    layer = layers[c.layer - 1]
    extra = getattr(layer, "input_layernorm" if c.kind == "attn" else "post_attention_layernorm",
                    None)
    return list(module_of(model, c).parameters()) + (list(extra.parameters()) if extra else [])


@torch.no_grad()
def weight_change(base, tuned) -> dict[Component, float]:
    """|W_tuned - W_base| / |W_base| per component (Frobenius, over its parameters)."""
    out = {}
    for c in components(base):
        d = n = 0.0
        for pb, pt in zip(_params(base, c), _params(tuned, c)):
            d += float((pt.double().to(pb.device) - pb.double()).pow(2).sum())
            n += float(pb.double().pow(2).sum())
        out[c] = (d ** 0.5) / (n ** 0.5) if n > 0 else float("nan")
    return out


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def component_outputs(model, ids: list[int]) -> dict[Component, torch.Tensor]:
    """Every embed/attn/mlp component's output (1, T, H) on `ids`: one forward (the donor)."""
    got: dict[Component, torch.Tensor] = {}
    with ExitStack() as stack:
        for c in components(model):
            mod = module_of(model, c)
            if mod is None:
                continue
            h = mod.register_forward_hook(lambda m, i, o, c=c: got.__setitem__(c, _first(o)))
            stack.callback(h.remove)
        dev = next(model.parameters()).device
        model(input_ids=torch.tensor([ids], device=dev), logits_to_keep=1)
    return got


def _replace(value: torch.Tensor):
    def hook(module, inputs, output):
        if isinstance(output, tuple):
            return (value.to(output[0].device, output[0].dtype),) + tuple(output[1:])
        return value.to(output.device, output.dtype)
    return hook


@torch.no_grad()
def patched_residual(recipient, cache: dict[Component, torch.Tensor], ids: list[int],
                     rows: list[int], patch) -> torch.Tensor:
    """The last residual rows (len(rows), H) of `recipient` on `ids` with the embed/attn/mlp
    components in `patch` taken from the donor (`cache` = component_outputs(donor, ids)).
    One forward of the recipient; a readout in `patch` is the caller's (`reader`)."""
    dev = next(recipient.parameters()).device
    with ExitStack() as stack:
        for c in set(patch):
            mod = module_of(recipient, c)
            if mod is not None:
                h = mod.register_forward_hook(_replace(cache[c]))
                stack.callback(h.remove)
        got = stack.enter_context(residual_capture(recipient))
        recipient(input_ids=torch.tensor([ids], device=dev), logits_to_keep=1)
    return got[-1][0].index_select(0, torch.tensor(rows, device=got[-1].device))


def reader(recipient, donor, patch):
    """The model whose final norm and head read a patched residual out: the donor's when
    the readout is patched."""
    return donor if any(c.kind == "readout" for c in patch) else recipient


@torch.no_grad()
def patched_logprobs(recipient, donor, cache: dict[Component, torch.Tensor], ids: list[int],
                     rows: list[int], patch) -> torch.Tensor:
    """Log-probabilities (len(rows), V) of `recipient` on `ids` with the components in
    `patch` taken from the donor (the readout means the donor's final norm and head). For
    a few rows: the attribution reads out in chunks (patched_residual + lens.js_rows)."""
    last = patched_residual(recipient, cache, ids, rows, patch)
    model = reader(recipient, donor, patch)
    return readout(model, last.to(next(model.parameters()).device))
