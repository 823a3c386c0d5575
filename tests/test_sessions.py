"""Several sessions query one opened collection at once, each through its own cursor
(`core.queries.session`): no "connection is busy", the same answers as one session alone, and
the materialised indexes and pre-aggregates built once and shared, not copied per session."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from core import queries as Q
from core.demo.synthetic import write_synthetic_run
from core.queries import order_index

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", params=[False, True], ids=["lazy", "materialised"])
def con(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("sessions")
    dirs = [write_synthetic_run(root / f"s{i}", n_tokens=6_000, mean_length=60, seed=i,
                                chunk_rows=3_000, name=f"s{i}") for i in range(2)]
    return Q.open_runs(dirs, materialize=request.param)


def _queries(c):
    return {
        "sparsity": lambda: Q.sparsity_summary(c, by="run"),
        "histogram": lambda: Q.histogram(c, by="sampled_from"),
        "entropy": lambda: Q.entropy_by_js_bin(c),
        "overlap": lambda: Q.topk_overlap(c, threshold=0.05),
        "identity": lambda: Q.token_identity(c, min_count=2),
        "evolution": lambda: Q.evolution(c, ["s0", "s1"]),
        "traces": lambda: Q.trace_list(c, "s1", limit=20),
        "tokens": lambda: Q.trace_tokens(c, "s0", 3),
        "search": lambda: Q.token_search(c, js_min=0.2, limit=20),
    }


def test_eight_sessions_at_once_get_one_sessions_answers(con):
    want = {k: f() for k, f in _queries(Q.session(con)).items()}
    errors, got = [], []
    start = threading.Barrier(8)

    def work(i):
        cur = Q.session(con)
        start.wait()
        try:
            for _ in range(3):
                for k, f in _queries(cur).items():
                    got.append((k, f()))
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(f"session {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(got) == 8 * 3 * len(want)
    for k, df in got:
        pd.testing.assert_frame_equal(df, want[k], obj=k)


def test_sessions_share_the_collections_indexes(con):
    a, b = Q.session(con), Q.session(con)
    assert order_index.enabled(a) == order_index.enabled(con)
    if order_index.enabled(con):
        Q.histogram(a, metric="entropy_base")  # builds the entropy index through one cursor
        store = order_index._store(con)
        assert order_index._store(a) is store and order_index._store(b) is store
        assert ("cell", "entropy_base") in store.indexes


def test_a_sessions_two_script_runs_never_share_a_cursor(tmp_path, monkeypatch):
    """Streamlit's fast reruns start a widget change's script run in a new thread while the
    old run may still be inside a DuckDB call (seen: the fork explorer's page failing with
    "connection is busy"). The app's cursor is per session *and* per script-run thread."""
    import streamlit as st

    from app.ui import state
    from core import api

    for i in range(2):
        write_synthetic_run(tmp_path / f"r{i}", n_tokens=2_000, mean_length=40, seed=i,
                            name=f"r{i}")
    runs = api.list_runs(tmp_path)
    monkeypatch.setattr(st, "session_state", {})  # one session, seen by both threads
    old = state.connection(runs)
    assert state.connection(runs) is old  # one run's thread keeps its cursor
    busy, started, errors, seen = threading.Event(), threading.Event(), [], []

    def old_run():  # the interrupted run, still inside a long query on its cursor
        started.set()
        try:
            old.execute("SELECT count(*) FROM range(3000) a, range(30000) b "
                        "WHERE (a.range * b.range) % 7 = 3").fetchall()
        finally:
            busy.set()

    def new_run():  # the rerun, in a new thread of the same session
        started.wait()
        try:
            cur = state.connection(runs)
            seen.append(cur)
            seen.append(Q.trace_list(cur, "r1", limit=5))
            seen.append(busy.is_set())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=old_run), threading.Thread(target=new_run)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert seen[0] is not old and len(seen[1]) == 5
    assert not seen[2], "the old run's query ended before the rerun queried: nothing was tried"


def test_overview_figures_are_computed_once_per_runs_state_and_copied_per_call(tmp_path,
                                                                               monkeypatch):
    """The Overview page and the Runs page's comparison take their figures from one cache
    (about a hundred queries per run): a second call does not query, each call gets its own
    copy (a session that changes its figures changes nobody else's), and a run written anew
    is queried again."""
    from app.ui import state
    from core import api, figures

    write_synthetic_run(tmp_path / "r0", n_tokens=2_000, mean_length=40, seed=0, name="r0")
    calls = []
    real = figures.overview
    monkeypatch.setattr(state, "overview", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    state._overview.clear()
    runs = api.list_runs(tmp_path)
    first = state.overview_figures(runs, "r0")
    first[0].figure.layout.title = "changed by one session"
    again = state.overview_figures(runs, "r0")
    assert calls == ["r0"] and len(again) == len(first) > 3
    assert again[0].figure.layout.title != first[0].figure.layout.title
    write_synthetic_run(tmp_path / "r0", n_tokens=1_000, mean_length=40, seed=1, name="r0")
    fresh = state.overview_figures(api.list_runs(tmp_path), "r0")
    assert calls == ["r0", "r0"]
    assert fresh[0].caption != first[0].caption or fresh[0].figure != first[0].figure
