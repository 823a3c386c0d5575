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
from typing import Callable

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


def top_p_logprobs(logp: torch.Tensor, top_p: float) -> torch.Tensor:
    """Log-probs of the top-p (nucleus) truncated, renormalised distribution; -inf outside.

    The nucleus is the smallest set of most likely tokens whose mass reaches `top_p`
    (the most likely token is always kept), as in nucleus sampling.
    """
    sorted_lp, idx = logp.sort(-1, descending=True)
    cum = sorted_lp.exp().cumsum(-1)
    keep_sorted = (cum - sorted_lp.exp()) < top_p  # mass before this token is below top_p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)
    masked = logp.masked_fill(~keep, float("-inf"))
    return masked - torch.logsumexp(masked, -1, keepdim=True)


def _nucleus_in_topk(logp: torch.Tensor, top_p: float, k0: int = 256):
    """(ids (N, k), truncated log-probs (N, k), -inf outside the nucleus) when every row's
    nucleus lies within its top k (k grown from k0 by 4x as needed), else None (the nucleus
    needs most of the vocabulary: use the dense path). Same rule as top_p_logprobs."""
    v = logp.shape[-1]
    if v <= 4 * k0:  # a small vocabulary: the dense sort is as cheap
        return None
    k = k0
    while True:
        vals, ids = logp.topk(k, -1)  # sorted, most likely first
        pk = vals.exp()
        cum = pk.cumsum(-1)
        mass = float(cum[:, -1].min())
        if mass >= top_p:  # the (k+1)-th token is out in every row
            break
        # The rest is at most as likely as the k-th token: grow k at least to where a flat
        # tail would reach top_p; a nucleus of half the vocabulary is cheaper sorted.
        k = max(4 * k, int(k * top_p / max(mass, 1e-12) * 1.25))
        if k >= v // 2:
            return None
    keep = (cum - pk) < top_p
    keep[..., 0] = True
    masked = vals.masked_fill(~keep, float("-inf"))
    return ids, masked - torch.logsumexp(masked, -1, keepdim=True)


def js_top_p(logp: torch.Tensor, logq: torch.Tensor, top_p: float) -> torch.Tensor:
    """JS between the top-p truncated, renormalised distributions, (N, V) -> (N,); equal to
    js_from_logprobs(top_p_logprobs(logp), top_p_logprobs(logq)). When both nuclei are small
    it is summed over their union only (no sort of the vocabulary)."""
    a, b = _nucleus_in_topk(logp, top_p), _nucleus_in_topk(logq, top_p)
    if a is None or b is None:
        return js_from_logprobs(top_p_logprobs(logp, top_p), top_p_logprobs(logq, top_p))
    (ia, la), (ib, lb) = a, b
    n, v = logp.shape
    inf = torch.full((n, v), float("-inf"), dtype=logp.dtype, device=logp.device)
    tp = inf.scatter(-1, ia, la)   # truncated log P, dense (-inf outside its nucleus)
    tq = inf.scatter(-1, ib, lb)
    cols = torch.cat([ia, ib], -1)  # every column of either support, some twice
    in_a = torch.zeros((n, v), dtype=torch.bool, device=logp.device).scatter(-1, ia, True)
    dup = torch.cat([torch.zeros_like(ia, dtype=torch.bool), in_a.gather(-1, ib)], -1)
    lp_c, lq_c = tp.gather(-1, cols), tq.gather(-1, cols)
    lp_c = lp_c.masked_fill(dup, float("-inf"))  # count each column once
    lq_c = lq_c.masked_fill(dup, float("-inf"))
    return _js(lp_c.exp(), lp_c, lq_c.exp(), lq_c)


def rank_of(logp: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """1 + number of tokens strictly more likely than `tok` (1 = argmax)."""
    own = logp.gather(-1, tok[:, None])
    return (logp > own).sum(-1) + 1


# --- The registry: name -> Metric (function + metadata), in the column order of tokens. ---

class Context:
    """Log-probabilities computed once per chunk and shared by every metric."""

    def __init__(self, lb: torch.Tensor, lt: torch.Tensor, tok: torch.Tensor, top_p: float):
        self.logp = F.log_softmax(lb, -1)
        self.logq = F.log_softmax(lt, -1)
        self.p, self.q = self.logp.exp(), self.logq.exp()
        self.tok = tok
        self.top_p = top_p


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
    return _js(c.p, c.logp, c.q, c.logq)


@register("js_top_p", label="JS on top-p truncated distributions (js_top_p)",
          scale="sequential", full_scale=LN2 / 2, sequential="approximate", **JS_RANGE)
def _js_top_p(c: Context) -> torch.Tensor:
    return js_top_p(c.logp, c.logq, c.top_p)


@register("kl_tb", label="KL(tuned || base)", lo=0.0, unit="nats", sequential="approximate")
def _kl_tb(c: Context) -> torch.Tensor:
    return _xlogy_diff(c.q, c.logq, c.logp)


@register("kl_bt", label="KL(base || tuned)", lo=0.0, unit="nats", sequential="approximate")
def _kl_bt(c: Context) -> torch.Tensor:
    return _xlogy_diff(c.p, c.logp, c.logq)


@register("entropy_base", label="entropy of the base model (nats)", lo=0.0, unit="nats",
          scale="sequential", full_scale=2.0, sequential="approximate")
def _entropy_base(c: Context) -> torch.Tensor:
    return _entropy(c.p, c.logp)


@register("entropy_tuned", label="entropy of the tuned model (nats)", lo=0.0, unit="nats",
          scale="sequential", full_scale=2.0)
def _entropy_tuned(c: Context) -> torch.Tensor:
    return _entropy(c.q, c.logq)


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
    return rank_of(c.logp, c.tok)


@register("rank_tuned", label="rank of the token under the tuned model", dtype="int32", lo=1)
def _rank_tuned(c: Context) -> torch.Tensor:
    return rank_of(c.logq, c.tok)


@register("top1_agree", label="both models' most likely tokens agree", dtype="bool")
def _top1_agree(c: Context) -> torch.Tensor:
    return c.logp.argmax(-1) == c.logq.argmax(-1)


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
