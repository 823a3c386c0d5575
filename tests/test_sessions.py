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
