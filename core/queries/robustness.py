"""How much an answer depends on a choice the paper leaves open: queries that put a result
beside the same result under another reasonable choice.

  truncation_agreement  full js against js on top-p truncated distributions (js_top_p at the
                        run's nucleus, js_top_p90, js_top_p95): share above the threshold,
                        Spearman rank correlation with js, Jaccard overlap of the high sets
                        and of equal-size top-N sets
  evolution_overlap     the evolution's thresholded Jaccard with its size bound, and the
                        overlap of equal-size sets (each checkpoint's top-N by js, N = the
                        final checkpoint's high-set size)
  position_profile_abs  js against the absolute position in the response (tokens), beside
                        analyses.position_profile's relative one

Columns a run does not store (runs written before js_top_p90/js_top_p95 existed) are absent,
not errors: truncation_agreement reports them with stored = False. Every query takes
`sampled_from` as the analyses do (core/queries/sampler.py; default: tuned-sampled traces).
Results of the row-ranking queries are kept per connection on materialised connections (their
runs do not change). This module runs plain SQL over the views; it builds no index.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.metrics import TRUNCATED_JS
from core.queries import cis, order_index, sampler
from core.queries.sql import _filtered, _group, _metric, _order, _q, stored_columns
from core.store.run import Run

TRUNCATED = ("js_top_p", *TRUNCATED_JS)  # the truncated js columns, the run's own nucleus first


def _stored(con, run: str, col: str) -> bool:
    """Whether `run` has values in column `col` (a run written before the column existed
    has none, also when opened beside a run that has it)."""
    if col not in stored_columns(con):
        return False
    return bool(_q(con, f"SELECT count({col}) > 0 AS ok FROM (SELECT {col} FROM tok "
                   "WHERE run = $run LIMIT 1000)", {"run": run}).ok.iloc[0])


def run_of(con, run: str) -> Run | None:
    """The opened run `run` of the collection (None when it is not open)."""
    path = con.execute("SELECT path FROM runs WHERE run = ?", [str(run)]).fetchone()
    return Run.open(path[0]) if path else None


def nuclei(con, run: str) -> dict[str, float | None]:
    """{column: top_p} of the truncated js columns: js_top_p at the run's setting (its
    manifest's config js_top_p; None when the manifest does not say), the fixed ones."""
    me = run_of(con, run)
    own = me.js_top_p if me is not None else None
    return {"js_top_p": None if own is None else float(own), **TRUNCATED_JS}


def _cached(con, key: tuple, build) -> pd.DataFrame:
    if order_index.enabled(con):
        return order_index.get_lru(con, key, build).copy()
    return build()


def truncation_agreement(con, run: str, high=0.1, sampled_from=None, correct=None,
                         by=None) -> pd.DataFrame:
    """[sampled_from (split only),] metric, top_p, stored, n, n_high, share_high, spearman,
    jaccard_high, top_n, jaccard_top_n: one row for js (the reference: top_p 1) and one per
    truncated js column (TRUNCATED), over the rows of `run` that have both values.

    share_high: share of rows with metric > high; spearman: rank correlation with js
    (Pearson on average ranks: tied values, e.g. the many exact zeros of truncated js, share
    their mean rank); jaccard_high: |A & B| / |A | B| of the high sets A = {js > high},
    B = {metric > high}; jaccard_top_n: the same for equal-size sets, each column's top_n
    rows by value (top_n = |A|; ties at the cut broken by trace_id, pos). A column the run
    does not store has stored = False and NULL values. by: None or "sampled_from" (the same
    as sampled_from="split"). share_high and jaccard_high carry prompt-clustered intervals
    (_lo, _hi; core/queries/cis.py)."""
    run = str(run)
    if by not in (None, "sampled_from"):
        raise ValueError(f"by must be None or 'sampled_from' for one run, got {by!r}")
    filt, by = sampler.apply(con, [run], sampled_from, by)
    key = ("truncation_agreement", run, float(high), repr(filt), by, correct)
    return _cached(con, key, lambda: _truncation(con, run, high, filt, by, correct))


def _truncation(con, run, high, filt, by, correct) -> pd.DataFrame:
    g = _group(by)
    part = f"PARTITION BY {by} " if by else ""
    base, p = _filtered([run], filt, correct)
    tops = nuclei(con, run)
    ids = [by] if by else []
    parts = []
    for col in ("js", *TRUNCATED):
        if col != "js" and not _stored(con, run, col):
            parts.append(pd.DataFrame({"metric": [col], "stored": [False]}))
            continue
        m = _metric(col)
        sql = f"""WITH d AS (SELECT {g}trace_id, pos, js AS a, {m} AS b FROM ({base})
            WHERE js IS NOT NULL AND {m} IS NOT NULL),
          r AS (SELECT *,
            rank() OVER ({part}ORDER BY a)
              + (count(*) OVER (PARTITION BY {g}a) - 1) / 2.0 AS ra,
            rank() OVER ({part}ORDER BY b)
              + (count(*) OVER (PARTITION BY {g}b) - 1) / 2.0 AS rb,
            row_number() OVER ({part}ORDER BY a DESC, trace_id, pos) AS na,
            row_number() OVER ({part}ORDER BY b DESC, trace_id, pos) AS nb,
            sum((a > $hi)::BIGINT) OVER ({part}) AS top_n
            FROM d)
          SELECT {g}count(*) AS n, count(*) FILTER (WHERE b > $hi) AS n_high,
            avg((b > $hi)::DOUBLE) AS share_high, corr(ra, rb) AS spearman,
            count(*) FILTER (WHERE a > $hi AND b > $hi) AS i_high,
            count(*) FILTER (WHERE a > $hi OR b > $hi) AS u_high,
            any_value(top_n) AS top_n,
            count(*) FILTER (WHERE na <= top_n AND nb <= top_n) AS i_top
          FROM r GROUP BY ALL {_order(by)}"""
        df = _q(con, sql, {**p, "hi": float(high)})
        if col == "js":  # identical columns: no rounding in the ranks, exactly 1
            df["spearman"] = np.where(df["n"] > 1, 1.0, np.nan)
        df["jaccard_high"] = df["i_high"] / df["u_high"].where(df["u_high"] > 0)
        df["jaccard_top_n"] = df["i_top"] / (2 * df["top_n"] - df["i_top"]).where(
            df["top_n"] > 0)
        parts.append(df.drop(columns=["i_high", "u_high", "i_top"])
                     .assign(metric=col, stored=True))
    out = pd.concat(parts, ignore_index=True)
    out["top_p"] = out["metric"].map({"js": 1.0, **tops})
    stored = set(out.loc[out["stored"].astype(bool), "metric"])
    out = cis.truncation(con, out, run, high, filt, by, correct, stored)
    cols = ids + ["metric", "top_p", "stored", "n", "n_high", "share_high", "share_high_lo",
                  "share_high_hi", "spearman", "jaccard_high", "jaccard_high_lo",
                  "jaccard_high_hi", "top_n", "jaccard_top_n"]
    out = out.reindex(columns=cols)
    for c in ("n", "n_high", "top_n"):
        out[c] = out[c].astype("Int64")
    return out


def evolution_overlap(con, series_runs: list[str], high=0.1, sampled_from=None,
                      correct=None) -> pd.DataFrame:
    """[sampled_from (split only),] run, step, n_high, n_final, jaccard_final,
    jaccard_bound, top_n, jaccard_top_n(_lo, _hi) per checkpoint of `series_runs` (oldest first, the
    last = final), each on the traces `sampled_from` chooses (default: tuned-sampled).

    jaccard_final: Jaccard of the run's high set (positions trace_id, pos with js > high)
    with the final run's, as analyses.evolution; jaccard_bound = min(n_high, n_final) /
    max(n_high, n_final), the largest Jaccard two sets of these sizes can have (one inside
    the other): a checkpoint with fewer high tokens cannot reach 1 however its set sits.
    jaccard_top_n: Jaccard of equal-size sets, each run's top_n positions by js (top_n =
    n_final; ties at the cut broken by trace_id, pos), which no size difference bounds, with
    its prompt-clustered interval jaccard_top_n_lo/hi (cis.evolution_top_n). Positions are
    compared as (trace_id, pos): meaningful when the checkpoints scored the same traces (a
    series run's default); NULL overlaps for a checkpoint that sampled its own (as
    analyses.evolution)."""
    series_runs = [str(r) for r in series_runs]
    if not series_runs:
        raise ValueError("series_runs is empty")
    if sampler.check(sampled_from) != sampler.SPLIT:  # the traces analyses.evolution uses
        filt = sampler.row_filter(sampler.labels_kept(con, series_runs, sampled_from))
        key = ("evolution_overlap", tuple(series_runs), float(high), repr(filt), correct)
        return _cached(con, key, lambda: _overlap(con, series_runs, high, filt, correct))
    counts = sampler.trace_counts(con, series_runs)
    parts = [evolution_overlap(con, series_runs, high, s, correct).assign(sampled_from=s)
             for s in sampler.SOURCES
             if any(sampler.label_for(c, s) for c in counts.values())]
    cols = ["sampled_from", *_OVERLAP_COLS]
    return (pd.concat(parts, ignore_index=True)[cols] if parts
            else pd.DataFrame(columns=cols))


_OVERLAP_COLS = ["run", "step", "n_high", "n_final", "jaccard_final", "jaccard_bound",
                 "top_n", "jaccard_top_n", "jaccard_top_n_lo", "jaccard_top_n_hi"]


def _overlap(con, series_runs, high, filt, correct) -> pd.DataFrame:
    base, p = _filtered(series_runs, filt, correct)
    last = series_runs[-1]
    p = {**p, "hi": float(high), "last": last}
    n_final = int(_q(con, f"SELECT count(*) AS n FROM ({base}) WHERE run = $last "
                          "AND js > $hi", p).n.iloc[0])
    # each run's top n_final rows: one top-N (heap) per run, not a sort of every row
    tops = "\nUNION ALL\n".join(
        f"(SELECT run, trace_id, pos FROM ({base}) WHERE run = $r{i} AND js IS NOT NULL "
        f"ORDER BY js DESC, trace_id, pos LIMIT {n_final})" for i in range(len(series_runs)))
    sql = f"""WITH f AS ({base}),
      h AS (SELECT run, trace_id, pos FROM f WHERE js > $hi),
      hfin AS (SELECT trace_id, pos FROM h WHERE run = $last),
      t AS ({tops}),
      tfin AS (SELECT trace_id, pos FROM t WHERE run = $last),
      hs AS (SELECT h.run, count(*) AS n_high, count(hfin.pos) AS i_high
             FROM h LEFT JOIN hfin USING (trace_id, pos) GROUP BY h.run),
      ts AS (SELECT t.run, count(*) AS n_top, count(tfin.pos) AS i_top
             FROM t LEFT JOIN tfin USING (trace_id, pos) GROUP BY t.run)
      SELECT r.run, r.series_step, r.series_sampling = 'own' AND r.run <> $last AS own,
        coalesce(hs.n_high, 0) AS n_high,
        coalesce(hs.i_high, 0) AS i_high, coalesce(ts.n_top, 0) AS n_top,
        coalesce(ts.i_top, 0) AS i_top
      FROM runs r LEFT JOIN hs USING (run) LEFT JOIN ts USING (run)
      WHERE list_contains($f_runs::VARCHAR[], r.run)"""
    params = {**p, "f_runs": series_runs,
              **{f"r{i}": r for i, r in enumerate(series_runs)}}
    df = _q(con, sql, params)
    order = {r: k for k, r in enumerate(series_runs)}
    df = df.assign(_o=df["run"].map(order)).sort_values("_o").reset_index(drop=True)
    df["step"] = [int(s) if pd.notna(s) else int(o)
                  for s, o in zip(df["series_step"], df["_o"], strict=True)]
    df["n_final"] = n_final
    lo, hi = np.minimum(df.n_high, n_final), np.maximum(df.n_high, n_final)
    df["jaccard_final"] = df.i_high / (df.n_high + n_final - df.i_high).where(
        df.n_high + n_final - df.i_high > 0)
    df["jaccard_bound"] = lo / hi.where(hi > 0)
    fin_top = int(df.loc[df.run == last, "n_top"].sum())
    df["top_n"] = n_final
    df["jaccard_top_n"] = df.i_top / (df.n_top + fin_top - df.i_top).where(
        df.n_top + fin_top - df.i_top > 0)
    # a checkpoint that sampled its own traces (--series-sampling own): its positions are
    # not the final's, so no overlap (its bound, from the set sizes alone, stays)
    df.loc[df.own.fillna(False).astype(bool), ["jaccard_final", "jaccard_top_n"]] = np.nan
    df = df.astype({"jaccard_final": float, "jaccard_bound": float, "jaccard_top_n": float})
    return cis.evolution_top_n(con, df, series_runs, filt, correct)[_OVERLAP_COLS]


def position_profile_abs(con, bins=20, width=None, metric="js", high=0.1, runs=None,
                         sampled_from=None, correct=None, by=None) -> pd.DataFrame:
    """[by,] bin_left, bin_right (token positions: bin_left <= pos < bin_right), mean, p50,
    p90, share_high (> high), n per bin of the absolute position in the response (non-empty
    bins only): analyses.position_profile on `pos` instead of pos / length. `width` tokens per
    bin (default: the positions seen, 0 .. the largest, in `bins` equal bins of whole
    tokens). Late bins hold only the long traces: `n` says how many tokens each mean rests
    on."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    m, g = _metric(metric, con), _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    if width is None:
        top = _q(con, f"SELECT max(pos) AS m FROM ({base})", p).m.iloc[0]
        top = 0 if top is None or top != top else int(top)
        width = max(1, math.ceil((top + 1) / bins))
    width = int(width)
    if width < 1:
        raise ValueError(f"width must be at least one token, got {width}")
    sql = f"""WITH f AS ({base}) SELECT {g}(pos // $w)::BIGINT AS bin,
        avg({m}) AS mean, quantile_cont({m}, [0.5, 0.9]) AS q,
        avg(({m} > $hi)::DOUBLE) AS share_high, count({m}) AS n
      FROM f WHERE pos IS NOT NULL AND {m} IS NOT NULL GROUP BY ALL {_order(by, 'bin')}"""
    sql = f"""SELECT * EXCLUDE (q, share_high, n), q[1] AS p50, q[2] AS p90, share_high, n
      FROM ({sql}) {_order(by, 'bin')}"""
    df = _q(con, sql, {**p, "hi": float(high), "w": width})
    at = 1 if by else 0
    df.insert(at, "bin_left", df.pop("bin") * width)
    df.insert(at + 1, "bin_right", df["bin_left"] + width)
    return df
