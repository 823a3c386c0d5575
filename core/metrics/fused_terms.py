"""Pass 3 of the fused CPU kernel (core/metrics/fused_numba.py): per row, the JS terms
(p+q) f(d) and the KL terms w k(e) of core/metrics/exact.py over the vocabulary, with the
terms of the first three truncated JS columns (core/metrics/fused_trunc.py) riding on the
same pass, and the KLs finished from their sums (`_kl_finish`). No sum cancels: every term
is >= 0 but the KL's first-order sum, which is formed in float64 from float64 logit
differences.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from core.metrics.fused_trunc import _tterm, jsf32

LN2 = math.log(2.0)
KL_SWITCH = 1e-3
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no nnan/ninf: masked logits are -inf
NINF = -np.inf


@nb.njit(cache=True, fastmath=_FM, inline="always")
def _klk(e, x):
    """k(e) = exp(-e) - 1 + e in float64: its series to e^10 below |e| 0.5 (relative
    error about 1e-10 at most), else x - 1 + e with x = exp(-e) given (a float32
    probability ratio times a row constant: no exp per entry; its ~5e-7 relative error
    moves k by < 3e-6 relative at |e| >= 0.5, where k >= 0.1). Selected, not branched."""
    ser = e * e * (0.5 + e * (-1.0 / 6.0 + e * (1.0 / 24.0 + e * (-1.0 / 120.0 + e * (
        1.0 / 720.0 + e * (-1.0 / 5040.0 + e * (1.0 / 40320.0 + e * (
            -1.0 / 362880.0 + e * (1.0 / 3628800.0)))))))))
    return ser if abs(e) < 0.5 else x - 1.0 + e


@nb.njit(cache=True, fastmath=_FM)
def _kl_finish(inf_flag, big, w, am, bm, out_mass, c, lse_a, lse_b):
    """(KL, lse_b - lse_a) from the sums of pass 3 (core/metrics/exact.py's kl_exact)."""
    if inf_flag:
        return np.inf, lse_b - lse_a
    lg = math.log1p((bm - am) / w) - math.log1p(-out_mass)
    kl = am / w + lg
    if kl < KL_SWITCH and not big and math.isfinite(kl):
        return max(kl, 0.0), -c + lg
    return max(am / w + c - (lse_a - lse_b), 0.0), lse_b - lse_a


@nb.njit(cache=True, fastmath=_FM, error_model="numpy")
def _terms(xb, xt, bufb, buft, inv_b, inv_t, dl, c_bt, c_tb, x_bt, x_tb, cq, cp, ntr, tb, lb,
           tt, lt, ib, it, sh, cr, icr):
    """Pass 3 (vectorised: selects, no branches but the loop-invariant `ntr`): the JS terms
    (p+q) f(d) and the KL terms w k(e) of core/metrics/exact.py, and with ntr the terms of
    the first three truncated JS columns (fused_trunc._tterm, constants from trunc_params).
    d = (a - b) - dl and e = (a - b) - c are formed in float64 from the logits (no
    cancellation is rounded in float32), then f(d) in float32 (fused_trunc.jsf32, terms >=
    0 summed in float64); the probability ratios come from two float32 divisions per entry,
    shared by every term: q/p = (wq/wa) cq, p/q = (wa/wq) cp, exp(-e) = (wq/wa) x_bt,
    exp(-e2) = (wa/wq) x_tb. A side masked or 0 contributes (p+q) ln 2 to JS and its mass
    to the other KL's out-mass. Returns (js, am_b, bm_b, w_b, out_b, am_t, bm_t, w_t, out_t,
    n_big_b, n_big_t, tr0, tr1, tr2)."""
    tr0 = 0.0
    tr1 = 0.0
    tr2 = 0.0
    tb0, tb1, tb2 = tb[0], tb[1], tb[2]
    tt0, tt1, tt2 = tt[0], tt[1], tt[2]
    lb0, lb1, lb2 = lb[0], lb[1], lb[2]
    lt0, lt1, lt2 = lt[0], lt[1], lt[2]
    ib0, ib1, ib2 = ib[0], ib[1], ib[2]
    it0, it1, it2 = it[0], it[1], it[2]
    sh0, sh1, sh2 = sh[0], sh[1], sh[2]
    cr0, cr1, cr2 = cr[0], cr[1], cr[2]
    ic0, ic1, ic2 = icr[0], icr[1], icr[2]
    ln2 = np.float32(LN2)
    js = 0.0
    am_b = 0.0
    bm_b = 0.0
    w_b = 0.0
    out_b = 0.0  # tuned mass where the base probability is 0
    am_t = 0.0
    bm_t = 0.0
    w_t = 0.0
    out_t = 0.0
    n_big_b = 0
    n_big_t = 0
    for i in range(len(xb)):
        a = xb[i]
        b = xt[i]
        wa = bufb[i]
        wq = buft[i]
        p = wa * inv_b  # exp(a - lse_b)
        q = wq * inv_t
        p64 = np.float64(p)
        q64 = np.float64(q)
        delta = np.float64(a) - np.float64(b)
        r = wa / wq
        ir = wq / wa
        both = (p > 0) & (q > 0)
        f = jsf32(np.float32(delta - dl), min(ir * cq, r * cp))
        js += np.float64((p + q) * (f if both else ln2))
        vp = (p > 0) & (b > NINF)
        vq = (q > 0) & (a > NINF)
        e = delta - c_bt
        e2 = -delta - c_tb
        am_b += p64 * e if vp else 0.0
        bm_b += p64 * _klk(e, np.float64(ir) * x_bt) if vp else 0.0
        w_b += p64 if vp else 0.0
        out_b += q64 if p == 0 else 0.0
        n_big_b += vp & (e < -88.0)
        am_t += q64 * e2 if vq else 0.0
        bm_t += q64 * _klk(e2, np.float64(r) * x_tb) if vq else 0.0
        w_t += q64 if vq else 0.0
        out_t += p64 if q == 0 else 0.0
        n_big_t += vq & (e2 < -88.0)
        if ntr:
            tr0 += np.float64(_tterm((a > tb0) | ((a == tb0) & (i <= lb0)),
                                     (b > tt0) | ((b == tt0) & (i <= lt0)),
                                     wa, wq, r, ir, delta, ib0, it0, sh0, cr0, ic0))
            tr1 += np.float64(_tterm((a > tb1) | ((a == tb1) & (i <= lb1)),
                                     (b > tt1) | ((b == tt1) & (i <= lt1)),
                                     wa, wq, r, ir, delta, ib1, it1, sh1, cr1, ic1))
            tr2 += np.float64(_tterm((a > tb2) | ((a == tb2) & (i <= lb2)),
                                     (b > tt2) | ((b == tt2) & (i <= lt2)),
                                     wa, wq, r, ir, delta, ib2, it2, sh2, cr2, ic2))
    return (js, am_b, bm_b, w_b, out_b, am_t, bm_t, w_t, out_t, n_big_b, n_big_t, tr0, tr1,
            tr2)
