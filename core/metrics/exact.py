"""Metric formulas that stay exact when the per-entry math runs in float32 (the GPU's math,
and `--math-dtype float32` anywhere): no row sum cancels, so a divergence of 1e-10 comes out
with float32's relative precision instead of as the rounding noise of terms of size ln 2.
Row scalars (log-sum-exp, the sums themselves) are accumulated in float64, which costs
nothing: they are (N,) tensors. Used by core/metrics/registry.py's Context when its math dtype
is not float64, by core/metrics/nucleus.py for the truncated JS, and mirrored entry by entry by
the fused kernels (core/metrics/fused_numba.py, core/metrics/fused_triton.py). Not the
float64 formulas: those stay in kernels.py and registry.py, unchanged (the golden numbers).

Derivations (d = log p - log q per entry, x = d / 2; all natural logs):

JS. With m = (p+q)/2, p log(p/m) + q log(q/m) = (p+q) f(d) exactly, where, writing
p/(p+q) = sigmoid(d) and softplus(d) = ln 2 + x + log cosh x,

    f(d) = x tanh x - log cosh x          (>= 0, even, ~ d^2/8 near 0, -> ln 2 as |d| -> inf)

so JS = 1/2 sum (p+q) f(d): non-negative terms, no use of sum p = sum q = 1. Evaluated as
x tanh x - log1p(2 sinh^2(x/2)) for |d| < 1 (the two terms differ by a factor 2: no
cancellation), and for |d| >= 1, with t = exp(-|d|), as ln 2 - log1p(t) - |d| t / (1 + t)
(at |d| = 1 the terms cancel by a factor 6 at most). f(+-inf) = ln 2 (one side masked).
An error eta in d moves a term by (p+q) f'(d) eta ~ (p+q) d eta / 4: first order in d, so
float32 log-probabilities are accurate enough for d.

KL. KL(P||Q) = sum p d also cancels (terms of size |d| sum to ~d^2), and worse, it needs
the two log-sum-exps to ~1e-16 (a float32 exp's rounding moves them by ~1e-8). Instead, with
w = p (any positive multiple), delta = a - b (the two models' logits), c any constant (we use
the w-weighted mean of delta) and e = delta - c:

    lse_b - lse_a = -c + log(sum_{w>0} w e^{-e} / W) - log(1 - Q_out)
    KL(P||Q)      = sum w e / W + log(sum_{w>0} w e^{-e} / W) - log(1 - Q_out)

where W = sum w and Q_out = the mass of Q where w = 0 (masked or underflowed base entries).
Writing e^{-e} = 1 - e + k(e), k(e) = expm1(-e) + e >= 0 (~ e^2/2, a series for |e| < 0.1),
sum w e^{-e} = W - A + B with A = sum w e (~0 by the choice of c) and B = sum w k(e) >= 0, so

    KL = A/W + log1p((B - A)/W) - log1p(-Q_out)

whose first-order dependence on A (and so on c's rounding) cancels. e must be delta - c to
float32's relative precision: (a - b) - c is formed with an error-free two-sum (Knuth) in
float32 and c split into float32 high and low parts. When this KL exceeds KL_SWITCH (or
overflows: e < -88), the plain sum w d / W = A/W + c - (lse_a - lse_b) is within ~1e-8
absolute (the float32 exps' share of the log-sum-exps), i.e. inside 1e-4 relative, and is
used.

Entropy: -sum p log p has non-negative terms already; float64 accumulation suffices.
"""
from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)
KL_SWITCH = 1e-3
# k(e) = e^2 (1/2 - e/6 + e^2/24 - ...) below K_SERIES_BELOW (truncation < 5e-9 relative);
# above it expm1(-e) + e cancels by a factor 20 at most (~1e-6 relative)
_K_SERIES = (1 / 2, -1 / 6, 1 / 24, -1 / 120, 1 / 720, -1 / 5040)
K_SERIES_BELOW = 0.1
F64 = torch.float64


def js_f(d: torch.Tensor) -> torch.Tensor:
    """f(d) = x tanh x - log cosh x, x = d/2 (see the module docstring), elementwise, >= 0."""
    ad = d.abs()
    x = ad * 0.5
    small = x * torch.tanh(x) - torch.log1p(2.0 * torch.sinh(x * 0.5).square())
    t = torch.exp(-ad)
    large = LN2 - torch.log1p(t) - torch.where(t > 0, ad * t / (1.0 + t), 0.0)
    return torch.where(ad < 1.0, small, large)


def kl_k(e: torch.Tensor) -> torch.Tensor:
    """k(e) = exp(-e) - 1 + e, elementwise, >= 0, relative precision for every e."""
    s = torch.full_like(e, _K_SERIES[-1])
    for c in reversed(_K_SERIES[:-1]):
        s = s * e + c
    return torch.where(e.abs() < K_SERIES_BELOW, e * e * s, torch.expm1(-e) + e)


def _rowsum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(-1, dtype=F64)


def js_terms(p: torch.Tensor, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """JS (N,) float64 = 1/2 sum (p+q) f(d) over the last dim; entries with p + q = 0 count 0
    (d may be nan there), d = +-inf where one side is 0."""
    s = p + q
    return (0.5 * _rowsum(torch.where(s > 0, s * js_f(d), 0.0))).clamp(0.0, LN2)


def js_logprobs(p, logp, q, logq) -> torch.Tensor:
    """JS from probabilities and their logs (any float dtype, -inf allowed), float64 (N,)."""
    d = torch.where(p > 0, torch.where(q > 0, logp - logq, math.inf), -math.inf)
    return js_terms(p, q, d)


def log_softmax_exp(x: torch.Tensor, dtype: torch.dtype, logp: torch.Tensor,
                    p: torch.Tensor) -> torch.Tensor:
    """Fill logp, p (N, V) `dtype` with log softmax(x) and softmax(x); return the row
    log-sum-exp (N,) float64, its sum of exps accumulated in float64."""
    m = x.amax(-1, keepdim=True)
    torch.sub(x, m, out=logp)
    torch.exp(logp, out=p)
    s = _rowsum(p)[:, None]
    p.mul_((1.0 / s).to(dtype))
    logp.sub_(s.log().to(dtype))
    return (m.to(F64) + s.log())[:, 0]


def diff_minus(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(a - b) - c, a, b (N, V) float32, c (N,) float64, rounded once at the end (to within
    a few ulps of the result): Knuth's two-sum for a - b, c split into high and low parts."""
    s = a - b
    bb = s - a
    err = (a - (s - bb)) - (b + bb)
    ch = c.to(a.dtype)
    cl = (c - ch.to(F64)).to(a.dtype)
    return (s - ch[:, None]) + (err - cl[:, None])


def kl_exact(w, a, b, lse_a, lse_b, v) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL(W||V), lse_b - lse_a), both (N,) float64, for probabilities w of logits a and v of
    logits b, (N, V) of one float dtype, with the float64 log-sum-exps lse_a, lse_b (N,). See
    the module docstring; the second value is exact only where the first is below
    KL_SWITCH (else nan: use the two log-sum-exps)."""
    pos = w > 0
    wsum = _rowsum(w)
    c = _rowsum(torch.where(pos, w * (a - b), 0.0)) / wsum
    e = torch.where(pos, diff_minus(a, b, c), 0.0)
    big = (e < -88.0).any(-1)
    am = _rowsum(w * e)
    bm = _rowsum(w * kl_k(e.clamp_min(-88.0)))
    q_out = _rowsum(torch.where(pos, 0.0, v))
    lg = torch.log1p((bm - am) / wsum) - torch.log1p(-q_out)
    kl = am / wsum + lg
    # sum w d / W with d = e + c - (lse_a - lse_b): within ~1e-8 absolute (the float32
    # exps' share of the log-sum-exps), fine above KL_SWITCH; inf where w > 0 and v is masked
    naive = am / wsum + c - (lse_a - lse_b)
    naive = torch.where((pos & torch.isinf(b)).any(-1), math.inf, naive)
    ok = (kl < KL_SWITCH) & ~big & torch.isfinite(kl)
    shift = torch.where(ok, -c + lg, math.nan)
    return torch.where(ok, kl.clamp_min(0.0), naive.clamp_min(0.0)), shift


def entropy(p: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """-sum p log p (N,) float64 (non-negative terms; 0 log 0 = 0)."""
    return _rowsum(torch.where(p > 0, -p * logp, 0.0))
