"""The trace page's views of issue 27: both models' probability and rank lanes
(core.figures.trace.lanes, through core.api) checked against the stored token columns, and
highlighting by every registered metric a run stores (the picker's options are the
registry's), on a small synthetic run and (model tier) in the app on the demo run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core import api
from core.store.schema import TOKENS_FILE
from tests.test_queries import make_tables, write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = write_run(tmp_path_factory.mktemp("views") / "rl", make_tables(0),
                       {"name": "rl", "kind": "rl", "series_step": None, "traces_from": None})
    return folder, api.open_runs([folder])


@pytest.mark.unit
def test_the_lanes_are_the_stored_probability_and_rank_of_each_token(run):
    folder, con = run
    stored = pd.read_parquet(folder / TOKENS_FILE)
    for tid in (0, 5):
        toks = api.trace_tokens(con, "rl", tid)
        lanes = api.trace_lanes(toks)
        mine = stored[stored.trace_id == tid].sort_values("pos")
        assert list(lanes) == ["base", "tuned"]
        for who in ("base", "tuned"):
            assert len(lanes[who]["prob"]) == len(lanes[who]["rank"]) == len(mine)
            for i in (0, 3, len(mine) - 1):  # a few tokens, read back from the Parquet file
                assert lanes[who]["rank"][i] == int(mine[f"rank_{who}"].iloc[i])
                assert lanes[who]["prob"][i] == pytest.approx(
                    math.exp(float(mine[f"logp_{who}"].iloc[i])), rel=1e-6)
                assert 0 < lanes[who]["prob"][i] <= 1


@pytest.mark.unit
def test_the_trace_payload_carries_the_lanes_only_when_asked(run):
    from core.figures.trace import trace_payload

    toks = api.trace_tokens(run[1], "rl", 1)
    assert "lanes" not in trace_payload(toks, "js")
    data = trace_payload(toks, "js", with_lanes=True)
    assert data["lanes"] == api.trace_lanes(toks)
    missing = toks.assign(logp_base=np.nan, rank_tuned=None)  # not stored: no value drawn
    got = api.trace_lanes(missing)
    assert got["base"]["prob"] == [None] * len(toks)
    assert got["tuned"]["rank"] == [None] * len(toks)


# ----------------------------------------------------------------------------- highlight by


@pytest.mark.unit
def test_every_stored_registered_metric_can_highlight_a_trace(run):
    from core.figures.colours import METRICS, colour_tokens, legend_html
    from core.figures.trace import trace_payload
    from core.metrics import METRICS as REGISTRY

    toks = api.trace_tokens(run[1], "rl", 2)
    offered = api.metric_choices(toks)
    assert offered == [m for m in REGISTRY if m in toks.columns]  # all of them, in order
    assert {"kl_tb", "kl_bt", "rank_tuned", "js_top_p90", "js_top_p95"} <= set(offered)
    for m in offered:
        data = trace_payload(toks, m)
        assert len(data["colours"]) == len(toks)
        label = METRICS[m][0]
        assert label == REGISTRY[m].label and label.split(" (")[0].split(":")[0][:8] in \
            legend_html(m, 0.1).replace("&#x27;", "'").replace("&amp;", "&")
    assert "js_top_p90" not in api.metric_choices(toks.assign(js_top_p90=np.nan))
    # a log-probability colours by how far below 0 it is; a false flag is highlighted
    _, s = colour_tokens([0.0, -0.05, -1.0, -20.0, None], "logp_base", 0.1)
    assert s[:2] == [0.0, 0.0] and 0 < s[2] < s[3] == 1.0 and s[4] == 0.0
    c, s = colour_tokens([True, False, None], "top1_agree")
    assert s == [0.0, 1.0, 0.0] and c[0] == c[2] == "transparent"


@pytest.mark.unit
def test_a_newly_registered_metric_is_offered_without_touching_the_page(run, monkeypatch):
    import torch

    from core.figures.trace import default_threshold, trace_payload
    from core.metrics import METRICS as REGISTRY
    from core.metrics import Metric

    monkeypatch.setitem(REGISTRY, "surprise_gap", Metric(
        "surprise_gap", lambda c: torch.zeros(1), label="a later metric", lo=0.0))
    toks = api.trace_tokens(run[1], "rl", 2)
    assert "surprise_gap" not in api.metric_choices(toks)  # not stored: not offered
    toks = toks.assign(surprise_gap=np.linspace(0, 1, len(toks)))
    assert api.metric_choices(toks)[-1] == "surprise_gap"
    data = trace_payload(toks, "surprise_gap", default_threshold("surprise_gap"))
    assert data["strength"][-1] == 1.0 and data["strength"][0] == 0.0


@pytest.mark.model
def test_the_pickers_options_are_the_registrys_stored_columns(app, app_cache):
    from core.metrics import METRICS as REGISTRY

    at = app(run="demo-rl")
    stored = pd.read_parquet(app_cache / "demo-rl" / TOKENS_FILE).columns
    box = at.selectbox(key="metric")
    assert box.options == [m.label for m in REGISTRY.values() if m.name in stored]
    for m in ("kl_bt", "js_top_p95", "top1_agree", "logp_tuned"):
        at.selectbox(key="metric").select(m).run()
        assert not at.exception, m
        assert at.query_params["metric"] == m
        legend = next(h for h in at.get("html") if "font-size:.85rem" in h.proto.body)
        assert REGISTRY[m].label.replace("'", "&#x27;") in legend.proto.body


# ----------------------------------------------------------------------------- both samplers


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """A run whose prompt p1 has a base-sampled trace (2) and a tuned-sampled one (3) that
    share their first 4 tokens; prompt p0's traces (0, 1) are both tuned-sampled."""
    traces, tokens, topk = make_tables(0)
    a, b = (tokens.index[tokens.trace_id == t] for t in (2, 3))
    for c in ("token_id", "token"):
        tokens.loc[b[:4], c] = tokens.loc[a[:4], c].to_numpy()
    tokens.loc[b[4], ["token_id", "token"]] = (int(tokens.loc[a[4], "token_id"]) + 1) % 10, "x"
    traces["correct"] = traces["correct"].astype(object)
    traces.loc[2, "correct"], traces.loc[3, "correct"] = False, None
    folder = write_run(tmp_path_factory.mktemp("pairs") / "rl", (traces, tokens, topk),
                       {"name": "rl", "kind": "rl", "series_step": None, "traces_from": None})
    return api.open_runs([folder])


@pytest.mark.unit
def test_parting_is_the_first_differing_token():
    assert api.parting([1, 2, 3], [1, 2, 4]) == 2
    assert api.parting([5, 2], [1, 2]) == 0
    assert api.parting([1, 2], [1, 2, 3]) == 2  # a prefix parts where it ends
    assert api.parting([1, 2], [1, 2]) is None


@pytest.mark.unit
def test_a_prompts_base_and_tuned_traces_side_by_side(paired):
    from core.errors import InputError
    from core.figures.trace import trace_payload

    assert api.same_prompt(paired, "rl", 3)["trace_id"].tolist() == [2, 3]  # base first
    for tid, other in ((3, 2), (2, 3)):  # either trace opens the same pair
        pair = api.sampler_pair(paired, "rl", tid)
        assert pair["others"] == [other] == api.pair_choices(paired, "rl", tid)
        assert (pair["base"]["trace_id"], pair["tuned"]["trace_id"]) == (2, 3)
        assert pair["base"]["verdict"] == "incorrect" and pair["tuned"]["verdict"] == "unknown"
        assert pair["part"] == 4
        base = pair["base"]["tokens"]
        assert base["token_id"].tolist() == api.trace_tokens(paired, "rl", 2)["token_id"].tolist()
        assert trace_payload(base, "js", part=pair["part"])["part"] == 4
    assert api.sampler_pair(paired, "rl", 0) is None  # prompt p0: no base-sampled trace
    assert api.pair_choices(paired, "rl", 1) == []
    with pytest.raises(InputError, match="not a trace of the other sampler"):
        api.sampler_pair(paired, "rl", 3, other=1)
    with pytest.raises(InputError, match="no trace 999"):
        api.sampler_pair(paired, "rl", 999)


@pytest.mark.model
def test_the_trace_page_shows_both_samplers_of_a_prompt(app, app_cache):
    traces = pd.read_parquet(app_cache / "demo-rl" / "traces.parquet")
    toks = pd.read_parquet(app_cache / "demo-rl" / TOKENS_FILE)
    ids = {int(t): g.sort_values("pos")["token_id"].tolist() for t, g in toks.groupby("trace_id")}
    # a tuned-sampled trace and a base-sampled one of its prompt, not its first, that part
    tid, other = next((int(t), int(b)) for t, p in zip(traces.trace_id, traces.prompt_id)
                      if traces.sampled_from[traces.trace_id == t].iloc[0] == "tuned"
                      for b in traces.trace_id[(traces.prompt_id == p)
                                               & (traces.sampled_from == "base")].iloc[1:]
                      if api.parting(ids[int(b)], ids[int(t)]) is not None)
    at = app(run="demo-rl", trace=tid, pair=1, vs=other)
    assert at.toggle(key="pair").value
    assert at.selectbox(key=f"pair_vs_{tid}").value == other
    part = api.parting(ids[other], ids[tid])
    lines = [m.value for m in at.markdown if "-sampled**" in m.value]
    verdicts = {t: {True: "correct", False: "incorrect"}.get(c, "unknown") for t, c in
                zip(traces.trace_id, traces.correct.where(traces.correct.notna(), None))}
    assert lines == [f"**{who}-sampled** · trace {t} · :{colour(verdicts[t])}[{verdicts[t]}]"
                     f" · {len(ids[t])} tokens" for who, t in (("base", other), ("tuned", tid))]
    said = [t.value for t in at.text if t.value.startswith("They part at token")]
    assert len(said) == 1 and said[0].startswith(f"They part at token {part}:")
    at.toggle(key="pair").set_value(False).run()
    assert "pair" not in at.query_params and not [m for m in at.markdown
                                                  if "-sampled**" in m.value]


def colour(v: str) -> str:
    return {"correct": "green", "incorrect": "red", "unknown": "gray"}[v]
