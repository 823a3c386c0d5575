"""Tests and intervals for paired, discrete outcomes: two settings decoded on the same
prompts, each sample correct or not.

  mcnemar_exact     exact two-sided McNemar test: the discordant pairs (b: first right,
                    second wrong; c: the reverse) against Binomial(b + c, 1/2)
  tango_paired      Tango's (1998) score interval for a paired difference of proportions:
                    the inverted score test, so not degenerate with 0 discordant pairs
                    (the percentile bootstrap gives [0, 0] there)
  sign_flip         paired permutation test over prompts: the per-prompt differences'
                    signs flipped (exact enumeration up to EXACT_MAX non-zero differences,
                    else Monte Carlo with a fixed seed)
  holm              Holm's step-down adjustment of a family of p-values (a sweep's grid)

Pure functions on counts and arrays: no I/O, no pandas. Used by summary.py.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 0.975 quantile
EXACT_MAX = 16           # sign_flip enumerates all 2**m sign patterns up to this many
N_FLIPS = 20000          # Monte Carlo sign patterns beyond it


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (1.0 without any):
    2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1."""
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def tango_score(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic for H0: p1 - p2 = delta (b, c discordant pairs of n):
    (b - c - n delta) / sqrt(n (2 q + delta (1 - delta))), q the restricted maximum
    likelihood estimate of the (wrong, right) cell's probability under H0."""
    w = -b - c + (2 * n - b + c) * delta
    q = (-w + math.sqrt(max(0.0, w * w + 8 * n * c * delta * (1 - delta)))) / (4 * n)
    var = n * (2 * q + delta * (1 - delta))
    num = b - c - n * delta
    if var <= 0:
        return math.copysign(math.inf, num) if num else 0.0
    return num / math.sqrt(var)


def tango_paired(b: int, c: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(diff, lo, hi) of p1 - p2 = (b - c) / n for paired binary outcomes (b: first right
    and second wrong, c: the reverse, n pairs): Tango's score interval, the deltas whose
    score statistic stays within +-z (found by bisection; the statistic falls with delta).
    Not degenerate with 0 discordant pairs: b = c = 0 gives +-z^2 / (n + z^2)."""
    if n <= 0:
        return math.nan, math.nan, math.nan
    diff = (b - c) / n

    def root(target: float, lo: float, hi: float) -> float:
        for _ in range(100):  # tango_score(lo) >= target >= tango_score(hi)
            mid = (lo + hi) / 2
            if tango_score(b, c, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2
    eps = 1e-12
    lower = -1.0 if tango_score(b, c, n, -1 + eps) <= z else root(z, -1 + eps, diff)
    upper = 1.0 if tango_score(b, c, n, 1 - eps) >= -z else root(-z, diff, 1 - eps)
    return diff, lower, upper


def sign_flip(diffs: Sequence[float], seed: int = 0) -> float:
    """Two-sided paired permutation p-value of per-prompt differences: the share of sign
    patterns whose |sum| reaches the observed |sum| (zeros do not move it). Exact up to
    EXACT_MAX non-zero differences; beyond, N_FLIPS random patterns, (1 + hits) / (1 + N)."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[d != 0]
    m = d.size
    if m == 0:
        return 1.0
    obs = abs(d.sum()) - 1e-12 * max(1.0, float(np.abs(d).sum()))
    if m <= EXACT_MAX:
        signs = 1 - 2 * ((np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1)
        return float((np.abs(signs @ d) >= obs).mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(N_FLIPS, m))
    hits = int((np.abs(signs @ d) >= obs).sum())
    return (1 + hits) / (1 + N_FLIPS)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (NaN entries stay NaN and do not count
    in the family)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out.tolist()
