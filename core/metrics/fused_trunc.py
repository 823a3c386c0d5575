"""The truncated JS columns inside the fused CPU kernel (core/metrics/fused_numba.py), given
each model's nuclei (core/metrics/fused_nucleus.py: the last kept token's logit and id, and
the kept mass, per nucleus).

JS of the truncated distributions, 1/2 sum (p'+q') f(d') over the union of both nuclei
(core/metrics/exact.py's terms, p' = p / kept mass, d' = log p' - log q'), with f(d) = x tanh
x - log cosh x >= 0 (x = d/2): no sum cancels. `jsf32` evaluates f in float32 for these
columns and for the kernel's full-vocabulary JS (~1e-7 relative, < 1e-5 where its closed
form cancels; the terms are summed in float64; the target is 1e-4). The kernel's pass 3
(fused_terms._terms) sums three nuclei's terms (`_tterm`, constants from `trunc_params`)
per pass over the row.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

LN2 = math.log(2.0)
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


@nb.njit(cache=True, fastmath=_FM, inline="always")
def jsf32(d, t):
    """f(d) = x tanh x - log cosh x (x = d/2) in float32, d and t = exp(-|d|) given (t: the
    ratio of the smaller to the larger probability): the series below |d| 0.5 (relative
    error ~1e-7: its first omitted term is < 2e-8 of f there), else the closed form ln 2 -
    log1p(t) - |d| t / (1 + t), log1p(t) as 2 atanh(s), s = t / (2 + t) <= 0.24 (one
    division gives both quotients). The closed form cancels by at most ~16x (at |d| = 0.5),
    so t's few-ulp float32 error moves f by < 1e-5 relative. Both forms are computed and
    one selected: no branch to mispredict."""
    ad = abs(d)
    x2 = np.float32(0.25) * d * d
    ser = x2 * (np.float32(0.5) + x2 * (np.float32(-0.25) + x2 * (
        np.float32(1.0 / 9.0) + x2 * (np.float32(-17.0 / 360.0)
                                      + x2 * np.float32(31.0 / 1575.0)))))
    tc = min(t, np.float32(0.6065306597126334))  # exp(-0.5)
    a1 = np.float32(1.0) + tc
    a2 = np.float32(2.0) + tc
    inv = np.float32(1.0) / (a1 * a2)
    s = tc * a1 * inv
    z = s * s
    lg = np.float32(2.0) * s * (np.float32(1.0) + z * (np.float32(1.0 / 3.0) + z * (
        np.float32(1.0 / 5.0) + z * (np.float32(1.0 / 7.0) + z * (
            np.float32(1.0 / 9.0) + z * np.float32(1.0 / 11.0))))))
    closed = np.float32(LN2) - lg - ad * (tc * a2 * inv)
    return ser if ad < np.float32(0.5) else closed


@nb.njit(cache=True, fastmath=_FM, inline="always")
def _tterm(kb, kt, wa, wt, r, ir, delta, ib, it, sh, cr, icr):
    """One token's (p' + q') f(d') of one nucleus pair, float32 (see trunc_params)."""
    p = wa * ib if kb else np.float32(0.0)
    q = wt * it if kt else np.float32(0.0)
    d = np.float32(delta - sh)
    f = jsf32(d, min(r * cr, ir * icr))
    return (p + q) * (f if (p > np.float32(0.0)) & (q > np.float32(0.0)) else np.float32(LN2))


@nb.njit(cache=True)
def trunc_params(xb, xt, dm, lim_b, kept_b, lim_t, kept_t, g):
    """The per-nucleus constants of `_tterm` for nuclei g, g+1, g+2 (past the last: the last
    again): (tb, lb, tt, lt, ib, it, sh, cr, icr). xb, xt (V,) float32 logits, dm = max_b -
    max_t (the maxima the exps are taken from), lim, kept of each model from the nucleus
    search. With p' = w / kept: d' = log p' - log q' = (a - b) - sh, sh = dm + log kept_b -
    log kept_t, and p'/q' = (wb/wt) kept_t/kept_b; tb, tt the last kept tokens' logits,
    ib, it = 1 / kept, cr, icr the ratios of the kept masses."""
    nj = len(lim_b)
    tb = np.empty(3, np.float32)
    tt = np.empty(3, np.float32)
    lb = np.empty(3, np.int64)
    lt = np.empty(3, np.int64)
    ib = np.empty(3, np.float32)
    it = np.empty(3, np.float32)
    sh = np.empty(3, np.float64)
    cr = np.empty(3, np.float32)
    icr = np.empty(3, np.float32)
    for m in range(3):
        j = min(g + m, nj - 1)
        lb[m], lt[m] = lim_b[j], lim_t[j]
        tb[m], tt[m] = xb[lb[m]], xt[lt[m]]
        ib[m], it[m] = 1.0 / kept_b[j], 1.0 / kept_t[j]
        sh[m] = dm + math.log(kept_b[j]) - math.log(kept_t[j])
        cr[m], icr[m] = kept_t[j] / kept_b[j], kept_b[j] / kept_t[j]
    return tb, lb, tt, lt, ib, it, sh, cr, icr


@nb.njit(cache=True, fastmath=_FM)
def _listed_terms(xs, xo, ws, wo, ids, last, to, lo, own, acc, ib, it, sh, cr, icr):
    """Sum of `_tterm` over the kept tokens of one model's list (ids, largest first, up to
    and including `last`), as model `own` (0 base, 1 tuned) sees them: xs, ws its logits
    and exps, xo, wo the other model's, (to, lo) the other's last kept logit and id. With
    acc False a token the other model keeps too is left out (the base list counted it)."""
    tot = 0.0
    for i in ids:
        kept_o = (xo[i] > to) | ((xo[i] == to) & (i <= lo))
        if acc or not kept_o:
            a, b = (xs[i], xo[i]) if own == 0 else (xo[i], xs[i])
            wa, wq = (ws[i], wo[i]) if own == 0 else (wo[i], ws[i])
            kb, kt = (True, kept_o) if own == 0 else (kept_o, True)
            tot += np.float64(_tterm(kb, kt, wa, wq, wa / wq, wq / wa,
                                     np.float64(a) - np.float64(b), ib, it, sh, cr, icr))
        if i == last:
            break
    return tot


@nb.njit(cache=True)
def trunc_topk(xb, xt, bufb, buft, ids_b, ids_t, tb, lb, tt, lt, ib, it, sh, cr, icr):
    """The three truncated JS sums of pass 3 (fused_terms._terms' tr0, tr1, tr2: the same
    `_tterm` per token) when both models' nuclei lie in their top-K lists (fused_nucleus.
    nuclei_topk found them all): the union of the nuclei is then the base list up to its
    last kept id and the tuned list's kept tokens the base does not keep; every other token
    contributes 0. O(K) per nucleus instead of a pass over the vocabulary."""
    out = np.zeros(3)
    for m in range(3):
        out[m] = (_listed_terms(xb, xt, bufb, buft, ids_b, lb[m], tt[m], lt[m], 0, True,
                                ib[m], it[m], sh[m], cr[m], icr[m])
                  + _listed_terms(xt, xb, buft, bufb, ids_t, lt[m], tb[m], lb[m], 1, False,
                                  ib[m], it[m], sh[m], cr[m], icr[m]))
    return out[0], out[1], out[2]
