"""The nucleus (top-p) of a next-token distribution without sorting the vocabulary, and the
metrics built on it: `nucleus`, `top_p_logprobs`, `js_top_p` (core/metrics/registry.py registers
js_top_p; the cross-sampling decoder truncates with top_p_logprobs)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.metrics.exact import js_terms
from core.metrics.kernels import (
    LN2,
    Scratch,
    _empty,
    _host,
    _js,
    _log,
    _rowdot,
    js_from_logprobs,
)

# --- The nucleus (top-p) -------------------------------------------------------------------
#
# The rule, shared by js_top_p, top_p_logprobs and the cross-sampling decoder: order a row's
# tokens by probability, most likely first, equal probabilities by token id (lower id first);
# keep a token when the mass of the tokens before it is below top_p. The nucleus is then the
# smallest such prefix whose mass reaches top_p; its first token is always kept. (Before the
# rule was written down, the order among equal probabilities was whatever an unstable sort
# gave.) Masses are float sums: where the mass before a token equals top_p to within the
# rounding of a sum (~1e-16 in float64), the two ways below may decide that token apart.
#
# Small vocabularies (<= NUCLEUS_SORT_VOCAB): one stable sort per row (_nucleus_sorted, also
# the reference the tests compare with). Larger ones, without sorting the vocabulary:
# 1. the exact top-k (NUCLEUS_TOPK tokens, shared with the stored top-k): a row whose nucleus
#    ends inside it, strictly before a less likely token, is done (peaked rows, which are most
#    rows of a trained model);
# 2. otherwise the top-k plus a 1-in-SAMPLE_STRIDE sample of the tokens below it estimate
#    where the mass reaches top_p, at a probability t; one pass counts the mass above t
#    exactly; the tokens between t and where the missing (or surplus) mass is reached, with
#    SAMPLE_Z standard errors of the sample's estimate to spare, are selected and sorted
#    (a few thousand when the nucleus is half the vocabulary), and the last kept token, its
#    probability p_t and how many of the tokens equal to p_t are kept follow exactly: the
#    nucleus is every token with p > p_t and the first of those equal to p_t (all of them,
#    nearly always);
# 3. a selection that turns out too narrow (checked exactly) falls back to a stable sort of
#    that row.
# Step 2 runs on CPU; on other devices the rows that need it are sorted (a device sort is
# cheaper there than the search's round trips to the host).

NUCLEUS_SORT_VOCAB = 1024
NUCLEUS_TOPK = 64
SAMPLE_STRIDE = 32
SAMPLE_Z = 6.0


def _nucleus_sorted(p: torch.Tensor, top_p: float) -> torch.Tensor:
    """(N, V) bool keep mask by the rule above, from one stable sort per row."""
    ps, idx = p.sort(dim=-1, descending=True, stable=True)
    keep_s = (ps.cumsum(-1) - ps) < top_p  # mass before this token is below top_p
    keep_s[..., 0] = True
    return torch.zeros_like(keep_s).scatter(-1, idx, keep_s)


def _on_host(t: torch.Tensor) -> np.ndarray:
    h = _host(t)
    return h if h is not None else t.detach().cpu().numpy()


def _between(p: torch.Tensor, lo: float, hi: float, lo_strict: bool) -> np.ndarray:
    """The values of 1-D `p` in [lo, hi] ((lo, hi] when lo_strict), in any order."""
    a = _host(p)
    if a is not None:
        return np.compress(((a > lo) if lo_strict else (a >= lo)) & (a <= hi), a)
    return _on_host(p[((p > lo) if lo_strict else (p >= lo)) & (p <= hi)])


def _mass_above(p: torch.Tensor, t: float, out: torch.Tensor | None) -> float:
    """Mass of the 1-D probabilities `p` strictly above `t` (one fused pass)."""
    return float(torch.threshold(p, t, 0.0, out=out).sum() if out is not None
                 else torch.threshold(p, t, 0.0).sum())


def _first(ok: np.ndarray) -> int:
    """Index of the first True, -1 if none."""
    i = int(np.argmax(ok))
    return i if ok[i] else -1


def _reach(vals: np.ndarray, w: float, need: float) -> int:
    """First i such that w * sum(vals[:i+1]), less SAMPLE_Z standard errors of it, exceeds
    `need` (vals: sample points, each standing for w tokens), -1 if none. Scans growing
    windows: the answer is usually within the first few hundred points."""
    n, size, done, acc, var = len(vals), 256, 0, 0.0, 0.0
    while done < n:
        win = vals[done:done + size]
        cum = acc + w * np.cumsum(win)
        sd = np.sqrt(var + w * (w - 1) * np.cumsum(win * win))
        i = _first(cum - SAMPLE_Z * sd > need)
        if i >= 0:
            return done + i
        acc, var = float(cum[-1]), float(sd[-1]) ** 2
        done += len(win)
        size *= 4
    return -1


def _nucleus_row(p: torch.Tensor, top: torch.Tensor, top_p: float,
                 work: torch.Tensor | None = None, t: float | None = None) -> tuple[float, int]:
    """(p_t, m) for one row of probabilities `p` (V,) whose nucleus does not end inside its
    top-k `top` (probabilities, largest first) before a less likely token: the nucleus is
    every token with p > p_t and the m lowest-id tokens with p == p_t (m = -1: all of them).
    p_t = nan: not found, use the sort (step 3). `t`: the probability where it ends when
    already known (ties at the end of a top-k nucleus). Small arrays are handled in numpy."""
    s = SAMPLE_STRIDE
    top_h = _on_host(top)
    sample = None
    if t is None:
        h = _host(p)
        sample = np.sort(h[::s] if h is not None else _on_host(p[::s]))
        sample = sample[:np.searchsorted(sample, top_h[-1])][::-1]  # below the top-k
        if not len(sample):
            return math.nan, 0
        cum = float(top_h.sum()) + s * np.cumsum(sample)
        j = min(int(np.searchsorted(cum, top_p)), len(sample) - 1)  # the estimate arrives
        t = float(sample[j])
    above = _mass_above(p, t, work)
    if above < top_p:  # the nucleus goes on below t: select [t_lo, t] holding the rest
        t_lo = t
        if sample is not None:
            i = _reach(sample[j:], s, top_p - above)
            t_lo = float(sample[j + i]) if i >= 0 else 0.0
        band = np.sort(_between(p, t_lo, t, False))[::-1]
        before = above + np.cumsum(band) - band
        kb = int(np.count_nonzero(before < top_p))
        if kb == len(band) and t_lo > 0.0 and above + float(band.sum()) < top_p:
            return math.nan, 0  # the selection was too narrow
    else:  # it ends above t: select (t, t_hi] holding the surplus
        i = _reach(sample[:j][::-1], s, above - top_p) if sample is not None else -1
        t_hi = float(sample[j - 1 - i]) if i >= 0 else math.inf
        band = np.sort(_between(p, t, t_hi, True))[::-1]
        mass_hi = above - float(band.sum())  # mass above the selection
        if mass_hi >= top_p or not len(band):
            return math.nan, 0
        before = mass_hi + np.cumsum(band) - band
        kb = int(np.count_nonzero(before < top_p))
    kb = max(kb, 1)
    pt = band[kb - 1]
    n_eq = int(np.count_nonzero(band == pt))
    kept_eq = kb - int(np.count_nonzero(band > pt))
    return float(pt), (-1 if kept_eq == n_eq else kept_eq)


@dataclass
class Nucleus:
    """Each row's nucleus, in one or more of these forms:

    keep: (N, V) bool masks (small vocabularies: from the sort);
    threshold: row i keeps every token with p > `p_t[i]` and, of those with p == p_t[i],
        all (`ties[i]` = -1) or the ties[i] lowest ids; rows in `masks` have an explicit
        (V,) keep mask instead;
    sparse (as well, when every row's nucleus ends inside its top-k): `ids` (N, k) most
        likely first, `keep_sorted` (N, k) the kept ones, `last` (N,) the probability of the
        last kept one (no token outside the nucleus has it).
    """

    keep: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    keep_sorted: torch.Tensor | None = None
    last: torch.Tensor | None = None
    p_t: list[float] | None = None
    ties: list[int] | None = None
    masks: dict | None = None

    def row_mask(self, p_row: torch.Tensor, i: int) -> torch.Tensor:
        """(V,) keep mask of row i."""
        if self.keep is not None:
            return self.keep[i]
        if i in self.masks:
            return self.masks[i]
        if self.ties[i] < 0:
            return p_row >= self.p_t[i]
        eq = p_row == self.p_t[i]
        return (p_row > self.p_t[i]) | (eq & (eq.cumsum(0) <= self.ties[i]))

    def kept(self, p_row: torch.Tensor, i: int, out: torch.Tensor) -> torch.Tensor:
        """(V,) p_row on row i's nucleus, 0 elsewhere, written to `out`."""
        if self.keep is not None or i in self.masks or self.ties[i] >= 0:
            return torch.mul(p_row, self.row_mask(p_row, i), out=out)
        below = torch.nextafter(torch.tensor(self.p_t[i], dtype=p_row.dtype),
                                torch.tensor(0.0, dtype=p_row.dtype))
        return torch.threshold(p_row, float(below), 0.0, out=out)  # p >= p_t

    def dense(self, p: torch.Tensor) -> torch.Tensor:
        """(N, V) bool keep mask."""
        if self.keep is not None:
            return self.keep
        if self.ids is not None:
            keep = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
            return keep.scatter(-1, self.ids, self.keep_sorted)
        return torch.stack([self.row_mask(p[i], i) for i in range(p.shape[0])])


def nucleus(p: torch.Tensor, top_p: float,
            top: tuple[torch.Tensor, torch.Tensor] | None = None,
            scratch: Scratch | None = None) -> Nucleus:
    """The nucleus of each row of probabilities `p` (N, V) by the rule above. `top`: each
    row's top-k (ids, probabilities), most likely first, when already at hand."""
    n, v = p.shape
    if v <= NUCLEUS_SORT_VOCAB or n == 0:
        return Nucleus(keep=_nucleus_sorted(p, top_p))
    if top is None:
        vals, ids = p.topk(min(v, NUCLEUS_TOPK), -1)
    else:
        ids, vals = top
    k = ids.shape[1]
    keep_s = (vals.cumsum(-1) - vals) < top_p
    keep_s[:, 0] = True
    cnt = keep_s.sum(-1, keepdim=True)
    last = vals.gather(-1, cnt - 1)
    nxt = vals.gather(-1, cnt.clamp(max=k - 1))
    inside = ((cnt < k) & (nxt < last))[:, 0].tolist()  # ends before a less likely token
    last_l, cnt_l = last[:, 0].tolist(), cnt[:, 0].tolist()
    if all(inside):
        return Nucleus(ids=ids, keep_sorted=keep_s, last=last[:, 0], p_t=last_l,
                       ties=[-1] * n, masks={})
    if p.device.type != "cpu":  # a device sort beats per-row round trips to the host
        keep = torch.zeros((n, v), dtype=torch.bool, device=p.device).scatter(-1, ids, keep_s)
        rows = torch.tensor([not x for x in inside], device=p.device)
        keep[rows] = _nucleus_sorted(p[rows], top_p)
        return Nucleus(keep=keep)
    out = Nucleus(p_t=last_l, ties=[-1] * n, masks={})  # inside: p >= last, no other has it
    work = None if scratch is None else scratch.get("row", (v,), p.dtype, p.device)
    for i in range(n):
        if inside[i]:
            continue
        at = last_l[i] if cnt_l[i] < k else None  # ends among tokens tied with its last
        pt, m = _nucleus_row(p[i], vals[i], top_p, work, at)
        if math.isnan(pt):
            out.masks[i] = _nucleus_sorted(p[i:i + 1], top_p)[0]
        else:
            out.p_t[i], out.ties[i] = pt, m
    return out


def top_p_logprobs(logp: torch.Tensor, top_p: float) -> torch.Tensor:
    """Log-probs of the top-p (nucleus) truncated, renormalised distribution; -inf outside.

    The nucleus is the smallest set of most likely tokens whose mass reaches `top_p`
    (the most likely token is always kept; equal probabilities: lower token id first), as in
    nucleus sampling; see the rule above.
    """
    p = logp.exp()
    keep = nucleus(p, top_p).dense(p)
    masked = logp.masked_fill(~keep, float("-inf"))
    return masked - torch.logsumexp(masked, -1, keepdim=True)


def _js_sparse(p, logp, q, logq, a: Nucleus, b: Nucleus) -> torch.Tensor:
    """JS of the truncated distributions when both nuclei lie in their top-k: summed over the
    union of the two top-k lists only (no pass over the vocabulary)."""
    ia, ib = a.ids, b.ids
    cols = torch.cat([ia, ib], -1)
    dup = torch.cat([torch.zeros_like(ia, dtype=torch.bool),
                     (ib[:, :, None] == ia[:, None, :]).any(-1)], -1)  # count each column once
    pc, qc = p.gather(-1, cols), q.gather(-1, cols)
    in_a = (pc >= a.last[:, None]) & ~dup
    in_b = (qc >= b.last[:, None]) & ~dup
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    mp = torch.where(in_a, pc, zero).sum(-1, keepdim=True)
    mq = torch.where(in_b, qc, zero).sum(-1, keepdim=True)
    ninf = torch.full((), float("-inf"), dtype=p.dtype, device=p.device)
    lp = torch.where(in_a, logp.gather(-1, cols) - mp.log(), ninf)
    lq = torch.where(in_b, logq.gather(-1, cols) - mq.log(), ninf)
    return _js(lp.exp(), lp, lq.exp(), lq)


def _js_row(pk, logp, qk, logq, s, e) -> torch.Tensor:
    """JS of one row's truncated distributions from the kept masses pk, qk (V,) (zeros
    outside the nuclei) and finite log-probs, with work buffers s, e (V,). With P' = pk/Mp,
    Q' = qk/Mq, s = qk + pk Mq/Mp = Mq (P' + Q') (one pass) and log M = log s - log Mq - ln 2:
    JS = 1/2 [sum P'(log p - log s) - log Mp + log Mq + sum Q'(log q - log s)] + ln 2."""
    mp, mq = float(pk.sum(dtype=torch.float64)), float(qk.sum(dtype=torch.float64))
    if pk.dtype != torch.float64:  # float32 math: non-negative terms (core/metrics/exact.py)
        torch.sub(logp, logq, out=e)
        e.sub_(math.log(mp) - math.log(mq))
        d = torch.where(pk > 0, torch.where(qk > 0, e, math.inf), -math.inf)
        return float(js_terms((pk / mp)[None], (qk / mq)[None], d[None])[0])
    torch.add(qk, pk, alpha=mq / mp, out=s)
    ls = _log(s.clamp_min_(torch.finfo(s.dtype).tiny), s)  # 0 outside both: any finite value
    torch.sub(logp, ls, out=e)
    a = float(_rowdot(pk[None], e[None])[0]) / mp
    torch.sub(logq, ls, out=e)
    b = float(_rowdot(qk[None], e[None])[0]) / mq
    return 0.5 * (a + b - math.log(mp) + math.log(mq)) + LN2


def _js_top_p(p, logp, q, logq, top_p, top_b=None, top_t=None, finite=None,
              scratch: Scratch | None = None) -> torch.Tensor:
    a, b = nucleus(p, top_p, top_b, scratch), nucleus(q, top_p, top_t, scratch)
    if a.ids is not None and b.ids is not None:
        return _js_sparse(p, logp, q, logq, a, b)
    if finite is None:
        finite = bool(torch.isfinite(logp).all() and torch.isfinite(logq).all())
    if finite and a.keep is None and b.keep is None:  # large vocabulary: a row at a time
        v, dt, dev = p.shape[-1], p.dtype, p.device
        pk, qk, s, e = (_empty(scratch, n, (v,), dt, dev) for n in ("pk", "qk", "s1", "e1"))
        rows = [_js_row(a.kept(p[i], i, pk), logp[i], b.kept(q[i], i, qk), logq[i], s, e)
                for i in range(p.shape[0])]
        return torch.tensor(rows, dtype=p.dtype, device=p.device).clamp(0.0, LN2)
    ninf = float("-inf")
    tp = logp.masked_fill(~a.dense(p), ninf)
    tq = logq.masked_fill(~b.dense(q), ninf)
    return js_from_logprobs(tp - torch.logsumexp(tp, -1, keepdim=True),
                            tq - torch.logsumexp(tq, -1, keepdim=True))


def js_top_p(logp: torch.Tensor, logq: torch.Tensor, top_p: float) -> torch.Tensor:
    """JS between the top-p truncated, renormalised distributions, (N, V) -> (N,); equal to
    js_from_logprobs(top_p_logprobs(logp), top_p_logprobs(logq)). No sort of the vocabulary
    (see the nucleus rule above); when both nuclei are small it is summed over their union."""
    return _js_top_p(logp.exp(), logp, logq.exp(), logq, top_p)
