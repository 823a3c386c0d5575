"""core.queries.order_index: exact order statistics and threshold counts, checked against
DuckDB itself on awkward data (ties, negatives, signed zeros, infinities, NaN, int32)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from core.queries.order_index import SegIndex

pytestmark = pytest.mark.unit

N_SEG = 7


def _data(dtype, seed=0, n=4000):
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, N_SEG, n)
    seg[seg == 3] = 4  # segment 3 stays empty
    if dtype == np.float32:
        v = np.round(rng.normal(0, 1, n), 2).astype(np.float32)  # many ties
        v[:6] = [np.inf, -np.inf, np.nan, -0.0, 0.0, np.float32(0.01)]
    else:
        v = rng.integers(-50, 50, n).astype(np.int32)
        v[:2] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max]
    return seg, v


@pytest.fixture(scope="module", params=[np.float32, np.int32], ids=["float32", "int32"])
def case(request):
    seg, v = _data(request.param)
    con = duckdb.connect()
    con.register("t", pa.table({"seg": seg, "v": pa.array(v)}))  # NaN stays NaN (not NULL)
    return SegIndex(seg, v, N_SEG), con, seg, v


GROUPS = [[0], [1, 2], [0, 2, 4, 5, 6], [3], [3, 6], list(range(N_SEG))]


def _in(segs):
    return f"seg IN ({', '.join(str(s) for s in segs)})" if segs else "FALSE"


def test_quantiles_equal_duckdb(case):
    ix, con, _, _ = case
    qs = [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]
    got = ix.quantiles(GROUPS, qs)
    for g, row in zip(GROUPS, got, strict=True):
        want = con.execute(f"SELECT quantile_cont(v, $q::DOUBLE[]) FROM t WHERE {_in(g)}",
                           {"q": qs}).fetchone()[0]
        if want is None:
            assert np.isnan(row).all()
        else:
            np.testing.assert_array_equal(row, np.asarray(want, dtype=np.float64))


@pytest.mark.parametrize("t", [0.01, 0.0, -0.0, 0.5, -1.37, 0.009999999776482582, 1e9,
                               -np.inf, np.inf, 2.5, -49.5])
def test_threshold_counts_equal_duckdb(case, t):
    ix, con, _, _ = case
    for g in GROUPS:
        lt, gt = con.execute(f"SELECT count(*) FILTER (WHERE v < $t), count(*) FILTER "
                             f"(WHERE v > $t) FROM t WHERE {_in(g)}", {"t": t}).fetchone()
        assert int(ix.count_lt(g, t).sum()) == lt, (g, t)
        assert int(ix.count_gt(g, t).sum()) == gt, (g, t)


def test_counts_sums_max(case):
    ix, con, seg, v = case
    for g in GROUPS:
        n, s, mx = con.execute(f"SELECT count(v), sum(v::DOUBLE), max(v) FROM t "
                               f"WHERE {_in(g)}").fetchone()
        assert int(ix.count(g).sum()) == n
        if n:
            got = ix.max(g)
            assert (np.isnan(got) and np.isnan(mx)) or got == mx
            if np.isfinite(s):
                assert ix.sums[g].sum() == pytest.approx(s, rel=1e-12)
        else:
            assert ix.max(g) is None


def test_kth_is_the_sorted_union():
    seg, v = _data(np.float32, seed=5)
    v = np.where(np.isnan(v), np.float32(0), v)
    ix = SegIndex(seg, v, N_SEG)
    for g in GROUPS:
        want = np.sort(v[np.isin(seg, g)])
        if not len(want):
            continue
        ranks = [0, len(want) // 3, len(want) - 1]
        got = ix.quantiles([g], [r / (len(want) - 1) if len(want) > 1 else 0 for r in ranks])
        np.testing.assert_array_equal(got[0], want[ranks].astype(np.float64))


def test_nulls_are_kept_apart():
    ix = SegIndex(np.array([0, 0, 1]), np.array([1, 2, 3], np.float32), 2,
                  null_seg=np.array([1, 1]))
    assert list(ix.count([0, 1])) == [2, 1] and list(ix.nulls) == [0, 2]


@pytest.mark.parametrize("L", [3, 10, 12])
def test_topk_overlap_facts_equal_the_sql_definition(L):
    """k_ov1..k_ovKOV computed in numpy at materialisation = DuckDB's
    len(list_intersect(list_slice(base_ids, 1, k), list_slice(tuned_ids, 1, k))), also for
    rows whose lists repeat ids and for lists shorter than KOV."""
    from core.queries.run_index import overlap_sizes
    from core.queries.sql import KOV
    from core.store.storage import topk_table

    rng = np.random.default_rng(L)
    n = 3000
    b = rng.integers(0, 2 * L, (n, L)).astype(np.int32)          # repeats are common here
    u = np.stack([rng.permutation(3 * L)[:L] for _ in range(n)]).astype(np.int32)
    u[::7] = b[::7][:, ::-1]                                     # and some full overlaps
    # n traces of one token each (trace_id 0..n-1, pos 0), through the production writer
    scores = {"offsets": np.arange(n + 1), "base_topk_ids": b, "tuned_topk_ids": u,
              "base_topk_probs": np.ones((n, L), np.float32),
              "tuned_topk_probs": np.ones((n, L), np.float32),
              "tuned_top1_rank_base": np.ones(n, np.int32),
              "tuned_top1_prob_base": np.ones(n, np.float32)}
    topk = topk_table(scores, np.arange(n, dtype=np.int32), lambda ids: [str(i) for i in ids])
    con = duckdb.connect()
    con.register("topk", topk.append_column("run", pa.array(["r"] * n)))
    ov = overlap_sizes(b, u, chunk=1000)
    got = {f"k_ov{k}": ov[:, k - 1] for k in range(1, KOV + 1)}
    sql = ", ".join(f"len(list_intersect(list_slice(base_ids, 1, {k}), "
                    f"list_slice(tuned_ids, 1, {k}))) AS k_ov{k}" for k in range(1, KOV + 1))
    want = con.execute(f"SELECT {sql} FROM topk ORDER BY trace_id").df()
    for k in range(1, KOV + 1):
        np.testing.assert_array_equal(got[f"k_ov{k}"], want[f"k_ov{k}"].to_numpy(),
                                      err_msg=f"k={k}")
