"""The fused CUDA kernel (Triton): the same per-row results as core/metrics/fused_numba.py
(every exact metric, ranks, argmaxes, log-sum-exps) from the two (N, V) float32 logit arrays,
one program per row, three passes over the row in blocks, no (N, V) intermediate. Weights
p, q in float32; d, e and the terms f(d), k(e) (core/metrics/exact.py) in float64; sums in
float64. The top-K lists come from torch.topk on the device (one call per model and chunk);
the truncated JS columns from those lists or, for rows whose nuclei end beyond them, from
core/metrics/fused_triton_nucleus.py (core/metrics/fused.py decides).

Tested on CPU under Triton's interpreter (TRITON_INTERPRET=1, set before triton is
imported: tests/test_fused.py runs it in a subprocess) for exactness, not speed; it has not
run on a GPU yet (benchmarks/gpu_check.sh is the prepared check).
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

LN2 = math.log(2.0)
BLOCK = 2048
# Under the interpreter a block is a numpy call: fewer, larger blocks run far faster on CPU
INTERPRET_BLOCK = 1 << 15


@triton.jit
def _jsf(d):
    ad = tl.abs(d)
    x2 = 0.25 * d * d
    ser = x2 * (0.5 + x2 * (-0.25 + x2 * (1.0 / 9.0 + x2 * (-17.0 / 360.0
                                                           + x2 * (31.0 / 1575.0)))))
    t = tl.exp(-ad)
    closed = 0.6931471805599453 - tl.log(1.0 + t) - ad * t / (1.0 + t)
    return tl.where(ad < 0.25, ser, closed)


@triton.jit
def _klk(e):
    ser = e * e * (0.5 + e * (-1.0 / 6.0 + e * (1.0 / 24.0 + e * (
        -1.0 / 120.0 + e * (1.0 / 720.0 - e / 5040.0)))))
    return tl.where(tl.abs(e) < 0.1, ser, tl.exp(-e) - 1.0 + e)


@triton.jit
def _rows_kernel(lb_ptr, lt_ptr, tok_ptr, f_ptr, i_ptr, V, stride, BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    pb = lb_ptr + r * stride
    pt = lt_ptr + r * stride
    t = tl.load(tok_ptr + r)
    ob = tl.load(pb + t)
    ot = tl.load(pt + t)
    offs = tl.arange(0, BLOCK)
    ninf = float("-inf")
    # --- pass 1: max, first argmax, rank counts ---
    mb = tl.full((), ninf, tl.float32)
    mt = tl.full((), ninf, tl.float32)
    ab = tl.full((), 0, tl.int64)
    at = tl.full((), 0, tl.int64)
    rb = tl.full((), 0, tl.int64)
    rt = tl.full((), 0, tl.int64)
    for s in range(0, V, BLOCK):
        idx = s + offs
        m = idx < V
        a = tl.load(pb + idx, mask=m, other=ninf)
        b = tl.load(pt + idx, mask=m, other=ninf)
        rb += tl.sum((a > ob).to(tl.int64), 0)
        rt += tl.sum((b > ot).to(tl.int64), 0)
        xa = tl.max(a, 0)
        xb = tl.max(b, 0)
        ia = tl.min(tl.where(a == xa, idx, V), 0).to(tl.int64)
        ib = tl.min(tl.where(b == xb, idx, V), 0).to(tl.int64)
        ab = tl.where(xa > mb, ia, ab)
        at = tl.where(xb > mt, ib, at)
        mb = tl.maximum(mb, xa)
        mt = tl.maximum(mt, xb)
    # --- pass 2: log-sum-exps, entropy sums, KL shifts, the tuned top-1's base rank ---
    oa = tl.load(pb + at)
    sb = tl.full((), 0.0, tl.float64)
    st = tl.full((), 0.0, tl.float64)
    hb = tl.full((), 0.0, tl.float64)
    ht = tl.full((), 0.0, tl.float64)
    wdb = tl.full((), 0.0, tl.float64)
    wb2 = tl.full((), 0.0, tl.float64)
    wdt = tl.full((), 0.0, tl.float64)
    wt2 = tl.full((), 0.0, tl.float64)
    n_inf_bt = tl.full((), 0, tl.int64)
    n_inf_tb = tl.full((), 0, tl.int64)
    ra = tl.full((), 0, tl.int64)
    for s in range(0, V, BLOCK):
        idx = s + offs
        m = idx < V
        a = tl.load(pb + idx, mask=m, other=ninf)
        b = tl.load(pt + idx, mask=m, other=ninf)
        ra += tl.sum((a > oa).to(tl.int64), 0)
        ea = a - mb
        eb = b - mt
        wa = tl.exp(ea)
        wt = tl.exp(eb)
        sb += tl.sum(wa.to(tl.float64), 0)
        st += tl.sum(wt.to(tl.float64), 0)
        hb += tl.sum(tl.where(wa > 0, wa * ea, 0.0).to(tl.float64), 0)
        ht += tl.sum(tl.where(wt > 0, wt * eb, 0.0).to(tl.float64), 0)
        fa = a > ninf
        fb = b > ninf
        both = fa & fb
        dd = tl.where(both, a.to(tl.float64) - b.to(tl.float64), 0.0)
        wdb += tl.sum(tl.where(both, wa.to(tl.float64) * dd, 0.0), 0)
        wb2 += tl.sum(tl.where(both, wa.to(tl.float64), 0.0), 0)
        wdt -= tl.sum(tl.where(both, wt.to(tl.float64) * dd, 0.0), 0)
        wt2 += tl.sum(tl.where(both, wt.to(tl.float64), 0.0), 0)
        n_inf_bt += tl.sum((fa & ~fb).to(tl.int64), 0)
        n_inf_tb += tl.sum((fb & ~fa).to(tl.int64), 0)
    lse_b = mb.to(tl.float64) + tl.log(sb)
    lse_t = mt.to(tl.float64) + tl.log(st)
    c_bt = tl.where(wb2 > 0, wdb / tl.maximum(wb2, 1e-300), 0.0)
    c_tb = tl.where(wt2 > 0, wdt / tl.maximum(wt2, 1e-300), 0.0)
    dl = lse_b - lse_t
    # --- pass 3: JS and KL terms ---
    js = tl.full((), 0.0, tl.float64)
    am_b = tl.full((), 0.0, tl.float64)
    bm_b = tl.full((), 0.0, tl.float64)
    w_b = tl.full((), 0.0, tl.float64)
    out_b = tl.full((), 0.0, tl.float64)
    am_t = tl.full((), 0.0, tl.float64)
    bm_t = tl.full((), 0.0, tl.float64)
    w_t = tl.full((), 0.0, tl.float64)
    out_t = tl.full((), 0.0, tl.float64)
    big_b = tl.full((), 0, tl.int64)
    big_t = tl.full((), 0, tl.int64)
    for s in range(0, V, BLOCK):
        idx = s + offs
        m = idx < V
        a = tl.load(pb + idx, mask=m, other=ninf)
        b = tl.load(pt + idx, mask=m, other=ninf)
        p = tl.exp((a.to(tl.float64) - lse_b).to(tl.float32)).to(tl.float64)
        q = tl.exp((b.to(tl.float64) - lse_t).to(tl.float32)).to(tl.float64)
        fa = a > ninf
        fb = b > ninf
        both = fa & fb
        delta = tl.where(both, a.to(tl.float64) - b.to(tl.float64), 0.0)
        jst = tl.where(both, (p + q) * _jsf(delta - dl), (p + q) * 0.6931471805599453)
        js += tl.sum(jst, 0)
        pp = both & (p > 0)
        qq = both & (q > 0)
        e = tl.where(pp, delta - c_bt, 0.0)
        e2 = tl.where(qq, -delta - c_tb, 0.0)
        big_b += tl.sum((e < -88.0).to(tl.int64), 0)
        big_t += tl.sum((e2 < -88.0).to(tl.int64), 0)
        am_b += tl.sum(tl.where(pp, p * e, 0.0), 0)
        bm_b += tl.sum(tl.where(pp, p * _klk(tl.maximum(e, -88.0)), 0.0), 0)
        w_b += tl.sum(tl.where(pp, p, 0.0), 0)
        out_b += tl.sum(tl.where(p > 0, 0.0, q), 0)
        am_t += tl.sum(tl.where(qq, q * e2, 0.0), 0)
        bm_t += tl.sum(tl.where(qq, q * _klk(tl.maximum(e2, -88.0)), 0.0), 0)
        w_t += tl.sum(tl.where(qq, q, 0.0), 0)
        out_t += tl.sum(tl.where(q > 0, 0.0, p), 0)
    fo = f_ptr + r * 16
    tl.store(fo + 0, js)
    tl.store(fo + 1, am_b)
    tl.store(fo + 2, bm_b)
    tl.store(fo + 3, w_b)
    tl.store(fo + 4, out_b)
    tl.store(fo + 5, am_t)
    tl.store(fo + 6, bm_t)
    tl.store(fo + 7, w_t)
    tl.store(fo + 8, out_t)
    tl.store(fo + 9, lse_b)
    tl.store(fo + 10, lse_t)
    tl.store(fo + 11, c_bt)
    tl.store(fo + 12, c_tb)
    tl.store(fo + 13, tl.log(sb) - hb / sb)
    tl.store(fo + 14, tl.log(st) - ht / st)
    io = i_ptr + r * 8
    tl.store(io + 0, rb + 1)
    tl.store(io + 1, rt + 1)
    tl.store(io + 2, ab)
    tl.store(io + 3, at)
    tl.store(io + 4, ra + 1)
    tl.store(io + 5, n_inf_bt)
    tl.store(io + 6, n_inf_tb)
    tl.store(io + 7, tl.where(big_b > 0, 1, 0) + tl.where(big_t > 0, 2, 0))


def _kl_finish(inf_n, big, w, am, bm, out_mass, c, lse_a, lse_b):
    """(KL, lse_b - lse_a) per row (core/metrics/exact.py's kl_exact), float64 tensors."""
    lg = torch.log1p((bm - am) / w) - torch.log1p(-out_mass)
    kl = am / w + lg
    ok = (kl < 1e-3) & ~big & torch.isfinite(kl)
    naive = am / w + c - (lse_a - lse_b)
    klv = torch.where(ok, kl.clamp_min(0.0), naive.clamp_min(0.0))
    klv = torch.where(inf_n > 0, math.inf, klv)
    return klv, torch.where(ok & (inf_n == 0), -c + lg, lse_b - lse_a)


def run_rows(lb: torch.Tensor, lt: torch.Tensor, tok: torch.Tensor, k: int):
    """The kernel on rows of (N, V) logits: (f64 (N, 10), i64 (N, 5), top ids (N, 2, k),
    top logits (N, 2, k)), laid out as core/metrics/fused_numba.run_rows's."""
    a, b = lb.float().contiguous(), lt.float().contiguous()
    n, v = a.shape
    raw = torch.zeros((n, 16), dtype=torch.float64, device=a.device)
    ri = torch.zeros((n, 8), dtype=torch.int64, device=a.device)
    if n:
        _rows_kernel[(n,)](a, b, tok.to(a.device, torch.int64).contiguous(), raw, ri, v,
                           a.stride(0), BLOCK=INTERPRET_BLOCK
                           if os.environ.get("TRITON_INTERPRET") == "1" else BLOCK)
    lse_b, lse_t = raw[:, 9], raw[:, 10]
    kl_bt, shift = _kl_finish(ri[:, 5], (ri[:, 7] & 1) > 0, raw[:, 3], raw[:, 1], raw[:, 2],
                              raw[:, 4], raw[:, 11], lse_b, lse_t)
    kl_tb, _ = _kl_finish(ri[:, 6], (ri[:, 7] & 2) > 0, raw[:, 7], raw[:, 5], raw[:, 6],
                          raw[:, 8], raw[:, 12], lse_t, lse_b)
    tk = tok.to(a.device, torch.int64)[:, None]
    xb = a.gather(-1, tk)[:, 0].double()
    xt = b.gather(-1, tk)[:, 0].double()
    f64 = torch.stack([(0.5 * raw[:, 0]).clamp(0.0, LN2), kl_bt, kl_tb,
                       raw[:, 13].clamp_min(0.0), raw[:, 14].clamp_min(0.0), xb - lse_b,
                       xt - lse_t, (xt - xb) - shift, lse_b, lse_t], -1)
    vb, ib = a.topk(k, -1)
    vt, it = b.topk(k, -1)
    return (f64, ri[:, :5], torch.stack([ib, it], 1), torch.stack([vb, vt], 1))
