"""The paper's analysis 5, probability-mass reallocation (docs/paper.md), and the URIAL
categories, as queries over the `tok` view: how much the two models' top-k lists overlap
(`topk_overlap`), where the tuned model's top-1 sat under the base model (`reallocation`,
`tuned_top1_base_rank_hist`), and how the sampled token ranked under the base model
(`urial_categories`). SQL on lazy connections, the per-cell sums of aggregated.py on
materialised ones, prompt-clustered intervals from cis.py. The distribution analyses
(sparsity, entropy, position, token identity, contrast) are analyses.py's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.queries import aggregated, cis, indexed, sampler
from core.queries.sql import KOV, SUBSET_ALL, SUBSET_HIGH, _filtered, _group, _order, _q


def topk_overlap(con, threshold=0.1, k_max=10, runs=None, sampled_from=None, correct=None,
                 by=None) -> pd.DataFrame:
    """[by,] subset ("js>threshold" / "all"), k, overlap (mean |top-k base & top-k tuned| / k),
    n, for k = 1..k_max (k beyond a row's stored list length is skipped), with
    prompt-clustered intervals overlap_lo/hi (k <= KOV; NULL beyond)."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    if 1 <= k_max <= KOV:  # the per-row overlap sizes precomputed in tokx: one pass
        df = _topk_overlap_tokx(con, threshold, int(k_max), runs, sampled_from, correct, by)
    else:
        df = _topk_overlap_sql(con, threshold, k_max, runs, sampled_from, correct, by)
    return cis.topk(con, df, threshold, k_max, runs, sampled_from, correct, by)


def _topk_overlap_sql(con, threshold, k_max, runs, sampled_from, correct, by):
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}),
      o AS (SELECT {g}f.js, r.k, len(list_intersect(list_slice(k.base_ids, 1, r.k),
              list_slice(k.tuned_ids, 1, r.k))) / r.k AS ov
            FROM f JOIN topk k USING (run, trace_id, pos), range(1, $kmax + 1) r(k)
            WHERE r.k <= len(k.base_ids) AND r.k <= len(k.tuned_ids))
      SELECT {g}k, avg(ov) FILTER (WHERE js > $thr) AS o_high,
        count(*) FILTER (WHERE js > $thr) AS n_high, avg(ov) AS o_all, count(*) AS n_all
      FROM o GROUP BY ALL"""
    wide = _q(con, sql, {**p, "thr": threshold, "kmax": k_max})
    ids = [by] if by else []
    df = pd.concat([wide[ids + ["k", o, n]].set_axis(ids + ["k", "overlap", "n"], axis=1)
                    .assign(subset=label, _s=i)
                    for i, (label, o, n) in enumerate([(SUBSET_HIGH, "o_high", "n_high"),
                                                      (SUBSET_ALL, "o_all", "n_all")])])
    df = df[df["n"] > 0].sort_values(ids + ["_s", "k"]).reset_index(drop=True)
    return df[ids + ["subset", "k", "overlap", "n"]]


def _topk_overlap_tokx(con, threshold, k_max, runs, sampled_from, correct, by) -> pd.DataFrame:
    """topk_overlap for k_max <= KOV from tokx.k_ovK (= the same list_intersect sizes): one
    grouped pass of integer sums by (js > threshold, stored list length), combined here;
    overlap = sum of sizes / k / n (the mean of size / k, up to float rounding)."""
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct, src="tokx")
    sums = ", ".join(f"sum(k_ov{k})::BIGINT AS s{k}" for k in range(1, k_max + 1))
    if indexed.active(con):
        # only the rows above the threshold are read; the sums over all rows come from the
        # per-cell table built at open (cell_kov), and "not high" = all - high, exactly
        cols = ["c"] + [f"s{k}" for k in range(1, k_max + 1)]
        high = aggregated.topk_overlap_high(con, threshold, k_max, runs, sampled_from, correct,
                                            by)
        cs, cp = _filtered(runs, sampled_from, correct, src="cells")
        csums = ", ".join(f"sum(k.s{k})::BIGINT AS s{k}" for k in range(1, k_max + 1))
        allw = _q(con, f"""SELECT {g}least(k.kn, {k_max}) AS kn, sum(k.c)::BIGINT AS c, {csums}
          FROM ({cs}) JOIN cell_kov k USING (cell) GROUP BY ALL""", cp)
        keys = ([by] if by else []) + ["kn"]
        rest = (allw.set_index(keys)[cols]
                .sub(high.set_index(keys)[cols].reindex(allw.set_index(keys).index,
                                                        fill_value=0))
                .reset_index())
        w = pd.concat([high.assign(hi=True), rest.assign(hi=False)], ignore_index=True)
        w = w[w["c"] > 0]
    else:
        sql = f"""WITH f AS ({base}) SELECT {g}coalesce(js > $thr, FALSE) AS hi,
            least(k_n, {k_max}) AS kn, count(*) AS c, {sums}
          FROM f WHERE k_has AND k_n >= 1 GROUP BY ALL"""
        w = _q(con, sql, {**p, "thr": threshold})
    ids = [by] if by else []
    ks = np.arange(1, k_max + 1)
    parts = []
    for i, (label, sub) in enumerate([(SUBSET_HIGH, w[w["hi"].astype(bool)]),
                                      (SUBSET_ALL, w)]):
        # per group and k: rows whose stored lists reach k (kn >= k) give c and s_k
        if ids:
            inv, keys = pd.factorize(sub[by], use_na_sentinel=False)
        else:
            inv, keys = np.zeros(len(sub), dtype=np.int64), [None]
        reach = sub["kn"].to_numpy()[:, None] >= ks[None, :]
        n = np.zeros((len(keys), k_max), dtype=np.int64)
        s = np.zeros((len(keys), k_max), dtype=np.int64)
        np.add.at(n, inv, reach * sub["c"].to_numpy(dtype=np.int64)[:, None])
        np.add.at(s, inv, reach * sub[[f"s{k}" for k in ks]].to_numpy(dtype=np.int64))
        part = pd.DataFrame({"k": np.tile(ks, len(keys)).astype(np.int64),
                             "overlap": (s / ks[None, :] / np.maximum(n, 1)).ravel(),
                             "n": n.ravel(), "subset": label, "_s": i})
        if ids:
            part.insert(0, by, np.repeat(np.asarray(keys, dtype=object), k_max))
        parts.append(part)
    df = pd.concat(parts)
    df = df[df["n"] > 0].sort_values(ids + ["_s", "k"]).reset_index(drop=True)
    return df[ids + ["subset", "k", "overlap", "n"]]


def _by_subset(wide: pd.DataFrame, ids: list[str], cols: dict) -> pd.DataFrame:
    """Long frame [ids..,] subset, <cols> from a wide one whose columns are named
    `<col>_high` / `<col>_all`, rows ordered by ids, then subset (high first)."""
    parts = [wide[ids + [f"{c}_{sfx}" for c in cols]]
             .set_axis(ids + list(cols), axis=1).assign(subset=label, _s=i)
             for i, (label, sfx) in enumerate([(SUBSET_HIGH, "high"), (SUBSET_ALL, "all")])]
    df = pd.concat(parts, ignore_index=True)
    df = df[df["n"] > 0].sort_values(ids + ["_s"], kind="stable", na_position="last")
    return df[ids + ["subset"] + list(cols)].astype(cols).reset_index(drop=True)


def reallocation(con, threshold=0.1, low_prob=0.01, runs=None, sampled_from=None,
                 correct=None, by=None) -> pd.DataFrame:
    """[by,] subset, share_same_top1 (tuned top-1 is base top-1), share_in_base_top3,
    share_low_prob (base prob of tuned top-1 < low_prob), n."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct, src="tokx")
    aggs = {"share_same_top1": "avg((k_r = 1)::DOUBLE)", "share_in_base_top3":
            "avg((k_r <= 3)::DOUBLE)", "share_low_prob": "avg((k_pb < $low)::DOUBLE)",
            "n": "count(*)"}
    sel = ", ".join(f"{a} FILTER (WHERE js > $thr) AS {c}_high, {a} AS {c}_all"
                    for c, a in aggs.items())
    sql = f"WITH f AS ({base}) SELECT {g}{sel} FROM f WHERE k_has GROUP BY ALL"
    wide = (aggregated.reallocation_wide(con, threshold, low_prob, runs, sampled_from, correct,
                                         by) if indexed.active(con) else
            _q(con, sql, {**p, "thr": threshold, "low": low_prob}))
    return _by_subset(wide, [by] if by else [], {c: "float64" for c in aggs} | {"n": "int64"})


def tuned_top1_base_rank_hist(con, threshold=0.1, max_rank=10, runs=None, sampled_from=None,
                              correct=None, by=None) -> pd.DataFrame:
    """[by,] subset, rank (1..max_rank, max_rank + 1 = overflow), bucket ("1".., ">10"), n,
    share (within subset) of the tuned top-1's rank under the base model (present ranks only)."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct, src="tokx")
    sql = f"""WITH f AS ({base}) SELECT {g}least(k_r, $mr + 1) AS rank,
        count(*) FILTER (WHERE js > $thr) AS n_high, count(*) AS n_all
      FROM f WHERE k_has AND k_r > 0 GROUP BY ALL"""
    wide = (aggregated.rank_hist_wide(con, threshold, max_rank, runs, sampled_from, correct, by)
            if indexed.active(con) else _q(con, sql, {**p, "thr": threshold, "mr": max_rank}))
    ids = [by] if by else []
    df = _by_subset(wide, ids + ["rank"], {"n": "int64"})
    df = df.sort_values(ids + ["subset", "rank"], key=lambda c: c.map(
        {SUBSET_HIGH: 0, SUBSET_ALL: 1}) if c.name == "subset" else c,
        kind="stable", na_position="last").reset_index(drop=True)
    df = df[ids + ["subset", "rank", "n"]]
    tot = df.groupby(ids + ["subset"], dropna=False, sort=False)["n"].transform("sum")
    df["share"] = df["n"] / tot
    df.insert(df.columns.get_loc("rank") + 1, "bucket",
              [str(r) if r <= max_rank else f">{max_rank}" for r in df["rank"]])
    return df


URIAL_CATEGORIES = ("unshifted", "marginal", "shifted")


def urial_categories(con, runs=None, sampled_from=None, correct=None,
                     by=None) -> pd.DataFrame:
    """[by,] category (unshifted: rank_base 1, marginal: 2-3, shifted: > 3), n, share."""
    sampled_from, by = sampler.apply(con, runs, sampled_from, by)
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}) SELECT {g}
        count(*) FILTER (WHERE rank_base = 1) AS unshifted,
        count(*) FILTER (WHERE rank_base BETWEEN 2 AND 3) AS marginal,
        count(*) FILTER (WHERE rank_base > 3) AS shifted
      FROM f WHERE rank_base IS NOT NULL GROUP BY ALL {_order(by)}"""
    wide = (aggregated.urial_wide(con, runs, sampled_from, correct, by)
            if indexed.active(con) else _q(con, sql, p))
    ids = [by] if by else []
    df = wide.melt(id_vars=ids, value_vars=list(URIAL_CATEGORIES), var_name="category",
                   value_name="n")
    df["category"] = pd.Categorical(df["category"], URIAL_CATEGORIES, ordered=True)
    df = df.sort_values(ids + ["category"], kind="stable").reset_index(drop=True)
    total = df.groupby(by, dropna=False)["n"].transform("sum") if by else df["n"].sum()
    df["share"] = df["n"] / np.maximum(total, 1)
    df["category"] = df["category"].astype(str)
    return df
