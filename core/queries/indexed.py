"""The quantile-heavy analyses answered from order indexes (core/queries/order_index.py) on
materialised connections; analyses.py and browse.py call these when `active(con)` and keep
their SQL as the path for lazy connections (and the reference the tests compare against).

Each function returns exactly the frame of its SQL twin (columns, dtypes, order). It does not
open or materialise connections (connection.py, materialize.py) and takes its SQL helpers
from sql.py."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.queries import order_index
from core.queries.sql import _bin, _filtered, _metric, _q

DEFAULT_POSITION_BINS = 20  # position_profile's default; prebuilt by enable()


def enable(con) -> None:
    """Called by open_runs after materialising: turn the indexed paths on and prebuild the
    indexes of the app's default views (js per cell; js per cell and position bin)."""
    order_index.enable(con)
    cell_index(con, "js")
    pos_index(con, "js", DEFAULT_POSITION_BINS)


def active(con) -> bool:
    return order_index.enabled(con)


def cells(con, runs=None, sampled_from=None, correct=None) -> pd.DataFrame:
    """The cells (cell, run, sampled_from, correct, n_rows, n_top1, s_top1) the filters keep."""
    sql, p = _filtered(runs, sampled_from, correct, src="cells")
    return _q(con, sql + " ORDER BY cell", p)


def _fetch(con, sql: str, params: dict | None = None) -> dict:
    return con.execute(sql, params or {}).fetchnumpy()


def cell_index(con, metric: str) -> order_index.SegIndex:
    """`metric` sorted within cells."""
    m = _metric(metric)

    def build():
        n = con.execute("SELECT count(*) FROM cells").fetchone()[0]
        v = _fetch(con, f'SELECT cell, "{m}" AS v FROM tokx WHERE "{m}" IS NOT NULL')
        nul = _fetch(con, f'SELECT cell FROM tokx WHERE "{m}" IS NULL')["cell"]
        return order_index.SegIndex(v["cell"], v["v"], n, null_seg=nul)

    return order_index.get(con, ("cell", m), build)


def pos_index(con, metric: str, bins: int) -> order_index.SegIndex:
    """`metric` sorted within (cell, rel_pos bin) segments, seg = cell * bins + bin, with the
    bin computed by the SQL path's own expression (rows with NULL rel_pos left out)."""
    m, bins = _metric(metric), int(bins)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")

    def build():
        n = con.execute("SELECT count(*) FROM cells").fetchone()[0]
        seg = f"cell * $r_n + {_bin('rel_pos', 'r')}"
        p = {"r_a": 0.0, "r_w": 1.0 / bins, "r_n": bins}
        v = _fetch(con, f'SELECT {seg} AS s, "{m}" AS v FROM tokx WHERE rel_pos IS NOT NULL '
                        f'AND "{m}" IS NOT NULL', p)
        nul = _fetch(con, f'SELECT {seg} AS s FROM tokx WHERE rel_pos IS NOT NULL '
                          f'AND "{m}" IS NULL', p)["s"]
        return order_index.SegIndex(v["s"], v["v"], n * bins, null_seg=nul)

    return order_index.get(con, ("pos", m, bins), build)


def _groups(c: pd.DataFrame, by: str | None) -> list[tuple]:
    """[(group value or None, cell ids)] in the SQL's order (by value, NULLs last); by=None:
    one group of every cell (possibly none)."""
    if not by:
        return [(None, c["cell"].to_numpy())]
    return [(k, g["cell"].to_numpy())
            for k, g in c.groupby(by, dropna=False, sort=True)]


def _qdtype(ix: order_index.SegIndex):
    return np.float32 if ix.dtype == np.float32 else np.float64


def _mean(ix, segs) -> float:
    n = int(ix.count(segs).sum())
    return float(ix.sums[segs].sum() / n) if n else np.nan


def _share(counts, n: int) -> float:
    return int(counts.sum()) / n if n else np.nan


def sparsity_summary(con, near_zero, high, metric, runs, sampled_from, correct,
                     by) -> pd.DataFrame:
    ix = cell_index(con, metric)
    groups = _groups(cells(con, runs, sampled_from, correct), by)
    qs = ix.quantiles([s for _, s in groups], [0.5, 0.95, 0.99])
    rows = []
    for (_, segs), q in zip(groups, qs, strict=True):
        n = int(ix.count(segs).sum())
        mx = ix.max(segs)
        rows.append((n, _share(ix.count_lt(segs, near_zero), n),
                     _share(ix.count_gt(segs, high), n), _mean(ix, segs),
                     *q, np.nan if mx is None else float(mx)))
    qt = _qdtype(ix)
    df = pd.DataFrame(rows, columns=["n_tokens", "share_near_zero", "share_high", "mean",
                                     "p50", "p95", "p99", "max"])
    df = df.astype({"n_tokens": "int64", "p50": qt, "p95": qt, "p99": qt})
    if by:
        df.insert(0, by, [k for k, _ in groups])
    return df


def position_profile(con, bins, metric, high, runs, sampled_from, correct,
                     by) -> pd.DataFrame:
    ix = pos_index(con, metric, bins)
    keys, segs_list, bin_ids = [], [], []
    for k, cs in _groups(cells(con, runs, sampled_from, correct), by):
        for b in range(bins):
            segs = cs * bins + b
            if (ix.count(segs) + ix.nulls[segs]).sum() > 0:  # the bin has rows
                keys.append(k)
                segs_list.append(segs)
                bin_ids.append(b)
    qs = ix.quantiles(segs_list, [0.5, 0.9])
    rows = []
    for segs in segs_list:
        n = int(ix.count(segs).sum())
        rows.append((_mean(ix, segs), int(ix.count_gt(segs, high).sum()) / n if n else np.nan,
                     n))
    qt = _qdtype(ix)
    df = pd.DataFrame({
        "bin_left": np.array(bin_ids, dtype=np.int64) / bins,
        "mean": pd.Series([r[0] for r in rows], dtype="float64"),
        "p50": pd.Series(qs[:, 0] if len(rows) else [], dtype=qt),
        "p90": pd.Series(qs[:, 1] if len(rows) else [], dtype=qt),
        "share_high": pd.Series([r[1] for r in rows], dtype="float64"),
        "n": pd.Series([r[2] for r in rows], dtype="int64")})
    df.insert(1, "bin_right", df["bin_left"] + 1.0 / bins)
    if by:
        df.insert(0, by, keys)
    return df


def run_stats(con, metric, runs, qs, near_zero=None, high=None, sampled_from=None,
              correct=None) -> pd.DataFrame:
    """Per run among the kept cells: run, n_rows (count(*)), n (count(metric)), q (list of
    quantile_cont at qs), mean, n_lt (metric < near_zero), n_gt (metric > high), n_top1,
    s_top1. Runs without kept rows are absent."""
    ix = cell_index(con, metric)
    c = cells(con, runs, sampled_from, correct)
    groups = _groups(c, "run")
    quant = ix.quantiles([s for _, s in groups], qs)
    out = []
    for (run, segs), q in zip(groups, quant, strict=True):
        g = c[c["run"] == run]
        out.append({"run": run, "n_rows": int(g["n_rows"].sum()),
                    "n": int(ix.count(segs).sum()), "q": list(q), "mean": _mean(ix, segs),
                    "n_lt": int(ix.count_lt(segs, near_zero).sum()) if near_zero is not None
                    else None,
                    "n_gt": int(ix.count_gt(segs, high).sum()) if high is not None else None,
                    "n_top1": int(g["n_top1"].sum()), "s_top1": int(g["s_top1"].sum())})
    return pd.DataFrame(out, columns=["run", "n_rows", "n", "q", "mean", "n_lt", "n_gt",
                                      "n_top1", "s_top1"])


def quantiles(con, metric, qs, runs=None, sampled_from=None, correct=None) -> list:
    """quantile_cont of `metric` at qs over the kept rows (NaN when there are none)."""
    ix = cell_index(con, metric)
    segs = cells(con, runs, sampled_from, correct)["cell"].to_numpy()
    return list(ix.quantiles([segs], qs)[0].astype(_qdtype(ix)))
