"""Per-token metrics between two next-token distributions: pure functions on tensors, each
registered with its metadata.

Every function takes a `Context` built from the base logits `lb` and tuned logits `lt`, each
(N, V) float tensors (rows are positions), plus the trace tokens `tok` (N,), and returns an
(N,) tensor. Names are the column names of docs/paper.md. A new metric is one function and
one `@register(...)`: the run-folder schema (core.store.schema), the query layer's metric
list, sequential mode's list of approximate columns and the app's labels and colour scales
are all derived from `METRICS`.

P = softmax(lb) is the base distribution, Q = softmax(lt) the tuned one. Natural logs, nats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

LN2 = math.log(2.0)


def _xlogy_diff(p: torch.Tensor, logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """sum_v p (log p - log q), with 0 * anything = 0 (so truncated supports are safe)."""
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros((), dtype=p.dtype, device=p.device))
    return terms.sum(-1)


def kl_from_logprobs(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) from log-probabilities, (N, V) -> (N,)."""
    return _xlogy_diff(logp.exp(), logp, logq)


def _js(p: torch.Tensor, logp: torch.Tensor, q: torch.Tensor, logq: torch.Tensor):
    """JS from probabilities and their logs. log M = log(p + q) - ln 2: one log per entry
    (p + q >= max(p, q), so it never underflows where a term counts)."""
    logm = torch.log(p + q) - LN2
    js = 0.5 * _xlogy_diff(p, logp, logm) + 0.5 * _xlogy_diff(q, logq, logm)
    return js.clamp(0.0, LN2)  # rounding can step a hair outside the exact range


def js_from_logprobs(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence in nats, 0..ln 2, (N, V) -> (N,)."""
    return _js(logp.exp(), logp, logq.exp(), logq)


def _entropy(p: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    return -torch.where(p > 0, p * logp, torch.zeros((), dtype=p.dtype, device=p.device)).sum(-1)


def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    return _entropy(logp.exp(), logp)


# On CPU numpy's float64 exp and log, argmax and counting run several times faster than
# torch's (measured on the 2-core development machine: exp 1.2-2x, log 1.4-1.8x, argmax 15x,
# count above a value 9x); these helpers use them on CPU tensors and torch elsewhere. None of
# them calls into numpy's BLAS, whose threads would compete with torch's.

def _host(t: torch.Tensor) -> np.ndarray | None:
    """A numpy view of a CPU float32/float64 tensor, else None."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return t.detach().numpy()
    return None


def _exp(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    a, o = _host(x), _host(out)
    if a is not None and o is not None:
        np.exp(a, out=o)
        return out
    return torch.exp(x, out=out)


def _log(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    a, o = _host(x), _host(out)
    if a is not None and o is not None:
        np.log(a, out=o)
        return out
    return torch.log(x, out=out)


def _argmax(x: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum of each row, (N, V) -> (N,) int64."""
    a = _host(x)
    if a is not None:
        return torch.from_numpy(np.argmax(a, -1).astype(np.int64))
    return x.argmax(-1)


def _count_above(x: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """Entries of each row of x (N, V) strictly above own (N,), as int64 (N,)."""
    a = _host(x)
    if a is not None and len(a) <= 32:  # a 1-D count per row: 4-5x count_nonzero(axis=-1)
        o = own.numpy()
        return torch.tensor([np.count_nonzero(a[i] > o[i]) for i in range(len(a))],
                            dtype=torch.int64)
    return (x > own[:, None]).sum(-1)


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_v a[:, v] * b[:, v] per row, (N, V) x (N, V) -> (N,). On CPU with few rows one dot
    per row: one pass over both, no (N, V) temporary. (torch's dot, not numpy's: numpy's BLAS
    threads would then compete with torch's for the cores.)"""
    if a.device.type == "cpu" and 0 < a.shape[0] <= 32:
        return torch.stack([torch.dot(x, y) for x, y in zip(a, b)])
    return (a * b).sum(-1)


class Scratch:
    """Work buffers reused from chunk to chunk. Fresh multi-megabyte tensors for every chunk
    cost page faults (the allocator hands large blocks back to the system): at vocabulary
    151,936 on CPU that was about 40% of the metric math. Results computed with a Scratch are
    views of its buffers, valid until the next Context that uses it."""

    def __init__(self):
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape, dtype: torch.dtype, device) -> torch.Tensor:
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = self._bufs[name] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)


def _empty(scratch: Scratch | None, name: str, shape, dtype, device) -> torch.Tensor:
    if scratch is None:
        return torch.empty(shape, dtype=dtype, device=device)
    return scratch.get(name, shape, dtype, device)


def _log_softmax_exp(x: torch.Tensor, dtype: torch.dtype, scratch: Scratch | None,
                     tag: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(log softmax(x), softmax(x)) over the last dim in `dtype`, with one exp per entry:
    log p = (x - max) - log S and p = exp(x - max) * (1 / S), S = sum exp(x - max) (as
    torch's softmax)."""
    logp = _empty(scratch, "logp" + tag, x.shape, dtype, x.device)
    p = _empty(scratch, "p" + tag, x.shape, dtype, x.device)
    logp.copy_(x)
    logp.sub_(x.amax(-1, keepdim=True).to(dtype))
    _exp(logp, p)
    s = p.sum(-1, keepdim=True)
    p.mul_(1.0 / s)
    logp.sub_(s.log_())
    return logp, p


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
    mp, mq = float(pk.sum()), float(qk.sum())
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


def rank_of(logp: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """1 + number of tokens strictly more likely than `tok` (1 = argmax). `logp` may be any
    order-preserving transform of the log-probabilities (the logits themselves)."""
    own = logp.gather(-1, tok[:, None])
    return (logp > own).sum(-1) + 1


# --- The registry: name -> Metric (function + metadata), in the column order of tokens. ---

class Context:
    """Everything the metrics of one chunk share, computed once: log-probabilities and
    probabilities in the math dtype and, on first use, the row sums, the top-k lists and the
    nuclei that several metrics read.

    lb, lt: (N, V) logits, any float dtype; they also give the order of the tokens (ranks,
    top-k, argmax: the order of the log-probabilities, which only subtract a row constant).
    dtype: the math dtype (default: that of lb and lt). top_k: the stored top-k size, so that
    one topk per model serves it and the nucleus search. scratch: work buffers reused from
    chunk to chunk (the Context's tensors are then views of them).
    """

    def __init__(self, lb: torch.Tensor, lt: torch.Tensor, tok: torch.Tensor, top_p: float,
                 dtype: torch.dtype | None = None, top_k: int = 0,
                 scratch: Scratch | None = None):
        dtype = dtype or torch.promote_types(lb.dtype, lt.dtype)
        self.lb, self.lt, self.scratch = lb, lt, scratch
        self.logp, self.p = _log_softmax_exp(lb, dtype, scratch, "b")
        self.logq, self.q = _log_softmax_exp(lt, dtype, scratch, "t")
        self.tok = tok
        self.top_p = top_p
        self.top_k = top_k

    def _buf(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        return _empty(self.scratch, name, self.p.shape, dtype or self.p.dtype, self.p.device)

    @cached_property
    def finite(self) -> bool:
        """No log-probability is -inf (no masked logits): the row-dot forms below need it
        (0 * -inf is nan); otherwise the where()-guarded forms run. Read off the logits (finite
        logits give finite log-probabilities), which are half the size on CPU."""
        return all(bool(torch.isfinite(t).all()) for x in (self.lb, self.lt)
                   for t in torch.aminmax(x))

    @cached_property
    def d(self) -> torch.Tensor:
        return torch.sub(self.logp, self.logq, out=self._buf("d"))

    @cached_property
    def kl_bt(self) -> torch.Tensor:
        if not self.finite:
            return _xlogy_diff(self.p, self.logp, self.logq)
        return _rowdot(self.p, self.d)

    @cached_property
    def kl_tb(self) -> torch.Tensor:
        if not self.finite:
            return _xlogy_diff(self.q, self.logq, self.logp)
        return -_rowdot(self.q, self.d)

    @cached_property
    def js(self) -> torch.Tensor:
        """JS = 1/2 [sum p (log p - log m) + sum q (log q - log m)], log m = log(p+q) - ln 2;
        with log q = log p - d the second sum is sum q (log p - log m) + kl_tb, so (sum p =
        sum q = 1) JS = 1/2 [sum (p+q)(log p - log(p+q)) + kl_tb] + ln 2: one log pass. The
        terms are at most ~1 in size, so the sum's rounding stays ~1e-15 absolute."""
        if not self.finite:
            return _js(self.p, self.logp, self.q, self.logq)
        s = torch.add(self.p, self.q, out=self._buf("s"))
        ls = _log(s, self._buf("ls"))
        torch.sub(self.logp, ls, out=ls)
        js = 0.5 * (_rowdot(s, ls) + self.kl_tb) + LN2
        return js.clamp(0.0, LN2)

    def entropy(self, which: str) -> torch.Tensor:
        p, logp = (self.p, self.logp) if which == "base" else (self.q, self.logq)
        if not self.finite:
            return _entropy(p, logp)
        return -_rowdot(p, logp)

    def rank(self, which: str, tok: torch.Tensor) -> torch.Tensor:
        """1 + number of tokens strictly more likely than `tok` under 'base' or 'tuned'."""
        x = self.lb if which == "base" else self.lt
        return _count_above(x, x.gather(-1, tok[:, None])[:, 0]) + 1

    def _top(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, probabilities) of the most likely tokens of one model, most likely first:
        enough for the stored top-k and the nucleus search."""
        key = "_top_" + which
        if key not in self.__dict__:
            x, p = (self.lb, self.p) if which == "base" else (self.lt, self.q)
            ids = x.topk(min(x.shape[-1], max(self.top_k, NUCLEUS_TOPK)), -1).indices
            self.__dict__[key] = (ids, p.gather(-1, ids))
        return self.__dict__[key]

    def topk(self, which: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, probs) of the k most likely tokens of 'base' or 'tuned', each (N, k)."""
        ids, probs = self._top(which)
        if ids.shape[1] < min(k, self.lb.shape[-1]):
            self.top_k = k
            del self.__dict__["_top_" + which]
            ids, probs = self._top(which)
        return ids[:, :k], probs[:, :k]

    @cached_property
    def js_top_p(self) -> torch.Tensor:
        v = self.p.shape[-1]
        top = (None, None) if v <= NUCLEUS_SORT_VOCAB else (self._top("base"), self._top("tuned"))
        return _js_top_p(self.p, self.logp, self.q, self.logq, self.top_p, *top,
                         finite=self.finite, scratch=self.scratch)


@dataclass(frozen=True)
class Metric:
    """A per-token metric and what every consumer needs to know about it.

    dtype: the Arrow/Parquet column type ("float32", "int32" or "bool").
    lo, hi: the range of its values (None = unbounded on that side).
    scale: how the app colours a trace by it: "sequential" (0 .. full_scale), "diverging"
        (-full_scale .. +full_scale), "categorical" (URIAL rank buckets) or None (not offered).
    sequential: how sequential scoring (core.engine.sequential) computes it: "exact",
        "approximate" (from the kept top-K base mass, within the recorded bound) or
        "top-k" (exact when the token is in the kept base top-K, else the sentinel K+1).
    """

    name: str
    fn: Callable[[Context], torch.Tensor]
    label: str
    dtype: str = "float32"
    lo: float | None = None
    hi: float | None = None
    scale: str | None = None
    full_scale: float | None = None
    sequential: str = "exact"
    unit: str = ""


METRICS: dict[str, Metric] = {}


def register(name: str, **meta):
    """Decorator: register `fn(ctx) -> (N,) tensor` as metric `name` with its metadata."""
    def deco(fn: Callable[[Context], torch.Tensor]):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, fn, **meta)
        return fn
    return deco


def metric_names(dtype: str | None = None) -> list[str]:
    """Registered metric names (of one dtype), in column order."""
    return [m.name for m in METRICS.values() if dtype is None or m.dtype == dtype]


JS_RANGE = dict(lo=0.0, hi=LN2, unit="nats")


@register("js", label="Jensen-Shannon divergence (js)", scale="sequential",
          full_scale=LN2 / 2, sequential="approximate", **JS_RANGE)
def _js_metric(c: Context) -> torch.Tensor:
    return c.js


@register("js_top_p", label="JS on top-p truncated distributions (js_top_p)",
          scale="sequential", full_scale=LN2 / 2, sequential="approximate", **JS_RANGE)
def _js_top_p_metric(c: Context) -> torch.Tensor:
    return c.js_top_p


@register("kl_tb", label="KL(tuned || base)", lo=0.0, unit="nats", sequential="approximate")
def _kl_tb(c: Context) -> torch.Tensor:
    return c.kl_tb


@register("kl_bt", label="KL(base || tuned)", lo=0.0, unit="nats", sequential="approximate")
def _kl_bt(c: Context) -> torch.Tensor:
    return c.kl_bt


@register("entropy_base", label="entropy of the base model (nats)", lo=0.0, unit="nats",
          scale="sequential", full_scale=2.0, sequential="approximate")
def _entropy_base(c: Context) -> torch.Tensor:
    return c.entropy("base")


@register("entropy_tuned", label="entropy of the tuned model (nats)", lo=0.0, unit="nats",
          scale="sequential", full_scale=2.0)
def _entropy_tuned(c: Context) -> torch.Tensor:
    return c.entropy("tuned")


@register("logp_base", label="log-probability of the token under the base model", hi=0.0,
          unit="nats")
def _logp_base(c: Context) -> torch.Tensor:
    return c.logp.gather(-1, c.tok[:, None]).squeeze(-1)


@register("logp_tuned", label="log-probability of the token under the tuned model", hi=0.0,
          unit="nats")
def _logp_tuned(c: Context) -> torch.Tensor:
    return c.logq.gather(-1, c.tok[:, None]).squeeze(-1)


@register("dlogp", label="dlogp = logp_tuned - logp_base", scale="diverging", full_scale=3.0,
          unit="nats")
def _dlogp(c: Context) -> torch.Tensor:
    return _logp_tuned(c) - _logp_base(c)


@register("rank_base", label="URIAL category from the base rank", dtype="int32", lo=1,
          scale="categorical", full_scale=1.0, sequential="top-k")
def _rank_base(c: Context) -> torch.Tensor:
    return c.rank("base", c.tok)


@register("rank_tuned", label="rank of the token under the tuned model", dtype="int32", lo=1)
def _rank_tuned(c: Context) -> torch.Tensor:
    return c.rank("tuned", c.tok)


@register("top1_agree", label="both models' most likely tokens agree", dtype="bool")
def _top1_agree(c: Context) -> torch.Tensor:
    return _argmax(c.lb) == _argmax(c.lt)


def compute_metrics(lb: torch.Tensor, lt: torch.Tensor, tok: torch.Tensor,
                    top_p: float = 0.7, names: list[str] | None = None,
                    ctx: Context | None = None) -> dict[str, torch.Tensor]:
    """Every registered metric (or `names`) for rows of base/tuned logits: {name: (N,)}.
    Pass `ctx` (a Context of the same rows) to reuse its log-probabilities."""
    ctx = ctx or Context(lb, lt, tok, top_p)
    return {n: METRICS[n].fn(ctx) for n in (names or METRICS)}


def topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, probs) of the k most likely tokens per row, each (N, k)."""
    probs, ids = F.softmax(logits.float(), -1).topk(min(k, logits.shape[-1]), -1)
    return ids, probs
