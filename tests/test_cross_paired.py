"""Paired tests and intervals of cross-sampling summaries on hand-counted tables."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from core.experiments.cross_sampling import paired
from core.experiments.cross_sampling.summary import summarize

pytestmark = pytest.mark.unit
Z2 = paired.Z95 ** 2


def test_mcnemar_exact_hand_counts():
    assert paired.mcnemar_exact(0, 0) == 1.0
    assert paired.mcnemar_exact(1, 0) == 1.0                # 2 * P(X <= 0 | n=1) = 1
    assert paired.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    # 10 vs 2 discordant: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12 = 2 * 79 / 4096
    assert paired.mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert paired.mcnemar_exact(2, 10) == paired.mcnemar_exact(10, 2)


def test_tango_never_degenerate():
    # no discordant pair among 10: closed form +-z^2 / (n + z^2), not [0, 0]
    d, lo, hi = paired.tango_paired(0, 0, 10)
    assert d == 0 and hi == pytest.approx(Z2 / (10 + Z2), abs=1e-9)
    assert lo == pytest.approx(-Z2 / (10 + Z2), abs=1e-9)
    # 2 discordant one way among 30 pairs: an interval around 2/30 that includes 0
    d, lo, hi = paired.tango_paired(2, 0, 30)
    assert d == pytest.approx(2 / 30) and lo < 0 < d < hi


def _score_by_grid(b, c, n, delta):
    """Tango's statistic with the restricted MLE found by a grid over the cell's
    probability (no closed form): an independent check of the quadratic's root."""
    qs = np.linspace(max(0.0, -delta), (1 - delta) / 2, 200001)[1:-1]
    qs = qs[(qs + delta > 0) & (1 - 2 * qs - delta > 0)]
    ll = (b * np.log(qs + delta) + (c * np.log(qs) if c else 0)
          + (n - b - c) * np.log(1 - 2 * qs - delta))
    q = qs[np.argmax(ll)]
    return (b - c - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))


@pytest.mark.parametrize("b,c,n", [(9, 2, 44), (3, 1, 20)])
def test_tango_limits_are_score_roots(b, c, n):
    _, lo, hi = paired.tango_paired(b, c, n)
    assert _score_by_grid(b, c, n, lo) == pytest.approx(paired.Z95, abs=2e-3)
    assert _score_by_grid(b, c, n, hi) == pytest.approx(-paired.Z95, abs=2e-3)


def test_sign_flip_exact_and_holm():
    # 4 prompts all +1: of 16 sign patterns only the two extremes reach |sum| = 4
    assert paired.sign_flip([1, 1, 1, 1, 0, 0]) == pytest.approx(2 / 16)
    d = [0.5, 0.25, -0.25, 1.0, 0.5]
    exact = np.mean([abs(np.dot(s, d)) >= abs(sum(d)) - 1e-12
                     for s in itertools.product([-1, 1], repeat=5)])
    assert paired.sign_flip(d) == pytest.approx(exact)
    # Holm: sorted 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04; NaN left out of the family
    assert paired.holm([0.04, 0.01, math.nan, 0.02]) == pytest.approx(
        [0.04, 0.03, math.nan, 0.04], nan_ok=True)


def _rows(table: dict[str, list[int]], eps=0.1) -> pd.DataFrame:
    """One sample per prompt: correct per prompt for each setting."""
    out = []
    keys = {"base": ("base", math.inf, ""), "tuned": ("tuned", math.inf, ""),
            "forward": ("forward", eps, ""), "random": ("forward", eps, "random")}
    for name, correct in table.items():
        d, e, kind = keys[name]
        for i, c in enumerate(correct):
            out.append({"prompt_id": f"p{i}", "sample_index": 0, "direction": d, "eps": e,
                        "control": bool(kind), "control_kind": kind, "correct": bool(c),
                        "n_tokens": 10, "n_switched": 1, "n_changed": 1, "n_requested": 1,
                        "budget": 0.1})
    return pd.DataFrame(out)


def test_summary_on_a_hand_counted_table():
    # 10 prompts. forward vs random: forward-only right on p0..p3, random-only on p9:
    # b = 4, c = 1 -> McNemar 2 * (1 + 5) / 32 = 0.375
    table = {"base":    [0, 0, 0, 0, 0, 1, 1, 0, 0, 0],
             "tuned":   [1, 1, 1, 1, 0, 1, 1, 1, 0, 0],
             "forward": [1, 1, 1, 1, 0, 1, 1, 0, 0, 0],
             "random":  [0, 0, 0, 0, 0, 1, 1, 0, 0, 1]}
    s = summarize(_rows(table), n_boot=200, seed=1).set_index(["direction", "control_kind"])
    ctl = s.loc[("forward", "random")]
    assert ctl.test == "mcnemar exact"
    assert (ctl.n_ref_only, ctl.n_other_only) == (4, 1)
    assert ctl.p_value == pytest.approx(12 / 32)
    assert ctl["diff"] == pytest.approx(0.3)
    _, lo, hi = paired.tango_paired(4, 1, 10)
    assert (ctl.diff_lo, ctl.diff_hi) == pytest.approx((lo, hi))
    fwd = s.loc[("forward", "")]
    # forward vs base: 4 right only with forward, 0 only with base -> 2 / 16
    assert (fwd.n_ref_only, fwd.n_other_only) == (4, 0)
    assert fwd.p_value == pytest.approx(2 / 16)
    # gap: base 2/10, tuned 7/10, forward 6/10 -> recovers (0.6 - 0.2) / 0.5 = 80%
    assert fwd.gap_moved == pytest.approx(0.8)
    assert fwd.gap_moved_lo < 0.8 < fwd.gap_moved_hi
    # Holm over the two p-values: 0.125 -> 0.25, 0.375 stays 0.375
    assert fwd.p_holm == pytest.approx(0.25) and ctl.p_holm == pytest.approx(0.375)


def test_no_discordant_prompt_is_not_a_point_interval():
    same = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0]
    s = summarize(_rows({"base": same, "tuned": same, "forward": same, "random": same}),
                  n_boot=200, seed=1)
    ctl = s[s.control_kind == "random"].iloc[0]
    assert ctl["diff"] == 0 and ctl.p_value == 1.0
    assert ctl.diff_lo < 0 < ctl.diff_hi
    assert math.isnan(s[s.direction == "forward"].gap_moved.iloc[0])  # no gap: no share
