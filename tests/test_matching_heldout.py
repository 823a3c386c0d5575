"""The SFT match is chosen on one slice of problems and reported on another."""

from __future__ import annotations

import numpy as np
import pytest

from core.demo.matching import (
    choose_spec,
    held_out_spec,
    positions_spec,
    relative_difference_ci,
)

pytestmark = pytest.mark.unit


def test_choose_and_report_on_disjoint_problems():
    shipped = positions_spec(500, 0, "3,4")
    c, r = choose_spec(shipped), held_out_spec(shipped)
    assert (c["start"], c["count"]) == (200, 256)          # the choice: unchanged
    assert (r["start"], r["count"]) == (456, 44)           # reported on [456, 500)
    small = positions_spec(64, 0, "3,4")                   # nothing after the slice
    c, r = choose_spec(small), held_out_spec(small)
    assert (c["start"], c["count"]) == (0, 32) and (r["start"], r["count"]) == (32, 32)
    assert set(range(c["start"], c["start"] + c["count"])).isdisjoint(
        range(r["start"], r["start"] + r["count"]))


def test_relative_difference_interval_is_a_joint_bootstrap_over_problems():
    rng = np.random.default_rng(1)
    n = rng.integers(5, 30, 40).astype(float)
    ref = n * rng.uniform(0.01, 0.02, 40)
    this = ref * rng.uniform(0.85, 1.0, 40)
    point, lo, hi = relative_difference_ci((this, n), (ref, n), n_boot=300, seed=4)
    assert point == pytest.approx(this.sum() / ref.sum() - 1)
    r = np.random.default_rng(4)
    reps = []
    for _ in range(300):  # one problem draw per replicate, shared by both models
        i = r.integers(0, 40, 40)
        reps.append(this[i].sum() / ref[i].sum() - 1)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))
    assert lo < point < hi < 0
