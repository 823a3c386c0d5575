"""The fused CPU kernel: every registered metric of a block of rows, both models' top-k and
the ranks, from the two (N, V) float32 logit arrays in three passes per row (three more per
model whose nuclei end beyond its top-K: its tokens' bins, a histogram and a gather), with
no (N, V) intermediate at all (numba, compiled at first use and cached; no system compiler needed).

Per row (rows in parallel, `prange`):
1. max, first argmax and each model's top-K by a min-heap (K = max(top_k,
   NUCLEUS_TOPK); equal logits: lower id first), the row scanned in vectorised blocks of
   BLOCK entries (their maxima only) and only a block whose maximum beats the heap's least
   entry walked entry by entry;
2. sums of exp(x - max) in float64 (log-sum-exp), of exp(x - max) (x - max) (entropy, no
   cancellation: both terms are >= 0), the weighted mean c of the logit difference (the
   KL shift of core/metrics/exact.py), the rank counts of the trace token under both
   models and of the tuned argmax under the base (in this long vectorised loop rather
   than in pass 1's blocks: 7-15% of the kernel's time on near-uniform rows); the
   exps are kept in two (V,) float32 row buffers per thread, so pass 3 needs none;
   then each model's nuclei (core/metrics/fused_nucleus.py: from the top-K list when they
   end inside it, else a bins pass, a histogram pass and a gather pass, exactly, no
   fallback to torch);
3. the JS terms (p+q) f(d) and the KL terms w k(e) of core/metrics/exact.py, with d and e
   formed in float64 from the logits (exact), p, q and f(d) in float32, every term >= 0
   summed in float64, and the terms of the first three truncated JS columns (js_top_p,
   js_top_p90, js_top_p95) in float32 -- unless both models' nuclei lie in their top-K
   lists (a peaked row): then those columns are summed over the lists alone
   (fused_trunc.trunc_topk) and pass 3 skips them. Not here: the choice of path
   (core/metrics/fused.py).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from core.metrics import cache_stamp
from core.metrics.fused_nucleus import row_nuclei
from core.metrics.fused_terms import _kl_finish, _terms
from core.metrics.fused_trunc import trunc_params, trunc_topk

# numba keys each cached kernel on its own file only: fused_rows compiled with an older
# fused_nucleus.py or fused_trunc.py would be loaded after that file changed (a branch
# switched, an upgrade that kept this file's timestamp). The kernels' cache is dropped when
# any of the three files changes.
cache_stamp.drop_stale(__file__, ["fused_numba", "fused_nucleus", "fused_trunc",
                                  "fused_terms"])

LN2 = math.log(2.0)
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no nnan/ninf: masked logits are -inf
NINF = -np.inf


@nb.njit(cache=True, inline="always")
def _less(v1, i1, v2, i2):
    return v1 < v2 or (v1 == v2 and i1 > i2)


@nb.njit(cache=True)
def _sift(hv, hi, k, pos):
    while True:
        m = 2 * pos + 1
        if m >= k:
            return
        r = m + 1
        if r < k and _less(hv[r], hi[r], hv[m], hi[m]):
            m = r
        if _less(hv[m], hi[m], hv[pos], hi[pos]):
            hv[m], hv[pos] = hv[pos], hv[m]
            hi[m], hi[pos] = hi[pos], hi[m]
            pos = m
        else:
            return


BLOCK = 64  # pass 1 scans blocks of this many entries (vectorised) before any heap work


@nb.njit(cache=True, fastmath=_FM, inline="always")
def _block_scan(xb, xt, i0, i1):
    """Both maxima of entries i0..i1 (selects only)."""
    bmax = NINF
    tmax = NINF
    for i in range(i0, i1):
        a = xb[i]
        b = xt[i]
        bmax = a if a > bmax else bmax
        tmax = b if b > tmax else tmax
    return bmax, tmax


@nb.njit(cache=True, inline="always")
def _heap_block(x, hv, hi, k, i0, i1):
    """Entries i0..i1 into the top-k min-heap, in id order (a tie stays out: lower ids
    first), as the scan entry by entry did."""
    for i in range(i0, i1):
        if x[i] > hv[0]:
            hv[0] = x[i]
            hi[0] = i
            _sift(hv, hi, k, 0)


@nb.njit(cache=True)
def _sorted_top(hv, hi, k):
    """Heap contents, largest first (equal values: lower id first)."""
    order = np.empty(k, np.int64)
    for j in range(k):
        order[j] = j
    for a in range(1, k):  # insertion sort: k is 64
        j = a
        while j > 0 and _less(hv[order[j - 1]], hi[order[j - 1]], hv[order[j]], hi[order[j]]):
            order[j - 1], order[j] = order[j], order[j - 1]
            j -= 1
    return order


@nb.njit(cache=True, fastmath=_FM, inline="always")
def exp32(y):
    """exp(y) in float32 for y <= 0 (0 below -87, -inf included), within ~2.5 ulp, as code
    LLVM vectorises (numba's np.exp is a scalar library call per entry): Cody-Waite
    reduction y = n ln 2 + r, a degree-7 polynomial for exp(r), 2^n from the exponent bits."""
    yc = max(y, np.float32(-87.0))
    n = np.floor(yc * np.float32(1.4426950408889634) + np.float32(0.5))
    r = yc - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    scale = np.int32((np.int32(n) + np.int32(127)) << 23).view(np.float32)
    return p * scale if y >= np.float32(-87.0) else np.float32(0.0)


@nb.njit(cache=True, fastmath=_FM, error_model="numpy")
def _sums(xb, xt, mb, mt, oa, ob, ot, bufb, buft):
    """Pass 2 (vectorised: selects, no branches): the exps of x - max into bufb, buft and
    (sb, st, hb, ht, wdb, wb2, wdt, wt2, base entries above oa, base entries above ob,
    tuned entries above ot, n base-only finite, n tuned-only finite)."""
    sb = 0.0
    st = 0.0
    hb = 0.0
    ht = 0.0
    wdb = 0.0
    wb2 = 0.0
    wdt = 0.0
    wt2 = 0.0
    ra = 0
    rb = 0
    rt = 0
    n_bt = 0
    n_tb = 0
    for i in range(len(xb)):
        a = xb[i]
        b = xt[i]
        ra += a > oa
        rb += a > ob
        rt += b > ot
        ea = a - mb
        eb = b - mt
        wa = exp32(ea)
        wt_ = exp32(eb)
        bufb[i] = wa
        buft[i] = wt_
        sb += wa
        st += wt_
        hb += wa * ea if wa > 0 else np.float32(0.0)
        ht += wt_ * eb if wt_ > 0 else np.float32(0.0)
        fa = a > NINF
        fb = b > NINF
        both = fa & fb
        dd = np.float64(a) - np.float64(b)
        wdb += wa * dd if both else 0.0
        wb2 += wa if both else np.float32(0.0)
        wdt -= wt_ * dd if both else 0.0
        wt2 += wt_ if both else np.float32(0.0)
        n_bt += fa & ~fb
        n_tb += fb & ~fa
    return sb, st, hb, ht, wdb, wb2, wdt, wt2, ra, rb, rt, n_bt, n_tb


@nb.njit(cache=True, parallel=True, fastmath=_FM, error_model="numpy")
def fused_rows(lb, lt, bits_b, bits_t, tok, k, tps, f64, i64, top_ids, top_x, tjs, work,
               bwork):
    """lb, lt (N, V) float32, bits_b, bits_t the same as int32 (their bits), tok (N,) int64,
    k: top-K size, tps (J,) float64: the top-p of each truncated JS column. Writes
    f64 (N, 10): js, kl_bt, kl_tb, entropy_base, entropy_tuned, logp_base, logp_tuned,
    dlogp, lse_b, lse_t;
    i64 (N, 5): rank_base, rank_tuned, argmax_b, argmax_t, tuned_top1_rank_base;
    top_ids (N, 2, k) and top_x (N, 2, k) the two top-K lists (ids, logits), largest first;
    tjs (N, J) the truncated JS at each top-p (core/metrics/fused_nucleus.py); work
    (W, 2, V) float32: each of W workers' exp(x - max) buffers (a fresh (V,) buffer per
    row costs page faults); bwork (W, V) uint16: each worker's bin of every token, for the
    nucleus search of a row whose nuclei end beyond its top-K (fused_nucleus.row_nuclei)."""
    nj = len(tps)
    n, v = lb.shape
    nw = work.shape[0]
    for w_ in nb.prange(nw):  # worker w_ scores rows w_, w_ + nw, ... in its own buffers
        for r in range(w_, n, nw):
            xb, xt = lb[r], lt[r]
            t = tok[r]
            ob, ot = xb[t], xt[t]
            # --- pass 1: top-K heaps (their largest is the max) ---
            hvb = np.empty(k, np.float32)
            hib = np.empty(k, np.int64)
            hvt = np.empty(k, np.float32)
            hit = np.empty(k, np.int64)
            for i in range(k):
                hvb[i] = xb[i]
                hib[i] = i
                hvt[i] = xt[i]
                hit[i] = i
            for i in range(k // 2 - 1, -1, -1):
                _sift(hvb, hib, k, i)
                _sift(hvt, hit, k, i)
            for i0 in range(k, v, BLOCK):
                i1 = min(v, i0 + BLOCK)
                bmax, tmax = _block_scan(xb, xt, i0, i1)
                if bmax > hvb[0]:  # else no entry of the block enters the heap
                    _heap_block(xb, hvb, hib, k, i0, i1)
                if tmax > hvt[0]:
                    _heap_block(xt, hvt, hit, k, i0, i1)
            ordb = _sorted_top(hvb, hib, k)
            ordt = _sorted_top(hvt, hit, k)
            for j in range(k):
                top_ids[r, 0, j] = hib[ordb[j]]
                top_x[r, 0, j] = hvb[ordb[j]]
                top_ids[r, 1, j] = hit[ordt[j]]
                top_x[r, 1, j] = hvt[ordt[j]]
            mb = top_x[r, 0, 0]
            mt = top_x[r, 1, 0]
            ab = top_ids[r, 0, 0]
            at = top_ids[r, 1, 0]
            # --- pass 2: log-sum-exps, entropies' sums, the KL shifts, the ranks ---
            oa = xb[at]
            bufb = work[w_, 0]
            buft = work[w_, 1]
            sb, st, hb, ht, wdb, wb2, wdt, wt2, ra, rb, rt, n_bt, n_tb = _sums(
                xb, xt, mb, mt, oa, ob, ot, bufb, buft)
            inf_bt = n_bt > 0
            inf_tb = n_tb > 0
            lse_b = mb + math.log(sb)
            lse_t = mt + math.log(st)
            c_bt = wdb / wb2 if wb2 > 0 else 0.0
            c_tb = wdt / wt2 if wt2 > 0 else 0.0
            # --- each model's nuclei (pass 2's exps; fused_nucleus.row_nuclei) ---
            tau_b = np.empty(nj, np.int64)
            lim_b = np.empty(nj, np.int64)
            kept_b = np.empty(nj, np.float64)
            tau_t = np.empty(nj, np.int64)
            lim_t = np.empty(nj, np.int64)
            kept_t = np.empty(nj, np.float64)
            listed = row_nuclei(xb, bits_b[r], mb, bufb, sb, tps, top_ids[r, 0], top_x[r, 0],
                                bwork[w_], tau_b, lim_b, kept_b)
            listed &= row_nuclei(xt, bits_t[r], mt, buft, st, tps, top_ids[r, 1], top_x[r, 1],
                                 bwork[w_], tau_t, lim_t, kept_t)
            ntr = 0 if listed else 3  # both in their top-K: trunc_topk, not pass 3
            dm = np.float64(mb) - np.float64(mt)
            # --- pass 3: JS and KL terms, and the first three truncated JS columns ---
            dl = lse_b - lse_t
            # exp(-e) = (q/p) exp(-dl + c_bt) = (wq/wa) x_bt, exp(-e2) = (wa/wq) x_tb
            lsr = math.log(sb) - math.log(st)
            x_bt = math.exp(min(-dl + c_bt + lsr, 700.0))
            x_tb = math.exp(min(dl + c_tb - lsr, 700.0))
            cq = np.float32(sb / st)  # q/p = (wq/wa) sb/st
            (js, am_b, bm_b, w_b, out_b, am_t, bm_t, w_t, out_t, n_big_b, n_big_t, tr0, tr1,
             tr2) = _terms(xb, xt, bufb, buft, np.float32(1.0 / sb), np.float32(1.0 / st), dl,
                           c_bt, c_tb, x_bt, x_tb, cq, np.float32(st / sb), ntr,
                           *trunc_params(xb, xt, dm, lim_b, kept_b, lim_t, kept_t, 0))
            if listed:
                tr0, tr1, tr2 = trunc_topk(xb, xt, bufb, buft, top_ids[r, 0], top_ids[r, 1],
                                           *trunc_params(xb, xt, dm, lim_b, kept_b, lim_t,
                                                         kept_t, 0))
            big_b = n_big_b > 0
            big_t = n_big_t > 0
            kl_bt, shift = _kl_finish(inf_bt, big_b, w_b, am_b, bm_b, out_b, c_bt, lse_b, lse_t)
            kl_tb, _ = _kl_finish(inf_tb, big_t, w_t, am_t, bm_t, out_t, c_tb, lse_t, lse_b)
            for m, acc in enumerate((tr0, tr1, tr2)):
                if m < nj:
                    tjs[r, m] = min(max(0.5 * acc, 0.0), LN2)
            for g in range(3, nj, 3):  # further nuclei (none registered today): 3 per pass
                prm = trunc_params(xb, xt, dm, lim_b, kept_b, lim_t, kept_t, g)
                if listed:
                    got = trunc_topk(xb, xt, bufb, buft, top_ids[r, 0], top_ids[r, 1], *prm)
                else:
                    got = _terms(xb, xt, bufb, buft, np.float32(1.0), np.float32(1.0), 0.0,
                                 0.0, 0.0, 1.0, 1.0, np.float32(1.0), np.float32(1.0), 3,
                                 *prm)[11:]
                for m, acc in enumerate(got):
                    if g + m < nj:
                        tjs[r, g + m] = min(max(0.5 * acc, 0.0), LN2)
            f64[r, 0] = min(max(0.5 * js, 0.0), LN2)
            f64[r, 1] = kl_bt
            f64[r, 2] = kl_tb
            f64[r, 3] = max(math.log(sb) - hb / sb, 0.0)
            f64[r, 4] = max(math.log(st) - ht / st, 0.0)
            f64[r, 5] = ob - lse_b
            f64[r, 6] = ot - lse_t
            f64[r, 7] = (np.float64(ot) - np.float64(ob)) - shift
            f64[r, 8] = lse_b
            f64[r, 9] = lse_t
            i64[r, 0] = rb + 1
            i64[r, 1] = rt + 1
            i64[r, 2] = ab
            i64[r, 3] = at
            i64[r, 4] = ra + 1


def run_rows(lb, lt, tok, k: int, tps=(0.7,)):
    """fused_rows on torch CPU tensors: (f64 (N, 10), i64 (N, 5), top ids (N, 2, k), top
    logits (N, 2, k), truncated JS (N, len(tps))) as torch tensors (see fused_rows)."""
    import torch

    a = lb.detach().float().contiguous().numpy()
    b = lt.detach().float().contiguous().numpy()
    n = a.shape[0]
    f64 = np.empty((n, 10), np.float64)
    i64 = np.empty((n, 5), np.int64)
    ids = np.empty((n, 2, k), np.int64)
    tx = np.empty((n, 2, k), np.float32)
    tp = np.asarray(tps, np.float64)
    tjs = np.empty((n, len(tp)), np.float64)
    if n:
        nw = min(n, nb.get_num_threads())
        work = np.empty((nw, 2, a.shape[1]), np.float32)
        fused_rows(a, b, a.view(np.int32), b.view(np.int32),
                   tok.detach().cpu().numpy().astype(np.int64), k, tp, f64, i64, ids, tx, tjs,
                   work, np.empty((nw, a.shape[1]), np.uint16))
    return tuple(torch.from_numpy(x) for x in (f64, i64, ids, tx, tjs))
