"""The truncated JS columns inside the fused CPU kernel (core/metrics/fused_numba.py), given
each model's nuclei (core/metrics/fused_nucleus.py: the last kept token's logit and id, and
the kept mass, per nucleus).

JS of the truncated distributions, 1/2 sum (p'+q') f(d') over the union of both nuclei
(core/metrics/exact.py's terms, p' = p / kept mass, d' = log p' - log q'), with f(d) = x tanh
x - log cosh x >= 0 (x = d/2): no sum cancels. `jsf` evaluates f in float64 (the kernel's
full-vocabulary JS), `jsf32` in float32 (the truncated columns: ~1e-7 relative, ~1e-5 where
its closed form cancels, summed in float64; their target is 1e-4). The kernel's pass 3
(fused_numba._terms) sums three nuclei's terms (`_tterm`, constants from `trunc_params`)
per pass over the row.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

LN2 = math.log(2.0)
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


@nb.njit(cache=True, fastmath=_FM, inline="always")
def jsf(d, t):
    """f(d) of core/metrics/exact.py in float64: series below |d| 0.25, else the closed form
    ln 2 - log1p(t) - |d| t / (1 + t) with t = exp(-|d|) given (the ratio of the smaller to
    the larger probability). log1p(t), t <= 0.78, is 2 atanh(s), s = t / (2 + t) <= 0.28,
    to s^19 (relative error < 1e-12): no library call, and one division gives both
    quotients. Both forms are computed and one selected: no branch to mispredict (about
    half the entries go each way)."""
    ad = abs(d)
    x2 = 0.25 * d * d
    ser = x2 * (0.5 + x2 * (-0.25 + x2 * (1.0 / 9.0 + x2 * (-17.0 / 360.0
                                                           + x2 * (31.0 / 1575.0)))))
    tc = min(t, 0.7788007830714049)
    a1 = 1.0 + tc
    a2 = 2.0 + tc
    inv = 1.0 / (a1 * a2)
    s = tc * a1 * inv  # t / (2 + t)
    z = s * s
    lg = 2.0 * s * (1.0 + z * (1.0 / 3.0 + z * (1.0 / 5.0 + z * (1.0 / 7.0 + z * (
        1.0 / 9.0 + z * (1.0 / 11.0 + z * (1.0 / 13.0 + z * (1.0 / 15.0 + z * (
            1.0 / 17.0 + z * (1.0 / 19.0))))))))))
    closed = LN2 - lg - ad * (tc * a2 * inv)
    return ser if ad < 0.25 else closed


@nb.njit(cache=True, fastmath=_FM, inline="always")
def jsf32(d, t):
    """jsf in float32 (d, t float32): f(d) to ~1e-7 relative where jsf's series gives
    ~1e-12; enough for the truncated JS columns' target (1e-4 relative), whose terms are
    summed in float64. The closed form cancels by at most ~100x (at |d| = 0.25), so its
    relative error stays below ~1e-5."""
    ad = abs(d)
    x2 = np.float32(0.25) * d * d
    ser = x2 * (np.float32(0.5) + x2 * (np.float32(-0.25) + x2 * (
        np.float32(1.0 / 9.0) + x2 * (np.float32(-17.0 / 360.0)
                                      + x2 * np.float32(31.0 / 1575.0)))))
    tc = min(t, np.float32(0.7788007830714049))
    a1 = np.float32(1.0) + tc
    a2 = np.float32(2.0) + tc
    inv = np.float32(1.0) / (a1 * a2)
    s = tc * a1 * inv
    z = s * s
    lg = np.float32(2.0) * s * (np.float32(1.0) + z * (np.float32(1.0 / 3.0) + z * (
        np.float32(1.0 / 5.0) + z * (np.float32(1.0 / 7.0) + z * (
            np.float32(1.0 / 9.0) + z * np.float32(1.0 / 11.0))))))
    closed = np.float32(LN2) - lg - ad * (tc * a2 * inv)
    return ser if ad < np.float32(0.25) else closed


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
