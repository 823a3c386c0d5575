"""Per-token metrics between two next-token distributions: pure functions on tensors.

Every function takes the base logits `lb` and tuned logits `lt`, each (N, V) float tensors
(rows are positions), plus the trace tokens `tok` (N,) where needed, and returns an (N,)
tensor. Names are the column names of ../shared/paper.md. A new metric is one function
and one entry in `METRICS`.

P = softmax(lb) is the base distribution, Q = softmax(lt) the tuned one. Natural logs, nats.
"""

from __future__ import annotations

import math
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


def js_from_logprobs(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence in nats, 0..ln 2, (N, V) -> (N,)."""
    logm = torch.logaddexp(logp, logq) - LN2
    js = 0.5 * kl_from_logprobs(logp, logm) + 0.5 * kl_from_logprobs(logq, logm)
    return js.clamp(0.0, LN2)  # rounding can step a hair outside the exact range


def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros((), dtype=p.dtype, device=p.device)).sum(-1)


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


def rank_of(logp: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """1 + number of tokens strictly more likely than `tok` (1 = argmax)."""
    own = logp.gather(-1, tok[:, None])
    return (logp > own).sum(-1) + 1


# --- The registry: name -> f(ctx) where ctx holds the shared intermediate tensors. ---

class Context:
    """Log-probabilities computed once per chunk and shared by every metric."""

    def __init__(self, lb: torch.Tensor, lt: torch.Tensor, tok: torch.Tensor, top_p: float):
        self.logp = F.log_softmax(lb, -1)
        self.logq = F.log_softmax(lt, -1)
        self.tok = tok
        self.top_p = top_p


METRICS: dict[str, Callable[[Context], torch.Tensor]] = {
    "js": lambda c: js_from_logprobs(c.logp, c.logq),
    "js_top_p": lambda c: js_from_logprobs(top_p_logprobs(c.logp, c.top_p),
                                           top_p_logprobs(c.logq, c.top_p)),
    "kl_tb": lambda c: kl_from_logprobs(c.logq, c.logp),
    "kl_bt": lambda c: kl_from_logprobs(c.logp, c.logq),
    "entropy_base": lambda c: entropy_from_logprobs(c.logp),
    "entropy_tuned": lambda c: entropy_from_logprobs(c.logq),
    "logp_base": lambda c: c.logp.gather(-1, c.tok[:, None]).squeeze(-1),
    "logp_tuned": lambda c: c.logq.gather(-1, c.tok[:, None]).squeeze(-1),
    "rank_base": lambda c: rank_of(c.logp, c.tok),
    "rank_tuned": lambda c: rank_of(c.logq, c.tok),
    "top1_agree": lambda c: c.logp.argmax(-1) == c.logq.argmax(-1),
}


def compute_metrics(lb: torch.Tensor, lt: torch.Tensor, tok: torch.Tensor,
                    top_p: float = 0.7, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Every registered metric (or `names`) for rows of base/tuned logits; adds `dlogp`."""
    ctx = Context(lb, lt, tok, top_p)
    out = {n: METRICS[n](ctx) for n in (names or METRICS)}
    if "logp_base" in out and "logp_tuned" in out:
        out["dlogp"] = out["logp_tuned"] - out["logp_base"]
    return out


def topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, probs) of the k most likely tokens per row, each (N, k)."""
    probs, ids = F.softmax(logits.float(), -1).topk(min(k, logits.shape[-1]), -1)
    return ids, probs
