"""core.synthetic: a small synthetic run is schema-valid and every query runs on it, with the
same results on lazy (Parquet views) and materialised connections."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from core import queries as Q
from core.manifest import read_manifest
from core.schema import SCHEMAS
from core.synthetic import write_synthetic_run

pytestmark = pytest.mark.unit

N = 20_000


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("syn") / "syn", n_tokens=N,
                               mean_length=120, seed=3, chunk_rows=6_000)


@pytest.fixture(scope="module")
def cons(run):
    return Q.open_runs([run], materialize=False), Q.open_runs([run], materialize=True)


def test_schema_and_shape(run):
    assert read_manifest(run)["kind"] == "synthetic"
    counts = {}
    for fname, schema in SCHEMAS.items():
        files = Q.table_files(run, fname)
        assert len(files) > 1  # written in chunks
        for f in files:
            assert pq.read_schema(f).remove_metadata().equals(schema), f
        counts[fname] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    assert counts["tokens.parquet"] == counts["topk.parquet"] == N
    traces = pd.concat(pq.read_table(f).to_pandas() for f in Q.table_files(run, "traces.parquet"))
    assert traces["length"].sum() == N and traces["trace_id"].is_unique
    tok = pd.concat(pq.read_table(f).to_pandas() for f in Q.table_files(run, "tokens.parquet"))
    assert 0.85 < (tok["js"] < 0.01).mean() < 0.95 and tok["js"].max() > 0.3
    assert tok["js"].corr(tok["entropy_base"]) > 0.3


def _all_queries(con, run_name, tid):
    return {
        "sparsity_summary": Q.sparsity_summary(con, by="sampled_from"),
        "histogram": Q.histogram(con, log=True),
        "entropy_by_js_bin": Q.entropy_by_js_bin(con),
        "js_entropy_hist2d": Q.js_entropy_hist2d(con, by="sampled_from"),
        "position_profile": Q.position_profile(con),
        "token_identity": Q.token_identity(con),
        "topk_overlap": Q.topk_overlap(con, by="sampled_from"),
        "topk_overlap_all": Q.topk_overlap(con, threshold=0.05, correct=True),
        "reallocation": Q.reallocation(con, by="sampled_from"),
        "rank_hist": Q.tuned_top1_base_rank_hist(con),
        "urial": Q.urial_categories(con),
        "evolution": Q.evolution(con, [run_name]),
        "contrast": Q.contrast(con, run_name, run_name),
        "headline": Q.headline(con),
        "eps": Q.eps_for_budget(con, [0.01, 0.1]),
        "trace_list": Q.trace_list(con, run_name),
        "trace_list_hi": Q.trace_list(con, run_name, high=0.05, sort_by="n_high"),
        "trace_tokens": Q.trace_tokens(con, run_name, tid),
        "token_search": Q.token_search(con, js_min=0.2),
    }


def test_every_query_runs_and_materialised_equals_lazy(run, cons):
    lazy, mat = cons
    name = Q.opened_runs(lazy)["run"].iloc[0]
    tid = int(Q.trace_list(lazy, name, limit=1)["trace_id"].iloc[0])
    a, b = _all_queries(lazy, name, tid), _all_queries(mat, name, tid)
    for key in a:
        assert len(a[key]) > 0, key
        pd.testing.assert_frame_equal(a[key], b[key], check_exact=False, rtol=1e-9, obj=key)
    assert len(a["trace_tokens"]) == a["trace_list"].set_index("trace_id").loc[tid, "length"]
