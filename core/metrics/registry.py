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

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch
import torch.nn.functional as F

from core.metrics import exact as X
from core.metrics.kernels import (
    LN2,
    Scratch,
    _argmax,
    _count_above,
    _empty,
    _entropy,
    _js,
    _log,
    _log_softmax_exp,
    _rowdot,
    _xlogy_diff,
)
from core.metrics.nucleus import (
    NUCLEUS_SORT_VOCAB,
    NUCLEUS_TOPK,
    _js_top_p,
)


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
        # float64 math: the original formulas (exact there); any other dtype: core/metrics/
        # exact.py's, which do not cancel (row scalars in float64).
        self.exact = dtype != torch.float64
        if self.exact:
            self.logp, self.p = (_empty(scratch, n + "b", lb.shape, dtype, lb.device)
                                 for n in ("logp", "p"))
            self.logq, self.q = (_empty(scratch, n + "t", lt.shape, dtype, lt.device)
                                 for n in ("logp", "p"))
            self.lse_b = X.log_softmax_exp(lb, dtype, self.logp, self.p)
            self.lse_t = X.log_softmax_exp(lt, dtype, self.logq, self.q)
        else:
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
    def _kl_exact(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(kl_bt, kl_tb, lse_t - lse_b) by core/metrics/exact.py (float32 math)."""
        a, b = self.lb.to(self.p.dtype), self.lt.to(self.p.dtype)
        kl_bt, shift = X.kl_exact(self.p, a, b, self.lse_b, self.lse_t, self.q)
        kl_tb, _ = X.kl_exact(self.q, b, a, self.lse_t, self.lse_b, self.p)
        shift = torch.where(torch.isnan(shift), self.lse_t - self.lse_b, shift)
        return kl_bt, kl_tb, shift

    @cached_property
    def kl_bt(self) -> torch.Tensor:
        if self.exact:
            return self._kl_exact[0]
        if not self.finite:
            return _xlogy_diff(self.p, self.logp, self.logq)
        return _rowdot(self.p, self.d)

    @cached_property
    def kl_tb(self) -> torch.Tensor:
        if self.exact:
            return self._kl_exact[1]
        if not self.finite:
            return _xlogy_diff(self.q, self.logq, self.logp)
        return -_rowdot(self.q, self.d)

    @cached_property
    def js(self) -> torch.Tensor:
        """JS = 1/2 [sum p (log p - log m) + sum q (log q - log m)], log m = log(p+q) - ln 2;
        with log q = log p - d the second sum is sum q (log p - log m) + kl_tb, so (sum p =
        sum q = 1) JS = 1/2 [sum (p+q)(log p - log(p+q)) + kl_tb] + ln 2: one log pass. The
        terms are at most ~1 in size, so the sum's rounding stays ~1e-15 absolute (float64;
        other math dtypes: the non-negative terms of core/metrics/exact.py)."""
        if self.exact:
            return X.js_logprobs(self.p, self.logp, self.q, self.logq)
        if not self.finite:
            return _js(self.p, self.logp, self.q, self.logq)
        s = torch.add(self.p, self.q, out=self._buf("s"))
        ls = _log(s, self._buf("ls"))
        torch.sub(self.logp, ls, out=ls)
        js = 0.5 * (_rowdot(s, ls) + self.kl_tb) + LN2
        return js.clamp(0.0, LN2)

    def entropy(self, which: str) -> torch.Tensor:
        p, logp = (self.p, self.logp) if which == "base" else (self.q, self.logq)
        if self.exact:
            return X.entropy(p, logp)
        if not self.finite:
            return _entropy(p, logp)
        return -_rowdot(p, logp)

    def logp_at(self, which: str, tok: torch.Tensor) -> torch.Tensor:
        """log-probability of `tok` (N,) under 'base' or 'tuned': float64 from the logit and
        the float64 log-sum-exp in exact (non-float64) math, the gathered log-prob otherwise."""
        if not self.exact:
            return (self.logp if which == "base" else self.logq).gather(-1, tok[:, None])[:, 0]
        x, lse = (self.lb, self.lse_b) if which == "base" else (self.lt, self.lse_t)
        return x.gather(-1, tok[:, None])[:, 0].to(X.F64) - lse

    def dlogp_at(self, tok: torch.Tensor) -> torch.Tensor:
        """logp_tuned - logp_base of `tok`; in exact math from the logit difference and
        lse_t - lse_b found without cancellation (core/metrics/exact.py)."""
        if not self.exact:
            return self.logp_at("tuned", tok) - self.logp_at("base", tok)
        g = [x.gather(-1, tok[:, None])[:, 0].to(X.F64) for x in (self.lt, self.lb)]
        return (g[0] - g[1]) - self._kl_exact[2]

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

    def js_at(self, top_p: float) -> torch.Tensor:
        """JS between the top-p truncated, renormalised distributions (core/metrics/nucleus.py's
        rule), once per nucleus: the run's `js_top_p` and the fixed TRUNCATED_JS nuclei share
        the top-k lists and the work buffers, and a repeated nucleus is computed once."""
        done = self.__dict__.setdefault("_js_at", {})
        key = float(top_p)
        if key not in done:
            v = self.p.shape[-1]
            top = ((None, None) if v <= NUCLEUS_SORT_VOCAB
                   else (self._top("base"), self._top("tuned")))
            done[key] = _js_top_p(self.p, self.logp, self.q, self.logq, key, *top,
                                  finite=self.finite, scratch=self.scratch)
        return done[key]

    @property
    def js_top_p(self) -> torch.Tensor:
        return self.js_at(self.top_p)


@dataclass(frozen=True)
class Metric:
    """A per-token metric and what every consumer needs to know about it.

    dtype: the Arrow/Parquet column type ("float32", "int32" or "bool").
    lo, hi: the range of its values (None = unbounded on that side).
    scale: how the app colours a trace by it: "sequential" (lo .. lo + full_scale),
        "descending" (hi down to hi - full_scale: log-probabilities, coloured by how far
        below 0), "diverging" (-full_scale .. +full_scale), "categorical" (URIAL rank
        buckets), "flag" (a bool, highlighted where false) or None (core.figures.colours
        derives one from dtype, lo and hi: every registered metric can colour a trace).
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


# Truncated JS at fixed nuclei beside the run's own (`js_top_p`, the config's js_top_p): the
# paper's truncation rule is not written down, so how much the answer moves with the nucleus
# is stored with every run (docs/paper.md, "Truncated JS"). Runs written before these columns
# existed lack them: the trace view offers the metrics a trace stores
# (core.figures.trace.metric_choices).
TRUNCATED_JS = {"js_top_p90": 0.9, "js_top_p95": 0.95}

for _name, _top_p in TRUNCATED_JS.items():
    register(_name, label=f"JS on top-p {_top_p:g} truncated distributions ({_name})",
             scale="sequential", full_scale=LN2 / 2, sequential="approximate", **JS_RANGE)(
        lambda c, _top_p=_top_p: c.js_at(_top_p))


@register("kl_tb", label="KL(tuned || base)", lo=0.0, unit="nats", sequential="approximate",
          scale="sequential", full_scale=1.0)
def _kl_tb(c: Context) -> torch.Tensor:
    return c.kl_tb


@register("kl_bt", label="KL(base || tuned)", lo=0.0, unit="nats", sequential="approximate",
          scale="sequential", full_scale=1.0)
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
          unit="nats", scale="descending", full_scale=5.0)
def _logp_base(c: Context) -> torch.Tensor:
    return c.logp_at("base", c.tok)


@register("logp_tuned", label="log-probability of the token under the tuned model", hi=0.0,
          unit="nats", scale="descending", full_scale=5.0)
def _logp_tuned(c: Context) -> torch.Tensor:
    return c.logp_at("tuned", c.tok)


@register("dlogp", label="dlogp = logp_tuned - logp_base", scale="diverging", full_scale=3.0,
          unit="nats")
def _dlogp(c: Context) -> torch.Tensor:
    return c.dlogp_at(c.tok)


@register("rank_base", label="URIAL category from the base rank", dtype="int32", lo=1,
          scale="categorical", full_scale=1.0, sequential="top-k")
def _rank_base(c: Context) -> torch.Tensor:
    return c.rank("base", c.tok)


@register("rank_tuned", label="rank of the token under the tuned model", dtype="int32", lo=1,
          scale="categorical", full_scale=1.0)
def _rank_tuned(c: Context) -> torch.Tensor:
    return c.rank("tuned", c.tok)


@register("top1_agree", label="both models' most likely tokens agree", dtype="bool",
          scale="flag", full_scale=1.0)
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
