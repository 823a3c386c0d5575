"""The trace page's views of issue 27 on a small synthetic run: both models' probability
and rank lanes (core.figures.trace.lanes, through core.api), checked against the stored
token columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core import api
from core.store.schema import TOKENS_FILE
from tests.test_queries import make_tables, write_run

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = write_run(tmp_path_factory.mktemp("views") / "rl", make_tables(0),
                       {"name": "rl", "kind": "rl", "series_step": None, "traces_from": None})
    return folder, api.open_runs([folder])


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
