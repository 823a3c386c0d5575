"""The paper's analyses (docs/paper.md) 1-4 and 7 as queries over the `tok` view: sparsity,
entropy, position, token identity and contrast (5, reallocation, and the URIAL categories:
ranking.py; 6, the evolution over training steps: evolution.py). SQL on lazy connections, the
order-index paths of indexed.py on materialised ones; it does not open runs or build tables
(connection.py, materialize.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.queries import aggregated, cis, indexed, sampler
from core.queries.sql import (
    LN2,
    _bin,
    _fill_grid,
    _filtered,
    _group,
    _metric,
    _order,
    _q,
)


def sparsity_summary(con, near_zero=0.01, high=0.1, metric="js", runs=None,
                     sampled_from=None, correct=None, by=None) -> pd.DataFrame:
    """[by,] n_tokens, share_near_zero (< near_zero), share_high (> high), mean, p50, p95,
    p99, max of `metric` (NULL metric values are ignored), with prompt-clustered 95%
    intervals share_near_zero_lo/hi, share_high_lo/hi, mean_lo/hi and the n_prompts they
    resample (core/queries/intervals.py)."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    m, g = _metric(metric, con), _group(by)
    if indexed.active(con):
        df = indexed.sparsity_summary(con, near_zero, high, m, runs, sampled_from, correct, by)
    else:
        df = _sparsity_sql(con, near_zero, high, m, g, runs, sampled_from, correct, by)
    return cis.sparsity(con, df, m, near_zero, high, runs, sampled_from, correct, by)


def _sparsity_sql(con, near_zero, high, m, g, runs, sampled_from, correct, by):
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base})
      SELECT {g}count({m}) AS n_tokens,
        avg(({m} < $nz)::DOUBLE) AS share_near_zero, avg(({m} > $hi)::DOUBLE) AS share_high,
        avg({m}) AS mean, quantile_cont({m}, [0.5, 0.95, 0.99]) AS q, max({m})::DOUBLE AS max
      FROM f GROUP BY ALL {_order(by)}"""
    # one list quantile: a single selection pass instead of three (same exact values)
    sql = f"""SELECT * EXCLUDE (q, max), q[1] AS p50, q[2] AS p95, q[3] AS p99, max
      FROM ({sql}) {_order(by)}"""
    return _q(con, sql, {**p, "nz": near_zero, "hi": high})


def histogram(con, metric="js", bins=50, lo=None, hi=None, log=False, runs=None,
              sampled_from=None, correct=None, by=None) -> pd.DataFrame:
    """[by,] bin_left, bin_right, count, share, cdf. Range: [0, ln 2] for js (log: [1e-6,
    ln 2]), else the data's min..max (min positive value when log). Values outside the range
    are counted in the first/last bin, so shares sum to 1; log bins are geometric."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    m, g = _metric(metric, con), _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    if lo is None or hi is None:
        if m == "js":
            dlo, dhi = (1e-6 if log else 0.0), LN2
        elif indexed.active(con):
            dlo, dhi = aggregated.histogram_range(con, m, log, runs, sampled_from, correct)
        else:
            pos = f" FILTER (WHERE {m} > 0)" if log else ""
            dlo, dhi = con.execute(f"WITH f AS ({base}) SELECT min({m}){pos}::DOUBLE, "
                                   f"max({m})::DOUBLE FROM f", p).fetchall()[0]
        lo = (dlo if dlo is not None else 1e-6 if log else 0.0) if lo is None else lo
        hi = (dhi if dhi is not None else 1.0) if hi is None else hi
    if log and lo <= 0:
        raise ValueError("log bins need lo > 0")
    a, b = (math.log(lo), math.log(hi)) if log else (float(lo), float(hi))
    b = b if b > a else a + 1.0
    def x_of(col: str) -> str:
        return f"ln(greatest({col}, $lo))" if log else col

    hp = {"lo": float(lo), "h_a": a, "h_w": (b - a) / bins, "h_n": bins}
    if indexed.active(con):  # bins are ranges of the order index: no pass over the rows
        df = aggregated.histogram_counts(con, m, x_of, hp, bins, runs, sampled_from, correct,
                                         by)
    else:
        sql = f"""WITH f AS ({base}) SELECT {g}{_bin(x_of(m), 'h')} AS bin, count(*) AS count
          FROM f WHERE {m} IS NOT NULL GROUP BY ALL"""
        df = _q(con, sql, {**p, **hp})
    keys = ([by] if by else []) + ["bin"]
    df = _fill_grid(df, keys, [bins])
    edges = np.linspace(a, b, bins + 1)
    edges = np.exp(edges) if log else edges
    df["bin_left"], df["bin_right"] = edges[df["bin"]], edges[df["bin"] + 1]
    if by:
        total = df.groupby(by, dropna=False)["count"].transform("sum")
        df["share"] = df["count"] / np.maximum(total, 1)
        df["cdf"] = df.groupby(by, dropna=False)["share"].cumsum()
    else:
        df["share"] = df["count"] / max(df["count"].sum(), 1)
        df["cdf"] = df["share"].cumsum()
    return df[keys[:-1] + ["bin_left", "bin_right", "count", "share", "cdf"]]


def entropy_by_js_bin(con, edges=(0, 0.01, 0.05, 0.1, 0.2, 0.3, LN2 + 1e-6), runs=None,
                      sampled_from=None, correct=None, by=None) -> pd.DataFrame:
    """[by,] bin ("[lo, hi)"), lo, hi, n, mean_entropy_base, mean_entropy_tuned per js bin
    (edges strictly increasing; empty bins kept, n = 0)."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    _group(by)  # validates `by`
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be at least two strictly increasing numbers: {edges}")
    base, p = _filtered(runs, sampled_from, correct, src="tokx")
    # bin index by a CASE over the inner edges: one grouped pass (no range join)
    inner = ("CASE " + " ".join(f"WHEN js < $e{i} THEN {i - 1}" for i in range(1, len(edges) - 1))
             + f" ELSE {len(edges) - 2} END")
    if indexed.active(con):
        df = aggregated.entropy_by_js_bin(con, edges, inner, runs, sampled_from, correct, by)
        df.insert(1 if by else 0, "bin", [f"[{lo:.3g}, {hi:.3g})" for lo, hi in
                                          zip(df["lo"], df["hi"], strict=True)])
        return df
    gsel = f"gr.{by}, " if by else ""
    groups = f", (SELECT DISTINCT {by} FROM f) gr" if by else ""
    gjoin = f" AND a.{by} IS NOT DISTINCT FROM gr.{by}" if by else ""
    sql = f"""WITH f AS ({base}),
      b AS (SELECT e[i] AS lo, e[i + 1] AS hi, i - 1 AS i FROM (SELECT $edges::DOUBLE[] AS e),
            generate_series(1, len(e) - 1) g(i)),
      a AS (SELECT {_group(by)}{inner} AS i, count(js) AS n, avg(entropy_base) AS mb,
              avg(entropy_tuned) AS mt
            FROM f WHERE js >= $e0 AND js < $e{len(edges) - 1} GROUP BY ALL)
      SELECT {gsel}b.lo, b.hi, coalesce(a.n, 0) AS n, a.mb AS mean_entropy_base,
        a.mt AS mean_entropy_tuned
      FROM b{groups} LEFT JOIN a ON a.i = b.i{gjoin}
      ORDER BY {gsel}b.lo"""
    df = _q(con, sql, {**p, "edges": edges, **{f"e{i}": e for i, e in enumerate(edges)}})
    df.insert(1 if by else 0, "bin", [f"[{lo:.3g}, {hi:.3g})" for lo, hi in
                                      zip(df["lo"], df["hi"], strict=True)])
    return df


def js_entropy_hist2d(con, js_bins=30, entropy_bins=30, entropy="entropy_base",
                      entropy_max=None, runs=None, sampled_from=None, correct=None,
                      by=None) -> pd.DataFrame:
    """[by,] js_bin_left, entropy_bin_left, count: the full js x entropy grid (zeros
    included), js over [0, ln 2], entropy over [0, entropy_max or the data's max]."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    if entropy not in ("entropy_base", "entropy_tuned"):
        raise ValueError(f"entropy must be entropy_base or entropy_tuned, got {entropy!r}")
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    if entropy_max is None:
        emax = (aggregated.entropy_max(con, entropy, runs, sampled_from, correct)
                if indexed.active(con) else
                con.execute(f"WITH f AS ({base}) SELECT max({entropy})::DOUBLE FROM f",
                            p).fetchall()[0][0])
        entropy_max = emax if emax else 1.0
    jw, ew = LN2 / js_bins, entropy_max / entropy_bins
    gp = {"j_a": 0.0, "j_w": jw, "j_n": js_bins, "e_a": 0.0, "e_w": ew, "e_n": entropy_bins}
    if indexed.active(con):  # per-cell grid counts, one pass per grid
        df = aggregated.js_entropy_grid(con, entropy, gp, runs, sampled_from, correct, by)
    else:
        sql = f"""WITH f AS ({base}) SELECT {g}{_bin('js', 'j')} AS jb,
            {_bin(entropy, 'e')} AS eb, count(*) AS count
          FROM f WHERE js IS NOT NULL AND {entropy} IS NOT NULL GROUP BY ALL"""
        df = _q(con, sql, {**p, **gp})
    keys = ([by] if by else []) + ["jb", "eb"]
    df = _fill_grid(df, keys, [js_bins, entropy_bins])
    df["js_bin_left"], df["entropy_bin_left"] = df["jb"] * jw, df["eb"] * ew
    return df[keys[:-2] + ["js_bin_left", "entropy_bin_left", "count"]]


def position_profile(con, bins=20, metric="js", high=0.1, runs=None, sampled_from=None,
                     correct=None, by=None) -> pd.DataFrame:
    """[by,] bin_left, bin_right, mean, p50, p90, share_high (> high), n per rel_pos bin
    (non-empty bins only), with prompt-clustered intervals mean_lo/hi, share_high_lo/hi."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    m, g = _metric(metric, con), _group(by)
    if indexed.active(con):
        df = indexed.position_profile(con, bins, m, high, runs, sampled_from, correct, by)
    else:
        df = _position_sql(con, bins, m, g, high, runs, sampled_from, correct, by)
    return cis.position(con, df, bins, m, high, runs, sampled_from, correct, by)


def _position_sql(con, bins, m, g, high, runs, sampled_from, correct, by):
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}) SELECT {g}{_bin('rel_pos', 'r')} AS bin,
        avg({m}) AS mean, quantile_cont({m}, [0.5, 0.9]) AS q,
        avg(({m} > $hi)::DOUBLE) AS share_high, count({m}) AS n
      FROM f WHERE rel_pos IS NOT NULL GROUP BY ALL {_order(by, 'bin')}"""
    sql = f"""SELECT * EXCLUDE (q, share_high, n), q[1] AS p50, q[2] AS p90, share_high, n
      FROM ({sql}) {_order(by, 'bin')}"""
    df = _q(con, sql, {**p, "hi": high, "r_a": 0.0, "r_w": 1.0 / bins, "r_n": bins})
    at = 1 if by else 0
    df.insert(at, "bin_left", df.pop("bin") / bins)
    df.insert(at + 1, "bin_right", df["bin_left"] + 1.0 / bins)
    return df


def token_identity(con, high=0.1, min_count=5, limit=50, runs=None, sampled_from=None,
                   correct=None, by=None) -> pd.DataFrame:
    """[by,] token, n_total, n_high (js > high), n_low (the rest), share_high, mean_js for
    token strings seen >= min_count times with n_high > 0; top `limit` (per group) by n_high
    desc, then share_high desc."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    g = _group(by)
    part = f"PARTITION BY {by} " if by else ""
    if indexed.active(con) and aggregated.codes_ok(con):
        # per-cell counts by token code, summed over the kept cells; strings looked up last
        return aggregated.token_identity(con, high, min_count, limit, runs, sampled_from,
                                         correct, by)
    base, p = _filtered(runs, sampled_from, correct)
    f = f"""(SELECT {g}token, count(*) AS n_total,
        count(*) FILTER (WHERE js > $hi) AS n_high, avg(js) AS mean_js
      FROM ({base}) WHERE js IS NOT NULL GROUP BY ALL
      HAVING n_total >= $min_count AND n_high > 0)"""
    sql = f"""SELECT {g}token, n_total, n_high, n_total - n_high AS n_low,
        n_high / n_total AS share_high, mean_js FROM {f}
      QUALIFY row_number() OVER ({part}ORDER BY n_high DESC, share_high DESC, token) <= $lim
      {_order(by, 'n_high DESC', 'share_high DESC', 'token')}"""
    return _q(con, sql, {**p, "hi": high, "min_count": min_count, "lim": limit})


def contrast(con, run_a: str, run_b: str, near_zero=0.01, high=0.1, metric="js",
             sampled_from=None, correct=None) -> pd.DataFrame:
    """sparsity_summary of run_a and run_b, one row each (in that order), with a run column;
    like with like by default: each run on its own tuned model's samples (sampler.py).
    Run_a's row also has high_ratio (its share_high / run_b's) and near_zero_ratio with
    prompt-clustered intervals (_lo, _hi; both runs resampled by the same prompt draws).
    split: one row per run and sampler (run, sampled_from, ...), without the ratios."""
    if sampler.check(sampled_from) == sampler.SPLIT:
        parts = [sparsity_summary(con, near_zero, high, metric, runs=[r], correct=correct,
                                  sampled_from=sampler.SPLIT).assign(run=r)
                 for r in (run_a, run_b)]
        df = pd.concat(parts, ignore_index=True)
        df = df.iloc[sorted(range(len(df)), key=lambda i: (
            df["run"].iat[i] != run_a, sampler.label_rank(df["sampled_from"].iat[i])))]
        return df[["run"] + [c for c in df.columns if c != "run"]].reset_index(drop=True)
    df = sparsity_summary(con, near_zero, high, metric, runs=[run_a, run_b],
                          sampled_from=sampled_from, correct=correct, by="run")
    df = df.set_index("run").reindex([run_a, run_b]).reset_index()
    filt, _ = sampler.apply(con, [run_a, run_b], sampled_from, "run")
    return cis.contrast_ratio(con, df, run_a, run_b, _metric(metric, con), near_zero, high,
                              filt, correct)


def eps_for_budget(con, budgets, metric="js", runs=None, sampled_from=None) -> pd.DataFrame:
    """The js threshold that a share `budget` of the stored tokens (of the traces
    `sampled_from` chooses; default: tuned-sampled) exceeds, per budget:
    columns budget, eps (the (1 - budget) quantile of `metric`). A starting point for a
    cross-sampling sweep aimed at a token budget: the mixed prefixes of cross-sampling are
    not the stored traces, so the budget actually spent is measured by the sweep itself."""
    col = _metric(metric, con)
    sampled_from, by = sampler.apply(con, runs, sampled_from)
    if by:
        raise ValueError("eps_for_budget gives one eps per budget: choose sampled_from tuned, "
                         "base or pooled, not split")
    base, p = _filtered(runs, sampled_from)
    qs = [min(1.0, max(0.0, 1.0 - float(b))) for b in budgets]
    if indexed.active(con):
        got = indexed.quantiles(con, col, qs, runs, sampled_from)
        return pd.DataFrame({"budget": [float(b) for b in budgets], "eps": got})
    sql = f"SELECT quantile_cont({col}, $qs::DOUBLE[]) AS eps FROM ({base})"
    got = _q(con, sql, {**p, "qs": qs}).eps.iloc[0]
    return pd.DataFrame({"budget": [float(b) for b in budgets], "eps": list(got)})
