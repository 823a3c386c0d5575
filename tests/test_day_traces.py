"""The trace browser on runs of both samplers and on rollout runs (issue 27): it opens the
sampler the overview defaults to (tuned-sampled traces), filters by sampler in the URL,
still opens a linked trace of the other sampler, and marks no rollout as cut at a length
cap (given rollouts have none)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.config import PrecomputeConfig
from core.precompute.driver import precompute
from tests.conftest import DEMO, open_app
from tests.test_byo_rollouts import ROLLOUTS, rollout_bytes


def _verdict_line(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Verdict**"))


def _sampler_of(con_cache, run: str, tid: int) -> str:
    t = pd.read_parquet(con_cache / run / "traces.parquet")
    return str(t.loc[t.trace_id == tid, "sampled_from"].iloc[0])


@pytest.mark.model
def test_traces_open_the_overviews_sampler_and_filter_by_sampler(app, app_cache):
    at = app(run="demo-rl")
    box = at.radio(key="trace_from_demo-rl")
    assert box.options[:2] == ["tuned model's samples", "base model's samples"]
    assert "sampled from the **tuned** model" in _verdict_line(at)
    box.set_value("base").run()
    assert not at.exception
    assert "sampled from the **base** model" in _verdict_line(at)
    assert at.query_params["from"] == "base"
    shown = at.dataframe[0].value
    assert set(shown["sampled_from"]) == {"base"}


@pytest.mark.model
def test_a_linked_trace_of_the_other_sampler_still_opens(app, app_cache):
    t = pd.read_parquet(app_cache / "demo-rl" / "traces.parquet")
    tid = int(t[t.sampled_from == "base"].trace_id.iloc[-1])
    at = app(run="demo-rl", trace=tid, pos=1)
    assert any(s.value == f"Trace {tid}" for s in at.subheader)
    assert "sampled from the **base** model" in _verdict_line(at)


@pytest.mark.model
def test_rollout_traces_are_not_marked_cut_at_a_length_cap(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (tmp_path / "r.jsonl").write_bytes(rollout_bytes())
    folder = precompute(PrecomputeConfig(base=str(DEMO / "base"), tuned=str(DEMO / "rl"),
                                         traces=str(tmp_path / "r.jsonl"), cache=str(cache),
                                         name="byo"), log=lambda s: None, show_progress=False)
    traces = pd.read_parquet(folder / "traces.parquet")
    assert len(traces) == len(ROLLOUTS)
    assert traces["finished"].isna().all()  # no end-of-sequence token given: not known
    assert json.loads((folder / "manifest.json").read_text())["rollouts"]
    for tid in traces.trace_id:
        at = open_app(monkeypatch, cache, run="byo", trace=int(tid), **{"from": "pooled"})
        line = _verdict_line(at)
        assert f"{traces.loc[traces.trace_id == tid, 'length'].iloc[0]} tokens" in line
        assert "length cap" not in line
