"""The truncated JS columns on the Triton path for rows whose nuclei do not end inside the
top-K lists (near-uniform rows): each nucleus found on the device by a search over the row,
then the JS of the truncated distributions in one more pass. No sort, no (N, V) intermediate,
no row handed to the reference Context.

The nucleus rule is core/metrics/nucleus.py's: tokens ordered by probability, most likely
first, equal ones by id (lower first); a token is kept when the mass before it is below
top_p. Probabilities are monotone in the logits, so the order is that of the float32 logits,
compared as integers: `_okey` maps a float32 to an int32 with the same order. The last kept
token's key K is the largest key k whose mass M(k) = sum of p over keys >= k reaches top_p;
`_search` finds it with eight passes of a 16-way split of the 32-bit key range (16
thresholds compared per entry and pass). A last pass counts the mass above K, the n tokens
of key K (equal logits: equal probabilities p_K) and so how many c of them are kept (the
lower ids): those i = 0, 1, ... with mass_above + i p_K < top_p. `_truncated_js` then walks
both rows once, numbering each row's ties at K as it goes, and sums core/metrics/exact.py's
non-negative JS terms (p+q) f(d) of the renormalised truncated distributions.

Probabilities here are float64, p = exp(logit - lse), unlike the main kernel's float32 ones:
which tokens a nucleus keeps is decided by sums of tens of thousands of them against top_p,
and float32 rounding of the exponent (~5e-7 relative, the same for every token of a tie
group) moved the boundary by one token in a tie group of 101,290 (5e-5 relative error in
the truncated JS). Tested on CPU under Triton's interpreter (tests/test_fused.py) against the
float64 Context; not run on a GPU yet.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from core.metrics.fused_triton import _jsf

BLOCK = 512  # entries per block: (BLOCK, 16) comparisons per search pass
INTERPRET_BLOCK = 1 << 16


@triton.jit
def _okey(x):
    """float32 -> int64 key in the same order (-0.0 counted as +0.0)."""
    bits = tl.where(x == 0.0, 0.0, x).to(tl.int32, bitcast=True)
    return tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)


@triton.jit
def _search(x_ptr, lse_ptr, row_ptr, out_ptr, tp_ptr, V, stride, BLOCK: tl.constexpr):
    """Per listed row: (K, c, log Z) into out (f64 (rows, 3)): the last kept token's key,
    how many of the tokens with key K are kept, and log of the nucleus's mass. top_p is
    read from a float64 tensor: a Python float argument would reach the kernel as float32
    (0.7 as 0.699999988), moving the nucleus edge where the mass is that close to it."""
    i = tl.program_id(0)
    top_p = tl.load(tp_ptr)
    r = tl.load(row_ptr + i).to(tl.int64)
    px = x_ptr + r * stride
    lse = tl.load(lse_ptr + r)
    offs = tl.arange(0, BLOCK)
    j16 = tl.arange(0, 16).to(tl.int64)
    lo = tl.full((), -(1 << 31), tl.int64)  # M(lo) = all the mass (>= top_p, or all kept)
    span = tl.full((), 1 << 32, tl.int64)
    for _ in range(8):
        span = span >> 4
        thr = lo + j16 * span
        mass = tl.zeros((16,), tl.float64)
        for s in range(0, V, BLOCK):
            idx = s + offs
            x = tl.load(px + idx, mask=idx < V, other=float("-inf"))
            p = tl.exp(x.to(tl.float64) - lse)
            k = _okey(x)
            mass += tl.sum(tl.where(k[:, None] >= thr[None, :], p[:, None], 0.0), 0)
        j = tl.max(tl.where(mass >= top_p, j16, 0), 0)  # thr[0] = lo always qualifies
        lo = lo + j * span
    above = tl.full((), 0.0, tl.float64)
    n_eq = tl.full((), 0, tl.int64)
    p_k = tl.full((), 0.0, tl.float64)
    for s in range(0, V, BLOCK):
        idx = s + offs
        x = tl.load(px + idx, mask=idx < V, other=float("-inf"))
        p = tl.exp(x.to(tl.float64) - lse)
        k = _okey(x)
        above += tl.sum(tl.where(k > lo, p, 0.0), 0)
        n_eq += tl.sum(((k == lo) & (idx < V)).to(tl.int64), 0)
        p_k = tl.maximum(p_k, tl.max(tl.where(k == lo, p, 0.0), 0))
    need = top_p - above  # > 0: M(K + 1) < top_p
    c = tl.where(p_k > 0, tl.ceil(need / tl.maximum(p_k, 1e-300)), 0.0)
    c = tl.where((p_k > 0) & (c < n_eq.to(tl.float64)), c, n_eq.to(tl.float64))
    c = tl.where(n_eq > 0, tl.maximum(c, 1.0), c)  # K's first tie is kept (need ~ 0 by rounding)
    tl.store(out_ptr + i * 3 + 0, lo.to(tl.float64))
    tl.store(out_ptr + i * 3 + 1, c)
    tl.store(out_ptr + i * 3 + 2, tl.log(above + c * p_k))


@triton.jit
def _truncated_js(a_ptr, b_ptr, lse_a_ptr, lse_b_ptr, row_ptr, na_ptr, nb_ptr, out_ptr, V,
                  stride, BLOCK: tl.constexpr):
    """Per listed row: the JS of the two truncated, renormalised distributions (nuclei as
    `_search` left them in na, nb) into out."""
    i = tl.program_id(0)
    r = tl.load(row_ptr + i).to(tl.int64)
    pa = a_ptr + r * stride
    pb = b_ptr + r * stride
    ka = tl.load(na_ptr + i * 3 + 0).to(tl.int64)
    ca = tl.load(na_ptr + i * 3 + 1).to(tl.int64)
    kb = tl.load(nb_ptr + i * 3 + 0).to(tl.int64)
    cb = tl.load(nb_ptr + i * 3 + 1).to(tl.int64)
    la = tl.load(lse_a_ptr + r) + tl.load(na_ptr + i * 3 + 2)  # log of p's nucleus mass, + lse
    lb = tl.load(lse_b_ptr + r) + tl.load(nb_ptr + i * 3 + 2)
    offs = tl.arange(0, BLOCK)
    ta = tl.full((), 0, tl.int64)  # ties at K seen so far (lower ids), per row
    tb = tl.full((), 0, tl.int64)
    js = tl.full((), 0.0, tl.float64)
    for s in range(0, V, BLOCK):
        idx = s + offs
        m = idx < V
        a = tl.load(pa + idx, mask=m, other=float("-inf"))
        b = tl.load(pb + idx, mask=m, other=float("-inf"))
        xa = _okey(a)
        xb = _okey(b)
        ea = ((xa == ka) & m).to(tl.int64)
        eb = ((xb == kb) & m).to(tl.int64)
        in_a = m & ((xa > ka) | ((ea > 0) & (ta + tl.cumsum(ea, 0) - ea < ca)))
        in_b = m & ((xb > kb) | ((eb > 0) & (tb + tl.cumsum(eb, 0) - eb < cb)))
        ta += tl.sum(ea, 0)
        tb += tl.sum(eb, 0)
        p = tl.where(in_a, tl.exp(a.to(tl.float64) - la), 0.0)  # renormalised, truncated
        q = tl.where(in_b, tl.exp(b.to(tl.float64) - lb), 0.0)
        both = in_a & in_b & (a > float("-inf")) & (b > float("-inf"))
        d = tl.where(both, (a.to(tl.float64) - b.to(tl.float64)) - (la - lb), 0.0)
        js += tl.sum(tl.where(both, (p + q) * _jsf(d), (p + q) * 0.6931471805599453), 0)
    tl.store(out_ptr + i, 0.5 * js)


def truncated_rows(lb: torch.Tensor, lt: torch.Tensor, lse_b: torch.Tensor,
                   lse_t: torch.Tensor, rows: torch.Tensor, tps: dict[str, float]) -> dict:
    """{column: (len(rows),) float64 truncated JS} for the listed rows of (N, V) float32
    logits lb, lt, with their log-sum-exps (N,) float64, for each {column: top_p}."""
    a, b = lb.float().contiguous(), lt.float().contiguous()
    dev = a.device
    rows = rows.to(dev, torch.int64).contiguous()
    lse_b = lse_b.to(dev, torch.float64).contiguous()
    lse_t = lse_t.to(dev, torch.float64).contiguous()
    n, (_, v) = len(rows), a.shape
    block = INTERPRET_BLOCK if os.environ.get("TRITON_INTERPRET") == "1" else BLOCK
    out, found = {}, {}
    for name, top_p in tps.items():
        for which, x, lse in (("b", a, lse_b), ("t", b, lse_t)):
            key = (which, float(top_p))
            if key not in found:  # one search per model and nucleus
                found[key] = torch.zeros((n, 3), dtype=torch.float64, device=dev)
                if n:
                    tp = torch.tensor([float(top_p)], dtype=torch.float64, device=dev)
                    _search[(n,)](x, lse, rows, found[key], tp, v, x.stride(0), BLOCK=block)
        js = torch.zeros(n, dtype=torch.float64, device=dev)
        if n:
            _truncated_js[(n,)](a, b, lse_b, lse_t, rows, found[("b", float(top_p))],
                                found[("t", float(top_p))], js, v, a.stride(0), BLOCK=block)
        out[name] = js.clamp(0.0, 0.6931471805599453)
    return out
