"""The numeric building blocks of the metrics (core/metrics/registry.py) and the nucleus
search (core/metrics/nucleus.py): KL, JS and entropy from (log-)probabilities, CPU fast paths
through numpy, reused work buffers, and a log-softmax with one exp per entry. Tensors only;
no registry."""
from __future__ import annotations

import math

import numpy as np
import torch

from core.metrics.exact import js_logprobs

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
    (p + q >= max(p, q), so it never underflows where a term counts). Below float64 the sum
    below cancels: core/metrics/exact.py's non-negative terms are used instead."""
    if p.dtype != torch.float64:
        return js_logprobs(p, logp, q, logq).to(p.dtype)
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


def _unary(np_fn, torch_fn, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    a, o = _host(x), _host(out)
    if a is not None and o is not None:
        np_fn(a, out=o)
        return out
    return torch_fn(x, out=out)


def _exp(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return _unary(np.exp, torch.exp, x, out)


def _log(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return _unary(np.log, torch.log, x, out)


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
