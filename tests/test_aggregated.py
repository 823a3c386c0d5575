"""The pre-aggregated and order-index answers of materialised connections
(core/queries/aggregated.py) equal the SQL of lazy connections exactly, on runs built to break
them: values exactly on histogram and js-bin edges, NULLs, NaN and infinite entropies, a NULL
sampled_from, every filter and grouping, and a second call (served from the cache) equal to
the first."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from core import queries as Q
from core.demo.synthetic import write_synthetic_run
from core.queries import aggregated
from core.store.schema import TOKENS_FILE, TRACES_FILE
from core.store.storage import write_parquet

pytestmark = pytest.mark.unit

SYN = dict(n_tokens=12_000, mean_length=80, chunk_rows=5_000)
LN2 = math.log(2)


def _edit(run, seed: int, nan: bool):
    """Put values on bin edges, NULLs, NaN/inf (when `nan`) into the run's token tables and a
    NULL sampled_from into some traces."""
    rng = np.random.default_rng(seed)
    for f in Q.table_files(run, TOKENS_FILE):
        t = pq.read_table(f)
        n = t.num_rows
        js = t["js"].to_numpy(zero_copy_only=False).astype(np.float32).copy()
        # default js histogram edges (50 bins over [0, ln 2]), entropy_by_js_bin's edges,
        # log-bin edges and the thresholds 0.1 / 0.05, as float32 values
        edges = np.concatenate([np.arange(51) * (LN2 / 50), [0, 0.01, 0.05, 0.1, 0.2, 0.3],
                                np.exp(np.linspace(math.log(1e-6), math.log(LN2), 51))])
        pick = rng.random(n) < 0.25
        js[pick] = edges[rng.integers(0, len(edges), int(pick.sum()))].astype(np.float32)
        ent = t["entropy_base"].to_numpy(zero_copy_only=False).astype(np.float32).copy()
        pick = rng.random(n) < 0.2
        ent[pick] = np.round(ent[pick] * 4) / 4  # ties on a coarse grid
        if nan:  # (no NaN js: DuckDB's Parquet range-filter pushdown keeps NaN in
            # `js >= a AND js < b` while its own comparison puts NaN above every number, so the
            # lazy reference would disagree with itself; the engine never writes a NaN js)
            ent[rng.random(n) < 0.001] = np.inf
            ent[rng.random(n) < 0.001] = np.nan
        js_arr = pc.if_else(pa.array(rng.random(n) < 0.03), None, pa.array(js))
        ent_arr = pc.if_else(pa.array(rng.random(n) < 0.03), None, pa.array(ent))
        rb = pc.if_else(pa.array(rng.random(n) < 0.02), None, t["rank_base"])
        for col, arr in [("js", js_arr), ("entropy_base", ent_arr), ("rank_base", rb)]:
            i = t.schema.get_field_index(col)
            t = t.set_column(i, t.schema.field(i), arr)
        write_parquet(t, f)
    for f in Q.table_files(run, TRACES_FILE):
        t = pq.read_table(f)
        i = t.schema.get_field_index("sampled_from")
        null = pa.array(t["trace_id"].to_numpy() % 13 == 0)
        t = t.set_column(i, t.schema.field(i), pc.if_else(null, None, t["sampled_from"]))
        write_parquet(t, f)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    a = _edit(write_synthetic_run(root / "step-1", seed=1, name="step-1", **SYN), 1, False)
    b = _edit(write_synthetic_run(root / "step-2", seed=2, name="step-2", **SYN), 2, True)
    return [a, b]


@pytest.fixture(scope="module")
def cons(runs):
    return Q.open_runs(runs, materialize=False), Q.open_runs(runs, materialize=True)


FILTERS = [{}, {"runs": ["step-2"]}, {"sampled_from": "tuned"}, {"correct": False},
           {"runs": ["step-1"], "sampled_from": "base", "correct": True}]
BYS = [None, "run", "sampled_from"]


def _cases():
    out = []
    for f in FILTERS:
        for by in BYS:
            out += [
                ("histogram js", lambda c, f=f, by=by: Q.histogram(c, by=by, **f)),
                ("histogram js log", lambda c, f=f, by=by: Q.histogram(c, log=True, by=by, **f)),
                ("histogram entropy", lambda c, f=f, by=by: Q.histogram(
                    c, metric="entropy_base", bins=17, by=by, **f)),
                ("histogram entropy log", lambda c, f=f, by=by: Q.histogram(
                    c, metric="entropy_base", log=True, by=by, **f)),
                ("histogram rank", lambda c, f=f, by=by: Q.histogram(
                    c, metric="rank_base", bins=7, lo=1, hi=30, by=by, **f)),
                ("entropy_by_js_bin", lambda c, f=f, by=by: Q.entropy_by_js_bin(c, by=by, **f)),
                ("hist2d", lambda c, f=f, by=by: Q.js_entropy_hist2d(c, by=by, **f)),
                ("hist2d tuned", lambda c, f=f, by=by: Q.js_entropy_hist2d(
                    c, entropy="entropy_tuned", js_bins=7, entropy_bins=5, by=by, **f)),
                ("topk_overlap", lambda c, f=f, by=by: Q.topk_overlap(c, by=by, **f)),
                ("topk_overlap 0.05", lambda c, f=f, by=by: Q.topk_overlap(
                    c, threshold=0.05, k_max=4, by=by, **f)),
                ("reallocation", lambda c, f=f, by=by: Q.reallocation(c, by=by, **f)),
                ("reallocation 0.2", lambda c, f=f, by=by: Q.reallocation(
                    c, threshold=0.2, low_prob=0.05, by=by, **f)),
                ("rank_hist", lambda c, f=f, by=by: Q.tuned_top1_base_rank_hist(c, by=by, **f)),
                ("urial", lambda c, f=f, by=by: Q.urial_categories(c, by=by, **f)),
                ("token_identity", lambda c, f=f, by=by: Q.token_identity(
                    c, min_count=2, limit=15, by=by, **f)),
            ]
        g = {k: v for k, v in f.items() if k != "runs"}
        out += [("evolution", lambda c, g=g: Q.evolution(c, ["step-1", "step-2"], **g)),
                ("evolution 0.05", lambda c, g=g: Q.evolution(c, ["step-2", "step-1"],
                                                              high=0.05, **g))]
    for f in FILTERS:  # token search: the order-index shortcut, its widening, ties on js
        g = {k: v for k, v in f.items() if k != "correct"}
        co = bool(f.get("correct"))
        out += [
            ("token_search js", lambda c, g=g, co=co: Q.token_search(
                c, js_min=0.1, limit=40, correct_only=co, **g)),
            ("token_search top", lambda c, g=g: Q.token_search(c, limit=7, **g)),
            ("token_search rank", lambda c, g=g: Q.token_search(
                c, rank_base_min=3, dlogp_max=0.5, limit=25, **g)),
            ("token_search text", lambda c, g=g: Q.token_search(
                c, text_contains="W", rel_pos_range=(0.2, 0.9), limit=30, **g)),
            ("token_search none", lambda c, g=g: Q.token_search(c, js_min=0.69, limit=10,
                                                                 **g)),
        ]
    return out


CASES = _cases()


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{n}-{i}" for i, (n, _) in
                                                       enumerate(CASES)])
def test_aggregated_equals_sql(cons, i):
    lazy, mat = cons
    name, fn = CASES[i]
    want = fn(lazy)
    got = fn(mat)
    pd.testing.assert_frame_equal(want, got, check_exact=False, rtol=1e-9, obj=name)
    pd.testing.assert_frame_equal(got, fn(mat), obj=f"{name} (cached)")


def test_the_runs_hold_what_the_cases_need(cons):
    lazy, _ = cons
    n = lambda sql: lazy.execute(sql).fetchall()[0][0]  # noqa: E731
    assert n("SELECT count(*) FROM tokens WHERE js IS NULL") > 0
    assert n("SELECT count(*) FROM tokens WHERE isnan(entropy_base)") > 0
    assert n("SELECT count(*) FROM tokens WHERE isinf(entropy_base)") > 0
    assert n("SELECT count(*) FROM traces WHERE sampled_from IS NULL") > 0
    # values exactly on the default histogram's inner edges
    edges = [float(np.float32(i * LN2 / 50)) for i in range(1, 50)]
    assert n(f"SELECT count(*) FROM tokens WHERE js::DOUBLE IN ({', '.join(map(repr, edges))})") \
        > 100


def test_edge_keys_put_ties_where_sql_does():
    """Every float32 value next to an edge lands in the bin DuckDB's expression gives it."""
    import duckdb

    from core.queries.order_index import _from_okey, _okey
    from core.queries.sql import _bin
    bins, a, b = 50, 0.0, LN2
    expr = _bin("v", "h")
    params = {"h_a": a, "h_w": (b - a) / bins, "h_n": bins}
    keys = aggregated._edge_keys(expr, aggregated._freeze(params), bins, "float32")
    assert keys[0] == 0 and keys[-1] == 2**32 and (np.diff(keys) >= 0).all()
    near = np.concatenate([keys[1:-1] + d for d in (-2, -1, 0, 1, 2)])
    vals = _from_okey(near.astype(np.uint32), np.float32)
    got = np.searchsorted(keys, _okey(vals).astype(np.int64), side="right") - 1
    want = duckdb.connect().execute(
        f"SELECT list_transform($v::FLOAT[], lambda v: {expr})",
        {**params, "v": vals.tolist()}).fetchall()[0][0]
    np.testing.assert_array_equal(got, want)
