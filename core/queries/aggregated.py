"""The row-scanning analyses answered from per-cell pre-aggregates and order indexes on
materialised connections (histograms, entropy by js bin, the js x entropy grid, top-k overlap,
reallocation, the tuned top-1's base rank, URIAL categories, token identity, evolution).

Every filter the analyses take (runs, sampled_from, correct) selects whole cells (see
core/queries/order_index.py), so a query grouped by cell answers every filter: one pass over
the rows per set of parameters (a threshold, bin edges), kept in a small per-connection LRU
(`order_index.get_lru`), then sums over the selected cells. Histograms need no pass at all:
the bin of a value is monotone in the value, so each bin is a range of order keys, counted
with one `searchsorted` per edge in the metric's order index; the edges' keys are found by
evaluating the SQL path's own bin expression in DuckDB (`_edge_keys`), so ties at bin edges
fall exactly where SQL puts them.

Counts are exact; means are float64 sums over counts (summation order differs from DuckDB's
avg: last-bit differences). Each function returns the frame its SQL twin in analyses.py or
ranking.py builds (columns, dtypes, order); tests/test_synthetic.py and
tests/test_aggregated.py compare them on runs with NULLs and ties.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import duckdb
import numpy as np
import pandas as pd

from core.queries import indexed, order_index
from core.queries.sql import _bin, _q

_EVAL = duckdb.connect()  # evaluates bin expressions on candidate values (no data)
_EVAL_LOCK = threading.Lock()


def _freeze(params: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


def cell_agg(con, sql: str, params: dict | None = None) -> pd.DataFrame:
    """`sql` (a query over tokx grouped by cell and other keys) run once per parameter set."""
    params = params or {}
    return order_index.get_lru(con, ("agg", sql, _freeze(params)), lambda: _q(con, sql, params))


def _selected(con, agg: pd.DataFrame, runs, sampled_from, correct, by) -> pd.DataFrame:
    """The rows of a per-cell aggregate whose cell the filters keep, with the `by` column."""
    c = indexed.cells(con, runs, sampled_from, correct)
    cols = ["cell"] + ([by] if by else [])
    return agg.merge(c[cols], on="cell", how="inner")


def _sum(df: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    """Sums of `cols` per `keys` (sorted, NULL last); without keys one row (zeros if empty),
    as an ungrouped SQL aggregate."""
    if not keys:
        return pd.DataFrame({c: [df[c].sum(skipna=False) if len(df) else 0] for c in cols})
    # skipna=False: a NaN value (not NULL: sums of no values are coalesced to 0 in SQL) makes
    # the sum NaN, as DuckDB's
    return df.groupby(keys, dropna=False, sort=True)[cols].sum(skipna=False).reset_index()


def _groups_present(con, runs, sampled_from, correct, by) -> list:
    """The distinct `by` values among the kept rows, sorted, NULL (None) last."""
    c = indexed.cells(con, runs, sampled_from, correct)
    vals = c[by].drop_duplicates().tolist()
    return sorted([v for v in vals if not pd.isna(v)]) + [None] * any(pd.isna(v) for v in vals)


# ----------------------------------------------------------------------------- histograms

_NEG_INF_KEY = int(order_index._okey(np.array([-np.inf], dtype=np.float32))[0])


@lru_cache(maxsize=512)
def _edge_keys(expr: str, params: tuple, bins: int, dtype: str) -> np.ndarray:
    """[bins + 1] order keys: entry i is the smallest key whose value the bin expression
    `expr` (SQL over a column named v, with params) puts in bin >= i (0 first, 2**32 last).
    The expression is monotone in v, so a bisection over the 32-bit key space, each step
    one DuckDB evaluation of every edge at once."""
    np_dtype = np.float32 if dtype == "float32" else np.int32
    sql_type = "FLOAT" if dtype == "float32" else "INTEGER"
    want = np.arange(1, bins)
    lo = np.zeros(len(want), dtype=np.int64)
    hi = np.full(len(want), 2**32, dtype=np.int64)  # 2**32: no value reaches bin i
    p = dict(params)
    sql = f"SELECT list_transform($vals::{sql_type}[], lambda v: {expr}) AS b"
    while (lo < hi).any():
        mid = (lo + hi) // 2
        probe = np.minimum(mid, 2**32 - 1)
        vals = order_index._from_okey(probe.astype(np.uint32), np_dtype)
        if np_dtype == np.float32:  # keys below -inf are sign-set NaNs: never stored
            vals = np.where(probe < _NEG_INF_KEY, np.float32(-np.inf), vals)
        with _EVAL_LOCK:
            got = np.array(_EVAL.execute(sql, {**p, "vals": vals.tolist()}).fetchall()[0][0])
        ok = (got >= want) & (mid < 2**32)
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    return np.concatenate([[0], lo, [2**32]]).astype(np.int64)


def histogram_range(con, m: str, log: bool, runs, sampled_from, correct):
    """(min, max) of `m` over the kept rows as the SQL path computes them (min of the
    positive values when log), each None without rows."""
    ix = indexed.cell_index(con, m)
    segs = indexed.cells(con, runs, sampled_from, correct)["cell"].to_numpy()
    lo = ix.min(segs, above=0.0 if log else None)
    hi = ix.max(segs)
    return (None if lo is None else float(lo)), (None if hi is None else float(hi))


def histogram_counts(con, m: str, x_of, params: dict, bins: int, runs, sampled_from, correct,
                     by) -> pd.DataFrame:
    """[by,] bin, count of the non-NULL values of `m` per bin of `_bin(x_of(col), 'h')`, for
    the bins that hold values (as the SQL's GROUP BY gives them)."""
    ix = indexed.cell_index(con, m)
    expr = _bin(x_of("v"), "h")
    used = {k: v for k, v in params.items() if f"${k}" in expr}
    keys = _edge_keys(expr, _freeze(used), int(bins), str(ix.dtype))
    rows = []
    for g, segs in indexed._groups(indexed.cells(con, runs, sampled_from, correct), by):
        counts = np.diff(ix.count_below_keys(segs, keys))
        rows += [((g,) if by else ()) + (b, int(n)) for b, n in enumerate(counts) if n]
    df = pd.DataFrame(rows, columns=([by] if by else []) + ["bin", "count"])
    return df.astype({"bin": "int32", "count": "int64"})


# ----------------------------------------------------------------------------- the analyses

def entropy_by_js_bin(con, edges, inner: str, runs, sampled_from, correct, by) -> pd.DataFrame:
    params = {f"e{i}": e for i, e in enumerate(edges)}
    agg = cell_agg(con, f"""SELECT cell, {inner} AS i, count(js) AS n,
        coalesce(sum(entropy_base::DOUBLE), 0) AS sb, count(entropy_base) AS cb,
        coalesce(sum(entropy_tuned::DOUBLE), 0) AS st, count(entropy_tuned) AS ct
      FROM tokx WHERE js >= $e0 AND js < $e{len(edges) - 1} GROUP BY ALL""", params)
    keys = [by] if by else []
    a = _sum(_selected(con, agg, runs, sampled_from, correct, by), keys + ["i"],
             ["n", "sb", "cb", "st", "ct"])
    groups = _groups_present(con, runs, sampled_from, correct, by) if by else [None]
    rows = []
    for g in groups:
        sub = a[a[by].isna()] if by and g is None else a[a[by] == g] if by else a
        sub = sub.set_index("i")
        for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            r = sub.loc[i] if i in sub.index else None
            n = int(r["n"]) if r is not None else 0
            mb = r["sb"] / r["cb"] if r is not None and r["cb"] else np.nan
            mt = r["st"] / r["ct"] if r is not None and r["ct"] else np.nan
            rows.append(((g,) if by else ()) + (float(lo), float(hi), n, mb, mt))
    df = pd.DataFrame(rows, columns=keys + ["lo", "hi", "n", "mean_entropy_base",
                                            "mean_entropy_tuned"])
    return df.astype({"lo": "float64", "hi": "float64", "n": "int64",
                      "mean_entropy_base": "float64", "mean_entropy_tuned": "float64"})


def entropy_max(con, entropy: str, runs, sampled_from, correct):
    """max(entropy)::DOUBLE over the kept rows (None without values; NaN when one is NaN,
    as DuckDB orders NaN above every number)."""
    agg = order_index.get(con, ("cellmax", entropy), lambda: _q(
        con, f"""SELECT cell, max({entropy})::DOUBLE AS mx, count({entropy}) AS n,
          count(*) FILTER (WHERE isnan({entropy})) AS nn FROM tokx GROUP BY cell""", {}))
    sel = _selected(con, agg, runs, sampled_from, correct, None)
    if sel["nn"].sum() > 0:
        return float("nan")
    sel = sel[sel["n"] > 0]
    return float(sel["mx"].max()) if len(sel) else None


def js_entropy_grid(con, entropy: str, params: dict, runs, sampled_from, correct,
                    by) -> pd.DataFrame:
    """[by,] jb, eb, count over the kept rows with both values (the SQL's grouped counts)."""
    agg = cell_agg(con, f"""SELECT cell, {_bin('js', 'j')} AS jb, {_bin(entropy, 'e')} AS eb,
        count(*) AS count FROM tokx WHERE js IS NOT NULL AND {entropy} IS NOT NULL
      GROUP BY ALL""", params)
    keys = ([by] if by else []) + ["jb", "eb"]
    df = _sum(_selected(con, agg, runs, sampled_from, correct, by), keys, ["count"])
    return df[df["count"] > 0]


def topk_overlap_high(con, threshold, k_max, runs, sampled_from, correct, by) -> pd.DataFrame:
    """[by,] kn, c, s1..s{k_max} over the kept rows with js > threshold and top-k lists."""
    sums = ", ".join(f"sum(k_ov{k})::BIGINT AS s{k}" for k in range(1, k_max + 1))
    agg = cell_agg(con, f"""SELECT cell, least(k_n, {int(k_max)}) AS kn, count(*) AS c, {sums}
      FROM tokx WHERE js > $thr AND k_has AND k_n >= 1 GROUP BY ALL""", {"thr": threshold})
    cols = ["c"] + [f"s{k}" for k in range(1, k_max + 1)]
    keys = ([by] if by else []) + ["kn"]
    df = _sum(_selected(con, agg, runs, sampled_from, correct, by), keys, cols)
    return df.astype({c: "int64" for c in cols})


def reallocation_wide(con, threshold, low_prob, runs, sampled_from, correct,
                      by) -> pd.DataFrame:
    """The SQL's wide frame: [by,] <share>_high, <share>_all, n_high, n_all."""
    agg = cell_agg(con, """SELECT cell, coalesce(js > $thr, FALSE) AS hi, count(*) AS n,
        count(*) FILTER (WHERE k_r = 1) AS s1, count(*) FILTER (WHERE k_r <= 3) AS s3,
        count(k_r) AS nr, count(*) FILTER (WHERE k_pb < $low) AS sl, count(k_pb) AS nl
      FROM tokx WHERE k_has GROUP BY ALL""", {"thr": threshold, "low": low_prob})
    keys = [by] if by else []
    sel = _selected(con, agg, runs, sampled_from, correct, by)
    cols = ["n", "s1", "s3", "nr", "sl", "nl"]
    out = {}
    for sfx, part in (("high", sel[sel["hi"]]), ("all", sel)):
        out[sfx] = _sum(part, keys, cols).set_index(keys) if keys else _sum(part, keys, cols)
    groups = out["all"].index if keys else [None]  # without `by`: one row, as in SQL
    rows = []
    for g in groups:
        row = {by: g} if keys else {}
        for sfx in ("high", "all"):
            t = out[sfx]
            r = (t.loc[g] if g in t.index else None) if keys else (t.iloc[0] if len(t) else None)
            n = int(r["n"]) if r is not None else 0

            def share(s, d, r=r):
                return r[s] / r[d] if r is not None and r[d] else np.nan
            row |= {f"share_same_top1_{sfx}": share("s1", "nr"),
                    f"share_in_base_top3_{sfx}": share("s3", "nr"),
                    f"share_low_prob_{sfx}": share("sl", "nl"), f"n_{sfx}": n}
        rows.append(row)
    return pd.DataFrame(rows)


def rank_hist_wide(con, threshold, max_rank, runs, sampled_from, correct, by) -> pd.DataFrame:
    agg = cell_agg(con, """SELECT cell, least(k_r, $mr + 1) AS rank,
        count(*) FILTER (WHERE js > $thr) AS n_high, count(*) AS n_all
      FROM tokx WHERE k_has AND k_r > 0 GROUP BY ALL""", {"thr": threshold, "mr": max_rank})
    keys = ([by] if by else []) + ["rank"]
    return _sum(_selected(con, agg, runs, sampled_from, correct, by), keys,
                ["n_high", "n_all"]).astype({"n_high": "int64", "n_all": "int64"})


def urial_wide(con, runs, sampled_from, correct, by) -> pd.DataFrame:
    agg = order_index.get(con, ("urial",), lambda: _q(con, """SELECT cell,
        count(*) FILTER (WHERE rank_base = 1) AS unshifted,
        count(*) FILTER (WHERE rank_base BETWEEN 2 AND 3) AS marginal,
        count(*) FILTER (WHERE rank_base > 3) AS shifted, count(rank_base) AS n
      FROM tokx GROUP BY cell""", {}))
    sel = _selected(con, agg, runs, sampled_from, correct, by)
    cols = ["unshifted", "marginal", "shifted", "n"]
    df = _sum(sel[sel["n"] > 0], [by] if by else [], cols)
    df = df[df["n"] > 0] if by else df
    return df.drop(columns="n").astype({c: "int64" for c in cols[:-1]})


def codes_ok(con) -> bool:
    """Whether token codes (64-bit hashes) are distinct per token string in this collection:
    grouping and text search use them only then (else they work on the strings)."""
    return order_index.get(con, ("codes_ok",), lambda: con.execute(
        "SELECT count(*) = count(DISTINCT tcode) FROM vocab").fetchall()[0][0])


def token_identity(con, high, min_count, limit, runs, sampled_from, correct,
                   by) -> pd.DataFrame:
    agg = cell_agg(con, """SELECT cell, tcode, count(*) AS n_total,
        count(*) FILTER (WHERE js > $hi) AS n_high, coalesce(sum(js::DOUBLE), 0) AS s_js
      FROM tokx WHERE js IS NOT NULL GROUP BY ALL""", {"hi": high})
    keys = ([by] if by else []) + ["tcode"]
    a = _sum(_selected(con, agg, runs, sampled_from, correct, by), keys,
             ["n_total", "n_high", "s_js"])
    a = a[(a["n_total"] >= min_count) & (a["n_high"] > 0)]
    vocab = order_index.get(con, ("vocab",), lambda: _q(con, "SELECT tcode, token FROM vocab",
                                                         {}))
    a = a.merge(vocab, on="tcode", how="left")
    n_total, n_high = a["n_total"].astype("int64"), a["n_high"].astype("int64")
    df = pd.DataFrame({**({by: a[by]} if by else {}), "token": a["token"], "n_total": n_total,
                       "n_high": n_high, "n_low": n_total - n_high,
                       "share_high": n_high / n_total, "mean_js": a["s_js"] / n_total})
    # ORDER BY n_high DESC, share_high DESC, token (NULL token last), within each group
    df = df.assign(_nt=df["token"].isna()).sort_values(
        ["n_high", "share_high", "_nt", "token"], ascending=[False, False, True, True],
        kind="stable")
    if by:
        df = df[df.groupby(by, dropna=False).cumcount() < limit]
        df = df.assign(_nb=df[by].isna()).sort_values(
            ["_nb", by, "n_high", "share_high", "_nt", "token"],
            ascending=[True, True, False, False, True, True], kind="stable")
        df = df.drop(columns="_nb")
    else:
        df = df.head(limit)
    return df.drop(columns="_nt").reset_index(drop=True)


def evolution_counts(con, series_runs, high, sampled_from, correct) -> tuple[dict, dict, int]:
    """({run: n_high}, {run: n_inter}, |final high set|) over the kept rows: n_high counts
    js > high, n_inter the run's high positions (trace_id, pos) also high in the last run."""
    last = series_runs[-1]
    inter = cell_agg(con, """WITH h AS (SELECT cell, trace_id, pos FROM tokx
          WHERE js > $hi AND list_contains($series::VARCHAR[], run)),
        fin AS (SELECT cell, trace_id, pos FROM tokx WHERE run = $last AND js > $hi)
      SELECT h.cell AS cell, fin.cell AS fcell, count(*) AS n FROM h JOIN fin
        USING (trace_id, pos) GROUP BY ALL""",
                     {"hi": high, "series": list(series_runs), "last": last})
    c = indexed.cells(con, series_runs, sampled_from, correct)
    ix = indexed.cell_index(con, "js")
    n_high = {}
    for run, g in c.groupby("run", sort=False):
        n_high[run] = int(ix.count_gt(g["cell"].to_numpy(), high).sum())
    kept = set(c["cell"].tolist())
    ok = inter[inter["cell"].isin(kept) & inter["fcell"].isin(kept)]
    run_of = dict(zip(c["cell"], c["run"], strict=True))
    n_inter: dict = {}
    for cell, n in zip(ok["cell"], ok["n"], strict=True):
        n_inter[run_of[cell]] = n_inter.get(run_of[cell], 0) + int(n)
    return n_high, n_inter, n_high.get(last, 0)
