"""Budget to eps on ties: a run whose js_top_p is exactly 0 on 97% of its tokens."""

from __future__ import annotations

import numpy as np
import pytest

from core import queries as Q
from core.experiments.cross_sampling.budget import eps_for_targets
from core.figures.cross import caption_of
from tests.test_queries import make_tables, write_run

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    traces, tokens, topk = make_tables(7, n_traces=20)
    n = len(tokens)
    rng = np.random.default_rng(0)
    v = np.zeros(n)
    nz = rng.choice(n, int(round(0.03 * n)), replace=False)  # 3% above 0, the rest tied
    v[nz] = rng.uniform(0.01, 0.5, len(nz))
    tokens["js_top_p"] = v
    run = write_run(tmp_path_factory.mktemp("tied") / "tied", (traces, tokens, topk),
                    {"name": "tied", "kind": "rl", "config": {"js_top_p": 0.7}})
    tuned = tokens.trace_id.map(traces.set_index("trace_id").sampled_from) == "tuned"
    return run, float((v.astype(np.float32)[tuned.to_numpy()] > 0).mean())


def test_target_on_ties_is_the_closest_realised_budget(tied):
    run, above0 = tied
    metric, got = eps_for_targets(run, [0.05, 0.01], 0.7)
    assert metric == "js_top_p"
    five, one = got.iloc[0], got.iloc[1]
    # the quantile says 0 for 5%; "> 0" switches 3%, the closest any eps can get
    assert five.quantile_eps == 0 and five.eps == 0
    assert five.realised == pytest.approx(above0) and five.realised < 0.05
    # 1%: a stored value above 0 whose realised share is the nearest to 1%
    with Q.open_runs([run], names=["tied"]) as con:
        vals = con.execute("SELECT js_top_p::DOUBLE FROM tok WHERE sampled_from = 'tuned'"
                           ).df().iloc[:, 0].to_numpy()  # the default: tuned-sampled traces
    shares = {x: (vals > x).mean() for x in np.unique(vals)}
    best = min(abs(s - 0.01) for s in shares.values())
    assert abs(one.realised - 0.01) == pytest.approx(best)
    assert one.realised == pytest.approx((vals > one.eps).mean())


def test_caption_names_the_realised_budget():
    import pandas as pd
    s = pd.DataFrame({"direction": ["base", "tuned", "forward"], "eps": [np.inf, np.inf, 0.0],
                      "control_kind": ["", "", ""], "control": [False] * 3,
                      "accuracy": [0.4, 0.6, 0.5], "budget": [0, 0, 0.026],
                      "n_prompts": [10, 10, 10]})
    cap, summ = caption_of(s, {"target_budget": 0.05, "target_eps": 0.0,
                               "target_realised": 0.026, "target_metric": "js_top_p",
                               "n_prompts": 10})
    assert "5% of the run's stored tokens: eps 0 on js_top_p, which 2.60% of the run's " \
           "stored tokens exceed" in cap
    assert summ["target_realised"] == 0.026
