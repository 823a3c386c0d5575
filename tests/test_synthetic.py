"""core.demo.synthetic: a small synthetic run is schema-valid and every query runs on it, with the
same results on lazy (Parquet views) and materialised connections."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from core import queries as Q
from core.demo.synthetic import write_synthetic_run
from core.store.manifest import read_manifest
from core.store.schema import SCHEMAS, TOKENS_FILE
from core.store.storage import write_parquet

pytestmark = pytest.mark.unit

N = 20_000
SYN = dict(n_tokens=N, mean_length=120, seed=3, chunk_rows=6_000)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("syn") / "syn", **SYN)


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


@pytest.fixture(scope="module")
def run_with_nulls(run, tmp_path_factory):
    """A copy of `run` named syn-nulls where every 29th token has NULL js and every 31st NULL
    entropies: the indexed paths must count and skip NULLs exactly as SQL does."""
    dst = write_synthetic_run(tmp_path_factory.mktemp("nulls") / "syn-nulls", name="syn-nulls",
                              **SYN)  # the same tables as `run` (deterministic in the seed)
    for f in Q.table_files(dst, TOKENS_FILE):
        t = pq.read_table(f)
        pos = t["pos"].to_numpy()
        for col, every in [("js", 29), ("entropy_base", 31), ("entropy_tuned", 31)]:
            null = pa.array(pos % every == 0)
            i = t.schema.get_field_index(col)
            t = t.set_column(i, t.schema.field(i), pc.if_else(null, None, t[col]))
        write_parquet(t, f)
    return dst


def test_two_runs_with_nulls_materialised_equals_lazy(run, run_with_nulls):
    lazy, mat = (Q.open_runs([run, run_with_nulls], materialize=m) for m in (False, True))
    names = Q.opened_runs(lazy)["run"].tolist()
    assert names[1] == "syn-nulls"
    assert lazy.execute("SELECT count(*) FROM tokens WHERE js IS NULL").fetchone()[0] > 0

    def queries(con):
        return {
            "sparsity": Q.sparsity_summary(con, by="run"),
            "sparsity_filtered": Q.sparsity_summary(con, runs=["syn-nulls"], correct=False),
            "position_profile": Q.position_profile(con, by="run", bins=9),
            "headline": Q.headline(con),
            "evolution": Q.evolution(con, names),
            "contrast": Q.contrast(con, *names),
            "eps": Q.eps_for_budget(con, [0.02, 0.2], runs=["syn-nulls"]),
            "entropy_by_js_bin": Q.entropy_by_js_bin(con, by="sampled_from"),
            "topk_overlap": Q.topk_overlap(con, by="run", k_max=4),
            "reallocation": Q.reallocation(con, by="run"),
            "token_identity": Q.token_identity(con, by="run", min_count=2),
            "token_search": Q.token_search(con, text_contains="W", js_min=0.1),
        }

    a, b = queries(lazy), queries(mat)
    for key in a:
        assert len(a[key]) > 0, key
        pd.testing.assert_frame_equal(a[key], b[key], check_exact=False, rtol=1e-9, obj=key)
    assert a["sparsity"]["n_tokens"].iloc[1] < a["sparsity"]["n_tokens"].iloc[0]  # NULLs skipped
