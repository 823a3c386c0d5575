"""Sequential scoring: score a pair that does not fit in memory together, one model at a time.

Pass 1 loads the base model alone and keeps, per response position, its top-K token ids and
log-probabilities, the log-normaliser of the logits, the log of the tail mass
a = 1 - sum(top-K probs) (computed directly as a masked logsumexp, not by subtraction) and the
log-probability of the trace token. The base model is then freed. Pass 2 loads the tuned model
and, with the full tuned distribution Q in hand (one batch of logits at a time), combines it
with the kept base data.

Approximation (the "proportional tail"). Let S be the kept base support (its top-K). Base
probabilities p_v are known exactly for v in S; outside S only their sum a is known. The
implied base distribution is

    P^_v = p_v                      for v in S
    P^_v = a * q_v / b              for v not in S,   b = sum_{v not in S} q_v

(uniform over the complement if b underflows to 0). Every metric is computed on (P^, Q).

Bound on the JS error (proved here). Write JS(P, Q) = sum_v f(p_v, q_v) with
f(p, q) = 1/2 [p ln(2p/(p+q)) + q ln(2q/(p+q))]. Terms on S are exact in both. For the rest
R = sum_{v not in S} f(p_v, q_v):
  * f is jointly convex and positively homogeneous of degree 1, hence subadditive, so
    R >= f(a, b); and by homogeneity the proportional tail gives exactly
    sum_{v not in S} f(a q_v / b, q_v) = f(a, b). So JS_approx = exact part + f(a, b) <= JS.
  * d f / d p = 1/2 ln(2p/(p+q)) <= 1/2 ln 2, and f(0, q) = q ln2 / 2, so
    f(p, q) <= (p + q) ln2 / 2 and R <= (a + b) ln2 / 2.
Hence, in exact arithmetic,

    0 <= JS_exact - JS_approx <= (a + b) ln2 / 2 - f(a, b)
                               = 1/2 [a ln(1 + b/a) + b ln(1 + a/b)]        (= js_bound)

(terms with a zero mass are 0). The bound is increasing in a and b (d/da = 1/2 ln(1 + b/a)
>= 0, symmetric in b), and a, b only shrink as K grows, so the bound is non-increasing in K;
it is 0 when K = vocabulary size. It is also <= a/2 (1 + ln(1 + 1/a)) since b <= 1, so it
goes to 0 with the base tail mass a whatever Q does. Floating-point rounding (~1e-7 in
float32 on GPU, ~1e-15 in float64 on CPU) comes on top.

Columns in sequential mode (schema of core.engine.scoring.score_traces plus `js_bound`):
  exact: token_id, offsets, logp_base (kept), logp_tuned, entropy_tuned, rank_tuned, dlogp,
         tuned_topk_*, base_topk_* (the kept support holds max(k, settings.top_k) tokens),
         top1_agree (the base argmax is in the kept support);
  exact when the token is in the base top-K, else the sentinel K+1 meaning "> K":
         rank_base, tuned_top1_rank_base;
  approximate (computed on P^): js (within js_bound, never above the exact value), js_top_p,
         kl_tb, kl_bt, entropy_base, tuned_top1_prob_base (exact when the tuned argmax is in S).
`bound_summary(cols)` gives the max/mean bound for the run manifest.
"""

from __future__ import annotations

import gc
import math
from typing import Callable

import numpy as np
import torch

from core.engine.batching import Columns, padded_batches, row_offsets, token_ids
from core.engine.heads import ResponseLogits, chunked, math_dtype
from core.engine.scoring import (
    ScoreSettings,
    _resolve_batch_size,
    batch_blocks,
    plan,
    vocab_size,
)
from core.metrics import METRICS, compute_metrics, topk

# Columns that sequential mode computes from the kept mass rather than exactly (recorded in
# the run manifest so readers know which numbers carry the bound).
APPROXIMATE_COLUMNS = tuple(m.name for m in METRICS.values() if m.sequential == "approximate"
                            ) + ("tuned_top1_prob_base",)


def js_tail_bound(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """1/2 [a ln(1 + b/a) + b ln(1 + a/b)] from log tail masses (see module docstring)."""
    a, b = log_a.exp(), log_b.exp()
    t1 = torch.where(a > 0, a * torch.log1p(torch.exp(log_b - log_a)), torch.zeros_like(a))
    t2 = torch.where(b > 0, b * torch.log1p(torch.exp(log_a - log_b)), torch.zeros_like(b))
    return (0.5 * (t1 + t2)).clamp(0.0, math.log(2.0))


def _release() -> None:
    """Collect the dropped model and return cached GPU memory (call after dropping refs)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _batches(traces, pad_id, settings, model, offsets):
    """(batches, memory budget in bytes) for scoring `traces` with `model` alone; each
    batch's chunk and block rows come from batch_blocks once its logits are built."""
    lengths = [len(p) + len(r) for p, r in traces]
    budget, _, _, max_tokens = plan(settings, model, vocab_size(model), models=1)
    return padded_batches(traces, pad_id, _resolve_batch_size(settings, model, lengths),
                          offsets, max_tokens), budget


def _mdtype(device: torch.device, setting: str = "auto") -> torch.dtype:
    return math_dtype(device, setting)


def score_traces_sequential(load_base: Callable[[], torch.nn.Module],
                            load_tuned: Callable[[], torch.nn.Module],
                            traces: list[tuple[list[int], list[int]]], pad_id: int,
                            settings: ScoreSettings = ScoreSettings(), k: int = 64,
                            progress=None) -> dict:
    """Score `traces` with only one model resident at a time (see module docstring).

    `load_base` / `load_tuned` return a ready model (on its device, eval mode); each is called
    once and its model released before the next. `k` is the kept base support size (at least
    settings.top_k is kept). Returns the columns of core.engine.scoring.score_traces plus `js_bound`
    (T,) and `base_log_tail` (T,), the log of the base tail mass outside the kept support
    (and `memory_budget`: the larger of the two passes' budgets).
    """
    offsets = row_offsets(traces)
    cols = Columns(int(offsets[-1]), float32=False)
    put = cols.put

    # --- pass 1: base alone ---
    model = load_base()
    kk = None
    batches, budget = _batches(traces, pad_id, settings, model, offsets)
    vocab = vocab_size(model)
    for ids, attn, spans, tok, rows in batches:
        lb = ResponseLogits(model, ids, attn, spans, settings.segment_tokens)
        step, block = batch_blocks(settings, model, [lb], budget)
        tok = tok.to(lb.device)
        kk = min(max(k, settings.top_k), vocab)
        for sl, (cb,) in chunked([lb], step, block):
            cb = cb.to(_mdtype(lb.device, settings.math_dtype))
            lse = torch.logsumexp(cb, -1)
            logp = cb - lse[:, None]
            vals, top = logp.topk(kk, -1)
            log_tail = torch.logsumexp(logp.scatter(-1, top, float("-inf")), -1)
            put("_k_ids", rows[sl], top)
            put("_k_logp", rows[sl], vals.double())
            put("base_log_tail", rows[sl], log_tail.double())
            put("logp_base", rows[sl], logp.gather(-1, tok[sl, None]).squeeze(-1).double())
        if progress is not None:
            progress(len(tok))
        del lb
    model = None
    _release()

    # --- pass 2: tuned alone, with the kept base data ---
    model = load_tuned()
    batches, budget_t = _batches(traces, pad_id, settings, model, offsets)
    for ids, attn, spans, tok, rows in batches:
        lt = ResponseLogits(model, ids, attn, spans, settings.segment_tokens)
        step, block = batch_blocks(settings, model, [lt], budget_t)
        dev, md = lt.device, _mdtype(lt.device, settings.math_dtype)
        tok = tok.to(dev)
        for sl, (ct,) in chunked([lt], step, block):
            r = rows[sl]
            ct = ct.to(md)
            n, v = ct.shape
            s_ids = torch.from_numpy(cols["_k_ids"][r]).to(dev)
            s_logp = torch.from_numpy(cols["_k_logp"][r]).to(dev, md)
            log_a = torch.from_numpy(cols["base_log_tail"][r]).to(dev, md)
            logq = torch.log_softmax(ct, -1)
            in_s = torch.zeros((n, v), dtype=torch.bool, device=dev).scatter(-1, s_ids, True)
            log_b = torch.logsumexp(logq.masked_fill(in_s, float("-inf")), -1)
            n_off = v - s_ids.shape[1]
            if n_off > 0:
                uniform = (log_a - math.log(n_off))[:, None].expand(n, v)
                prop = logq + torch.nan_to_num(log_a - log_b, neginf=float("-inf"))[:, None]
                off = torch.where(torch.isfinite(log_b)[:, None], prop, uniform)
            else:
                off = torch.full_like(logq, float("-inf"))
            logp_hat = off.scatter(-1, s_ids, s_logp)
            m = compute_metrics(logp_hat, ct, tok[sl], settings.js_top_p)
            m["logp_base"] = torch.from_numpy(cols["logp_base"][r]).to(dev, md)
            m["dlogp"] = m["logp_tuned"] - m["logp_base"]
            sentinel = s_ids.shape[1] + 1
            own = m["logp_base"]
            m["rank_base"] = torch.where(own >= s_logp[:, -1], (s_logp > own[:, None]).sum(-1) + 1,
                                         torch.full_like(m["rank_base"], sentinel))
            m["top1_agree"] = s_ids[:, 0] == logq.argmax(-1)
            m["js_bound"] = js_tail_bound(log_a, log_b)
            for name, val in m.items():
                if name == "logp_base":
                    continue  # already stored exactly in float64
                put(name, r, val.float() if val.is_floating_point() else val)
            t_ids, t_probs = topk(ct, settings.top_k)
            put("tuned_topk_ids", r, t_ids)
            put("tuned_topk_probs", r, t_probs)
            kt = min(settings.top_k, s_ids.shape[1])
            put("base_topk_ids", r, s_ids[:, :kt])
            put("base_topk_probs", r, s_logp[:, :kt].exp().float())
            t1 = t_ids[:, :1]
            hit = s_ids == t1
            in_top = hit.any(-1)
            t1_lp_base = logp_hat.gather(-1, t1).squeeze(-1)
            put("tuned_top1_rank_base", r, torch.where(
                in_top, (s_logp > t1_lp_base[:, None]).sum(-1) + 1,
                torch.full_like(in_top, sentinel, dtype=torch.long)))
            put("tuned_top1_prob_base", r, t1_lp_base.exp().float())
        if progress is not None:
            progress(len(tok))
        del lt
    model = None
    _release()

    cols["logp_base"] = cols["logp_base"].astype(np.float32)
    for name in ("_k_ids", "_k_logp"):
        cols.pop(name, None)
    cols["token_id"] = token_ids(traces)
    cols["offsets"] = offsets
    cols["base_log_tail"] = cols.get("base_log_tail", np.zeros(0)).astype(np.float64)
    return {**dict(cols), "memory_budget": max(budget, budget_t)}


def bound_summary(cols: dict) -> dict:
    """What the run manifest records about sequential mode's JS truncation error."""
    b = cols.get("js_bound", np.zeros(0))
    return {"mode": "sequential", "js_bound_max": float(b.max()) if len(b) else 0.0,
            "js_bound_mean": float(b.mean()) if len(b) else 0.0,
            "js_approximation": "proportional tail; 0 <= js_exact - js <= js_bound"}
