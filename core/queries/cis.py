"""The intervals each headline query returns: which per-prompt sums a query's numbers are
ratios of, and which columns they become (`<col>_lo`, `<col>_hi`, n_prompts).

The bootstrap itself (prompt clusters, seed, number of resamples, percentile interval) is
core/queries/intervals.py; this module only says, per query, what is resampled. It computes
no point estimate: the queries' own values are left exactly as they were. One grouped SQL
pass over the rows per call (on lazy and materialised connections alike, so both paths
return the same intervals).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.queries import intervals as I
from core.queries.sql import KOV, SUBSET_ALL, SUBSET_HIGH, _bin


def sparsity(con, df, m, near_zero, high, runs, sampled_from, correct, by) -> pd.DataFrame:
    """sparsity_summary + share_near_zero_lo/hi, share_high_lo/hi, mean_lo/hi, n_prompts."""
    keys = [by] if by else []
    sums = I.prompt_sums(con, {"n": f"count({m})", "nz": f"count(*) FILTER (WHERE {m} < $nz)",
                               "h": f"count(*) FILTER (WHERE {m} > $hi)",
                               "s": f"sum({m}::DOUBLE)"},
                         {by: by} if by else None, runs, sampled_from, correct,
                         params={"nz": near_zero, "hi": high})
    return I.attach(df, sums, keys, ["n", "nz", "h", "s"],
                    {"share_near_zero": ("nz", "n"), "share_high": ("h", "n"),
                     "mean": ("s", "n")})


def headline(con, df, near_zero, high, runs, sampled_from) -> pd.DataFrame:
    """headline + share_near_zero_lo/hi, share_high_lo/hi, n_prompts per run (js)."""
    sums = I.prompt_sums(con, {"n": "count(js)", "nz": "count(*) FILTER (WHERE js < $nz)",
                               "h": "count(*) FILTER (WHERE js > $hi)"},
                         {"run": "run"}, runs, sampled_from, params={"nz": near_zero,
                                                                     "hi": high})
    return I.attach(df, sums, ["run"], ["n", "nz", "h"],
                    {"share_near_zero": ("nz", "n"), "share_high": ("h", "n")})


def contrast_ratio(con, df, run_a, run_b, m, near_zero, high, sampled_from,
                   correct) -> pd.DataFrame:
    """contrast's frame + high_ratio, high_ratio_lo/hi (share_high of run_a / run_b) and
    near_zero_ratio.. on run_a's row: both runs resampled by the same prompt draws."""
    sums = I.prompt_sums(con, {"n": f"count({m})", "nz": f"count(*) FILTER (WHERE {m} < $nz)",
                               "h": f"count(*) FILTER (WHERE {m} > $hi)"},
                         {"run": "run"}, [run_a, run_b], sampled_from, correct,
                         params={"nz": near_zero, "hi": high})
    t = I.Table(sums, ["run"], ["n", "nz", "h"])
    a, b = t.index_of(run=run_a), t.index_of(run=run_b)
    df = df.copy()
    at = df.index[df["run"] == run_a]
    for name, num in (("high_ratio", "h"), ("near_zero_ratio", "nz")):
        point, lo, hi = t.ratio_of_ratios(a, b, num, "n")
        df[name], df[f"{name}_lo"], df[f"{name}_hi"] = np.nan, np.nan, np.nan
        df.loc[at, [name, f"{name}_lo", f"{name}_hi"]] = [point, lo, hi]
    return df


EVOLUTION_COLS = ["share_high", "share_high_lo", "share_high_hi", "diff_final",
                  "diff_final_lo", "diff_final_hi", "jaccard_final_lo", "jaccard_final_hi"]


def evolution(con, df, series_runs, high, sampled_from, correct) -> pd.DataFrame:
    """evolution + share_high (js > high), its interval, diff_final (share_high minus the
    final's) with its interval, jaccard_final_lo/hi."""
    last = series_runs[-1]
    join = """LEFT JOIN (SELECT trace_id AS _ft, pos AS _fp FROM f
        WHERE run = $last AND js > $hi) fin ON f.trace_id = fin._ft AND f.pos = fin._fp
        AND f.js > $hi"""
    sums = I.prompt_sums(con, {"n": "count(js)", "h": "count(*) FILTER (WHERE js > $hi)",
                               "i": "count(fin._fp)"}, {"run": "run"}, series_runs,
                         sampled_from, correct, params={"hi": high, "last": last}, join=join)
    t = I.Table(sums, ["run"], ["n", "h", "i"])
    fin = t.index_of(run=last)
    df = df.copy()
    cols: dict = {c: [] for c in EVOLUTION_COLS}
    for run, jac in zip(df["run"], df["jaccard_final"], strict=True):
        g = t.index_of(run=run)
        share = t.group_ratio(g, "h", "n")
        lo, hi = I.percentile(t.group_ratio_reps(g, "h", "n")[:, None])
        d = t.difference(g, fin, "h", "n")
        inter = t.reps_of(g, "i")
        union = t.reps_of(g, "h") + t.reps_of(fin, "h") - inter
        jl, jh = I.percentile(I._ratio(inter, union)[:, None])
        own = pd.isna(jac)  # no overlap for a checkpoint that sampled its own traces
        for c, v in zip(cols, (share, lo[0], hi[0], *d, np.nan if own else jl[0],
                               np.nan if own else jh[0]), strict=True):
            cols[c].append(v)
    for c, v in cols.items():
        df[c] = np.asarray(v, dtype=float)
    return df


def evolution_top_n(con, df, series_runs, filt, correct) -> pd.DataFrame:
    """evolution_overlap's frame + jaccard_top_n_lo/hi: the Jaccard of each checkpoint's
    top-N positions by js with the final's top-N (N = df.top_n), the sets held as the full
    data chose them (the cut is not re-chosen per replicate) and their per-prompt sizes and
    intersections resampled jointly; NULL where jaccard_top_n is NULL."""
    df = df.copy()
    df["jaccard_top_n_lo"], df["jaccard_top_n_hi"] = np.nan, np.nan
    if df.empty or not int(df["top_n"].iloc[0]):
        return df
    n, last = int(df["top_n"].iloc[0]), series_runs[-1]
    tops = "\nUNION ALL\n".join(
        f"(SELECT run AS _tr, trace_id AS _tt, pos AS _tp FROM f WHERE run = $r{i} "
        f"AND js IS NOT NULL ORDER BY js DESC, trace_id, pos LIMIT {n})"
        for i in range(len(series_runs)))
    join = f"""LEFT JOIN ({tops}) t ON f.run = t._tr AND f.trace_id = t._tt AND f.pos = t._tp
        LEFT JOIN (SELECT trace_id AS _ft, pos AS _fp FROM f WHERE run = $last
          AND js IS NOT NULL ORDER BY js DESC, trace_id, pos LIMIT {n}) tf
          ON f.trace_id = tf._ft AND f.pos = tf._fp AND t._tp IS NOT NULL"""
    params = {"last": last, **{f"r{i}": r for i, r in enumerate(series_runs)}}
    sums = I.prompt_sums(con, {"n": "count(t._tp)", "i": "count(tf._fp)"}, {"run": "run"},
                         series_runs, filt, correct, params=params, join=join)
    t = I.Table(sums, ["run"], ["n", "i"])
    fin = t.index_of(run=last)
    for k, (run, jac) in enumerate(zip(df["run"], df["jaccard_top_n"], strict=True)):
        g = t.index_of(run=run)
        if pd.isna(jac) or g < 0:
            continue
        inter = t.reps_of(g, "i")
        lo, hi = I.percentile(I._ratio(inter, t.reps_of(g, "n") + t.reps_of(fin, "n")
                                       - inter)[:, None])
        df.loc[df.index[k], ["jaccard_top_n_lo", "jaccard_top_n_hi"]] = [lo[0], hi[0]]
    return df


def truncation(con, df, run, high, filt, by, correct, columns) -> pd.DataFrame:
    """truncation_agreement + share_high_lo/hi and jaccard_high_lo/hi per stored metric."""
    keys = [by] if by else []
    out = []
    for col in dict.fromkeys(df["metric"]):
        part = df[df["metric"] == col]
        if col not in columns:
            out.append(part)
            continue
        sums = I.prompt_sums(con, {
            "n": "count(*)", "b": f"count(*) FILTER (WHERE {col} > $hi)",
            "i": f"count(*) FILTER (WHERE js > $hi AND {col} > $hi)",
            "u": f"count(*) FILTER (WHERE js > $hi OR {col} > $hi)"},
            {by: by} if by else None, [run], filt, correct,
            where=f"js IS NOT NULL AND {col} IS NOT NULL", params={"hi": high})
        out.append(I.attach(part, sums, keys, ["n", "b", "i", "u"],
                            {"share_high": ("b", "n"), "jaccard_high": ("i", "u")})
                   .drop(columns="n_prompts"))
    return pd.concat(out, ignore_index=True)


def topk(con, df, threshold, k_max, runs, sampled_from, correct, by) -> pd.DataFrame:
    """topk_overlap + overlap_lo/hi (k <= KOV: the per-row overlap sizes stored; NULL
    beyond)."""
    keys = [by] if by else []
    kk = range(1, min(int(k_max), KOV) + 1)
    aggs = {}
    for k in kk:
        aggs[f"sa{k}"] = f"sum(k_ov{k}) FILTER (WHERE k_n >= {k})"
        aggs[f"ca{k}"] = f"count(*) FILTER (WHERE k_n >= {k})"
        aggs[f"sh{k}"] = f"sum(k_ov{k}) FILTER (WHERE k_n >= {k} AND js > $thr)"
        aggs[f"ch{k}"] = f"count(*) FILTER (WHERE k_n >= {k} AND js > $thr)"
    df = df.copy()
    df["overlap_lo"], df["overlap_hi"] = np.nan, np.nan
    if not aggs:
        return df
    sums = I.prompt_sums(con, aggs, {by: by} if by else None, runs, sampled_from, correct,
                         where="k_has AND k_n >= 1", params={"thr": threshold}, src="tokx")
    tables = {}  # each `by` group resampled on its own prompts
    for key, sub in (sums.groupby(keys, dropna=False, sort=False) if keys else [((), sums)]):
        key = key if isinstance(key, tuple) else (key,)
        tables[tuple(None if pd.isna(v) else v for v in key)] = I.Table(sub, [], list(aggs))
    sfx_of = {SUBSET_HIGH: "h", SUBSET_ALL: "a"}
    for i, row in df.iterrows():
        k, sfx = int(row["k"]), sfx_of.get(row["subset"])
        t = tables.get(tuple(None if pd.isna(row[c]) else row[c] for c in keys))
        if k > KOV or sfx is None or t is None:
            continue
        lo, hi = I.percentile(t.group_ratio_reps(0, f"s{sfx}{k}", f"c{sfx}{k}")[:, None] / k)
        df.loc[i, ["overlap_lo", "overlap_hi"]] = [lo[0], hi[0]]
    return df


def position(con, df, bins, m, high, runs, sampled_from, correct, by) -> pd.DataFrame:
    """position_profile + mean_lo/hi, share_high_lo/hi per rel_pos bin."""
    keys = [by] if by else []
    sums = I.prompt_sums(con, {"n": f"count({m})", "s": f"sum({m}::DOUBLE)",
                               "h": f"count(*) FILTER (WHERE {m} > $hi)"},
                         {**({by: by} if by else {}),
                          "bin": _bin("rel_pos", "r")}, runs, sampled_from, correct,
                         where="rel_pos IS NOT NULL",
                         params={"hi": high, "r_a": 0.0, "r_w": 1.0 / bins, "r_n": bins})
    df = df.copy()
    df["bin"] = np.rint(df["bin_left"] * bins).astype(int)
    out = I.attach(df, sums, keys, ["n", "s", "h"],
                   {"mean": ("s", "n"), "share_high": ("h", "n")}, inner=["bin"])
    return out.drop(columns=["bin", "n_prompts"])
