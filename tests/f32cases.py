"""Shared cases for the float32-math tests (test_float32_math, test_fused): pairs of logit rows
at a real vocabulary whose JS runs from ~1e-10 to ~ln 2, and a plain float64 reference
written here independently of core.metrics (log_softmax, then the textbook sums)."""
from __future__ import annotations

import math

import torch

VOCAB = 151_936
# the target: |float32 - float64| <= max(REL * |value|, ABS)
REL, ABS = 1e-4, 1e-10
EXACT = ("js", "kl_bt", "kl_tb", "entropy_base", "entropy_tuned", "logp_base", "logp_tuned",
         "dlogp")
KINDS = ("plain", "shift", "masked", "bf16")


def case(kind: str = "plain", n: int = 8, v: int = VOCAB, seed: int = 0):
    """(lb, lt, tok): float32 (n, v) logits; tuned = base + eps * noise with eps log-spaced
    from 2e-5 to 30 (js ~5e-11 .. ~0.69). shift: tuned logits also moved by 5 (the
    normalisation absorbs it; a float32 difference of the logits does not); masked: 10% of
    the entries -inf in both, and one entry masked in only one model on some rows; bf16:
    both rounded to bfloat16 first (what a bf16 model's head gives)."""
    g = torch.Generator().manual_seed(seed)
    lb = torch.randn(n, v, generator=g) * 2.0
    eps = torch.logspace(math.log10(2e-5), math.log10(30.0), n)[:, None]
    lt = lb + eps * torch.randn(n, v, generator=g)
    if kind == "shift":
        lt += 5.0
    tok = torch.randint(0, v, (n,), generator=g)
    if kind == "masked":
        m = torch.rand(n, v, generator=g) < 0.1
        lb[m] = -math.inf
        lt[m] = -math.inf
        lb[: n // 3, 5] = -math.inf
        lt[n // 3: 2 * n // 3, 7] = -math.inf
        tok = lb.argmax(-1)
    if kind == "bf16":
        lb, lt = lb.bfloat16().float(), lt.bfloat16().float()
    return lb, lt, tok


def graded(std: float, n: int, v: int = VOCAB, seed: int = 3):
    """n rows of logits of standard deviation `std` (0.78: a random init's near-uniform
    rows, nuclei far beyond the top-K; 8-10: peaked, nuclei inside it) and tuned rows
    differing by graded amounts (1e-4 .. 10^0.5 standard deviations); the token is 0."""
    g = torch.Generator().manual_seed(seed)
    lb = torch.randn(n, v, generator=g) * std
    lt = lb + torch.logspace(-4, 0.5, n)[:, None] * torch.randn(lb.shape, generator=g)
    return lb, lt, torch.zeros(n, dtype=torch.long)


def reference(lb: torch.Tensor, lt: torch.Tensor, tok: torch.Tensor) -> dict:
    """The textbook float64 metrics: {name: (n,) float64}."""
    a, b = lb.double().log_softmax(-1), lt.double().log_softmax(-1)
    p, q = a.exp(), b.exp()
    lm = torch.log(p + q) - math.log(2.0)

    def xl(w, x, y):
        return torch.where(w > 0, w * (x - y), 0.0).sum(-1)

    at = a.gather(-1, tok[:, None])[:, 0]
    bt = b.gather(-1, tok[:, None])[:, 0]
    return {"js": 0.5 * xl(p, a, lm) + 0.5 * xl(q, b, lm), "kl_bt": xl(p, a, b),
            "kl_tb": xl(q, b, a), "entropy_base": -torch.where(p > 0, p * a, 0.0).sum(-1),
            "entropy_tuned": -torch.where(q > 0, q * b, 0.0).sum(-1), "logp_base": at,
            "logp_tuned": bt, "dlogp": bt - at}


def worst(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest error in units of the target tolerance (<= 1 passes); equal infinities pass."""
    got, ref = got.double().cpu(), ref.double().cpu()
    same_inf = torch.isinf(got) & torch.isinf(ref) & (got == ref)
    err = (got - ref).abs() / torch.clamp(REL * ref.abs(), min=ABS)
    err = torch.where(same_inf, 0.0, err)
    return float(torch.nan_to_num(err, nan=math.inf).max())
