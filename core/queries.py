"""DuckDB query layer over one or several run folders (the analyses of ../shared/paper.md).

`open_runs` returns an in-memory connection with lazy views over the run tables:
  runs    run, kind, series_step, traces_from, path, idx   (a small table, from manifest.json)
  tokens  tokens.parquet rows of all runs + `run`
  topk    topk.parquet rows + `run`
  traces  traces.parquet rows + `run`
  tok     tokens + traces' correct, sampled_from, length, joined on (run, trace_id)

Every analysis takes the connection first and returns a pandas DataFrame. User values are
always DuckDB parameters; identifiers (metric names, grouping, sort columns) are whitelisted.
Shared filters: `runs` (run names), `sampled_from` ("tuned"/"base"), `correct` (bool) and
`by` (None, "run" or "sampled_from": adds that column as the leading grouping column).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from core.schema import (
    FLOAT_METRICS, INT_METRICS, MANIFEST_FILE, TOKENS_FILE, TOKENS_SCHEMA, TOPK_FILE,
    TOPK_SCHEMA, TRACES_FILE, TRACES_SCHEMA,
)

LN2 = math.log(2)
METRICS = tuple(FLOAT_METRICS + INT_METRICS)
BY_COLUMNS = (None, "run", "sampled_from")
SUBSET_HIGH, SUBSET_ALL = "js>threshold", "all"
TRACE_SORT = ("trace_id", "prompt_id", "correct", "length", "sampled_from",
              "max_js", "mean_js", "n_high")
_TABLES = {"tokens": (TOKENS_FILE, TOKENS_SCHEMA), "topk": (TOPK_FILE, TOPK_SCHEMA),
           "traces": (TRACES_FILE, TRACES_SCHEMA)}

# ----------------------------------------------------------------------------- opening


def table_files(run_dir: str | Path, name: str) -> list[Path]:
    """Parquet files of table `name` in a run folder: the file itself, the sorted *.parquet
    part files when it is a directory, or [] when absent."""
    p = Path(run_dir) / name
    if p.is_dir():
        return sorted(p.glob("*.parquet"))
    return [p] if p.is_file() else []


def _sql_str(s: str) -> str:
    """A SQL string literal (only used for file paths: table functions in views can't take
    parameters)."""
    return "'" + s.replace("'", "''") + "'"


def _manifest(run_dir: Path) -> dict:
    f = run_dir / MANIFEST_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def open_runs(run_dirs: list[str | Path]) -> duckdb.DuckDBPyConnection:
    """In-memory connection with views tokens/topk/traces/tok over all runs (see module doc)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE runs (idx INTEGER, run VARCHAR, kind VARCHAR, "
                "series_step INTEGER, traces_from VARCHAR, path VARCHAR)")
    dirs = [Path(d) for d in run_dirs]
    rows = []
    for i, d in enumerate(dirs):
        m = _manifest(d)
        rows.append((i, str(m.get("name") or d.name), m.get("kind"), m.get("series_step"),
                     m.get("traces_from"), str(d)))
    names = [r[1] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate run names: {names}")
    if rows:
        con.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)", rows)
    for view, (fname, schema) in _TABLES.items():
        parts = []
        for i, d in enumerate(dirs):
            files = table_files(d, fname)
            if files:
                lst = ", ".join(_sql_str(str(f.resolve())) for f in files)
                parts.append(f"SELECT t.*, r.run FROM read_parquet([{lst}], union_by_name = true)"
                             f" t, runs r WHERE r.idx = {int(i)}")
        if not parts:  # no run has this table: an empty view with the right columns
            con.register(f"_empty_{view}", schema.append(pa.field("run", pa.string()))
                         .empty_table())
            parts = [f"SELECT * FROM _empty_{view}"]
        con.execute(f"CREATE VIEW {view} AS " + "\nUNION ALL BY NAME\n".join(parts))
    con.execute("CREATE VIEW tok AS SELECT t.*, tr.correct, tr.sampled_from, tr.length "
                "FROM tokens t LEFT JOIN traces tr USING (run, trace_id)")
    return con


def list_runs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The opened runs: run, kind, series_step, traces_from, path (in open order)."""
    return con.execute("SELECT run, kind, series_step, traces_from, path FROM runs "
                       "ORDER BY idx").df()

# ----------------------------------------------------------------------------- helpers


def _metric(name: str) -> str:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; expected one of {METRICS}")
    return name


def _group(by: str | None) -> str:
    """'' or 'col, ' for a whitelisted grouping column."""
    if by not in BY_COLUMNS:
        raise ValueError(f"by must be one of {BY_COLUMNS}, got {by!r}")
    return f"{by}, " if by else ""


def _filtered(runs=None, sampled_from=None, correct=None) -> tuple[str, dict]:
    """SQL of the filtered `tok` rows (use as a CTE body) and its named parameters."""
    conds, params = ["TRUE"], {}
    if runs is not None:
        conds.append("list_contains($f_runs::VARCHAR[], run)")
        params["f_runs"] = [str(r) for r in runs]
    if sampled_from is not None:
        conds.append("sampled_from = $f_sampled_from")
        params["f_sampled_from"] = sampled_from
    if correct is not None:
        conds.append("correct = $f_correct")
        params["f_correct"] = bool(correct)
    return "SELECT * FROM tok WHERE " + " AND ".join(conds), params


def _q(con, sql: str, params: dict) -> pd.DataFrame:
    return con.execute(sql, params).df()


def _order(by: str | None, *cols: str) -> str:
    keys = ([by] if by else []) + list(cols)
    return "ORDER BY " + ", ".join(keys) if keys else ""


def _bin(col: str, p: str) -> str:
    """Bin index of `col` for params $p_a (left), $p_w (width), $p_n (bins), clamped."""
    return f"least(greatest(floor(({col} - ${p}_a) / ${p}_w), 0), ${p}_n - 1)::INTEGER"


def _fill_grid(df: pd.DataFrame, keys: list[str], sizes: list[int]) -> pd.DataFrame:
    """Reindex a count table on keys (group col first if any) to the full grid, zeros filled."""
    levels = [sorted(df[keys[0]].unique())] if len(keys) > len(sizes) else []
    levels += [range(n) for n in sizes]
    idx = pd.MultiIndex.from_product(levels, names=keys)
    return df.set_index(keys)["count"].reindex(idx, fill_value=0).reset_index()

# ----------------------------------------------------------------------------- analyses


def sparsity_summary(con, near_zero=0.01, high=0.1, metric="js", runs=None,
                     sampled_from=None, correct=None, by=None) -> pd.DataFrame:
    """[by,] n_tokens, share_near_zero (< near_zero), share_high (> high), mean, p50, p95,
    p99, max of `metric` (NULL metric values are ignored)."""
    m, g = _metric(metric), _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base})
      SELECT {g}count({m}) AS n_tokens,
        avg(({m} < $nz)::DOUBLE) AS share_near_zero, avg(({m} > $hi)::DOUBLE) AS share_high,
        avg({m}) AS mean, quantile_cont({m}, 0.5) AS p50, quantile_cont({m}, 0.95) AS p95,
        quantile_cont({m}, 0.99) AS p99, max({m})::DOUBLE AS max
      FROM f GROUP BY ALL {_order(by)}"""
    return _q(con, sql, {**p, "nz": near_zero, "hi": high})


def histogram(con, metric="js", bins=50, lo=None, hi=None, log=False, runs=None,
              sampled_from=None, correct=None, by=None) -> pd.DataFrame:
    """[by,] bin_left, bin_right, count, share, cdf. Range: [0, ln 2] for js (log: [1e-6,
    ln 2]), else the data's min..max (min positive value when log). Values outside the range
    are counted in the first/last bin, so shares sum to 1; log bins are geometric."""
    m, g = _metric(metric), _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    if lo is None or hi is None:
        if m == "js":
            dlo, dhi = (1e-6 if log else 0.0), LN2
        else:
            pos = f" FILTER (WHERE {m} > 0)" if log else ""
            dlo, dhi = con.execute(f"WITH f AS ({base}) SELECT min({m}){pos}::DOUBLE, "
                                   f"max({m})::DOUBLE FROM f", p).fetchone()
        lo = (dlo if dlo is not None else 1e-6 if log else 0.0) if lo is None else lo
        hi = (dhi if dhi is not None else 1.0) if hi is None else hi
    if log and lo <= 0:
        raise ValueError("log bins need lo > 0")
    a, b = (math.log(lo), math.log(hi)) if log else (float(lo), float(hi))
    b = b if b > a else a + 1.0
    x = f"ln(greatest({m}, $lo))" if log else m
    sql = f"""WITH f AS ({base}) SELECT {g}{_bin(x, 'h')} AS bin, count(*) AS count
      FROM f WHERE {m} IS NOT NULL GROUP BY ALL"""
    df = _q(con, sql, {**p, "lo": float(lo), "h_a": a, "h_w": (b - a) / bins, "h_n": bins})
    keys = ([by] if by else []) + ["bin"]
    df = _fill_grid(df, keys, [bins])
    edges = np.linspace(a, b, bins + 1)
    edges = np.exp(edges) if log else edges
    df["bin_left"], df["bin_right"] = edges[df["bin"]], edges[df["bin"] + 1]
    grp = df.groupby(by)["count"] if by else df["count"]
    total = grp.transform("sum") if by else df["count"].sum()
    df["share"] = df["count"] / np.maximum(total, 1)
    df["cdf"] = df.groupby(by)["share"].cumsum() if by else df["share"].cumsum()
    return df[keys[:-1] + ["bin_left", "bin_right", "count", "share", "cdf"]]


def entropy_by_js_bin(con, edges=(0, 0.01, 0.05, 0.1, 0.2, 0.3, LN2 + 1e-6), runs=None,
                      sampled_from=None, correct=None, by=None) -> pd.DataFrame:
    """[by,] bin ("[lo, hi)"), lo, hi, n, mean_entropy_base, mean_entropy_tuned per js bin
    (empty bins kept, n = 0)."""
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    gsel = f"gr.{by}, " if by else ""
    groups = f", (SELECT DISTINCT {by} FROM f) gr" if by else ""
    gjoin = f" AND f.{by} IS NOT DISTINCT FROM gr.{by}" if by else ""
    sql = f"""WITH f AS ({base}),
      b AS (SELECT e[i] AS lo, e[i + 1] AS hi, i FROM (SELECT $edges::DOUBLE[] AS e),
            generate_series(1, len(e) - 1) g(i))
      SELECT {gsel}b.lo, b.hi, count(f.js) AS n, avg(f.entropy_base) AS mean_entropy_base,
        avg(f.entropy_tuned) AS mean_entropy_tuned
      FROM b{groups} LEFT JOIN f ON f.js >= b.lo AND f.js < b.hi{gjoin}
      GROUP BY ALL ORDER BY {g}b.i"""
    df = _q(con, sql, {**p, "edges": [float(e) for e in edges]})
    df.insert(len(gsel and [1]), "bin", [f"[{lo:.3g}, {hi:.3g})" for lo, hi in
                                         zip(df["lo"], df["hi"])])
    return df


def js_entropy_hist2d(con, js_bins=30, entropy_bins=30, entropy="entropy_base",
                      entropy_max=None, runs=None, sampled_from=None, correct=None,
                      by=None) -> pd.DataFrame:
    """[by,] js_bin_left, entropy_bin_left, count: the full js x entropy grid (zeros
    included), js over [0, ln 2], entropy over [0, entropy_max or the data's max]."""
    if entropy not in ("entropy_base", "entropy_tuned"):
        raise ValueError(f"entropy must be entropy_base or entropy_tuned, got {entropy!r}")
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    if entropy_max is None:
        emax = con.execute(f"WITH f AS ({base}) SELECT max({entropy})::DOUBLE FROM f",
                           p).fetchone()[0]
        entropy_max = emax if emax else 1.0
    sql = f"""WITH f AS ({base}) SELECT {g}{_bin('js', 'j')} AS jb, {_bin(entropy, 'e')} AS eb,
      count(*) AS count FROM f WHERE js IS NOT NULL AND {entropy} IS NOT NULL GROUP BY ALL"""
    jw, ew = LN2 / js_bins, entropy_max / entropy_bins
    df = _q(con, sql, {**p, "j_a": 0.0, "j_w": jw, "j_n": js_bins,
                       "e_a": 0.0, "e_w": ew, "e_n": entropy_bins})
    keys = ([by] if by else []) + ["jb", "eb"]
    df = _fill_grid(df, keys, [js_bins, entropy_bins])
    df["js_bin_left"], df["entropy_bin_left"] = df["jb"] * jw, df["eb"] * ew
    return df[keys[:-2] + ["js_bin_left", "entropy_bin_left", "count"]]


def position_profile(con, bins=20, metric="js", high=0.1, runs=None, sampled_from=None,
                     correct=None, by=None) -> pd.DataFrame:
    """[by,] bin_left, bin_right, mean, p50, p90, share_high (> high), n per rel_pos bin
    (non-empty bins only)."""
    m, g = _metric(metric), _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}) SELECT {g}{_bin('rel_pos', 'r')} AS bin,
        avg({m}) AS mean, quantile_cont({m}, 0.5) AS p50, quantile_cont({m}, 0.9) AS p90,
        avg(({m} > $hi)::DOUBLE) AS share_high, count({m}) AS n
      FROM f WHERE rel_pos IS NOT NULL GROUP BY ALL {_order(by, 'bin')}"""
    df = _q(con, sql, {**p, "hi": high, "r_a": 0.0, "r_w": 1.0 / bins, "r_n": bins})
    df.insert(len(g and [1]), "bin_left", df.pop("bin") / bins)
    df.insert(len(g and [1]) + 1, "bin_right", df["bin_left"] + 1.0 / bins)
    return df


def token_identity(con, high=0.1, min_count=5, limit=50, runs=None, sampled_from=None,
                   correct=None, by=None) -> pd.DataFrame:
    """[by,] token, n_total, n_high (js > high), n_low (the rest), share_high, mean_js for
    token strings seen >= min_count times with n_high > 0; top `limit` (per group) by n_high
    desc, then share_high desc."""
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    part = f"PARTITION BY {by} " if by else ""
    sql = f"""WITH f AS ({base}) SELECT {g}token, count(*) AS n_total,
        count(*) FILTER (WHERE js > $hi) AS n_high, n_total - n_high AS n_low,
        n_high / n_total AS share_high, avg(js) AS mean_js
      FROM f WHERE js IS NOT NULL GROUP BY ALL HAVING n_total >= $min_count AND n_high > 0
      QUALIFY row_number() OVER ({part}ORDER BY n_high DESC, share_high DESC, token) <= $lim
      {_order(by, 'n_high DESC', 'share_high DESC', 'token')}"""
    return _q(con, sql, {**p, "hi": high, "min_count": min_count, "lim": limit})


_SUBSETS = f"(VALUES ('{SUBSET_HIGH}', 0), ('{SUBSET_ALL}', 1)) s(subset, so)"


def topk_overlap(con, threshold=0.1, k_max=10, runs=None, sampled_from=None, correct=None,
                 by=None) -> pd.DataFrame:
    """[by,] subset ("js>threshold" / "all"), k, overlap (mean |top-k base & top-k tuned| / k),
    n, for k = 1..k_max (k beyond a row's stored list length is skipped)."""
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}),
      j AS (SELECT f.*, k.base_ids, k.tuned_ids FROM f JOIN topk k USING (run, trace_id, pos))
      SELECT {g}subset, r.k, avg(len(list_intersect(list_slice(base_ids, 1, r.k),
        list_slice(tuned_ids, 1, r.k))) / r.k) AS overlap, count(*) AS n
      FROM j, {_SUBSETS}, range(1, $kmax + 1) r(k)
      WHERE (subset = '{SUBSET_ALL}' OR js > $thr) AND r.k <= len(base_ids)
        AND r.k <= len(tuned_ids)
      GROUP BY ALL {_order(by, 'any_value(so)', 'r.k')}"""
    return _q(con, sql, {**p, "thr": threshold, "kmax": k_max})


def reallocation(con, threshold=0.1, low_prob=0.01, runs=None, sampled_from=None,
                 correct=None, by=None) -> pd.DataFrame:
    """[by,] subset, share_same_top1 (tuned top-1 is base top-1), share_in_base_top3,
    share_low_prob (base prob of tuned top-1 < low_prob), n."""
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}),
      j AS (SELECT f.*, k.tuned_top1_rank_base AS r, k.tuned_top1_prob_base AS pb
            FROM f JOIN topk k USING (run, trace_id, pos))
      SELECT {g}subset, avg((r = 1)::DOUBLE) AS share_same_top1,
        avg((r <= 3)::DOUBLE) AS share_in_base_top3, avg((pb < $low)::DOUBLE) AS share_low_prob,
        count(*) AS n
      FROM j, {_SUBSETS} WHERE subset = '{SUBSET_ALL}' OR js > $thr
      GROUP BY ALL {_order(by, 'any_value(so)')}"""
    return _q(con, sql, {**p, "thr": threshold, "low": low_prob})


def tuned_top1_base_rank_hist(con, threshold=0.1, max_rank=10, runs=None, sampled_from=None,
                              correct=None, by=None) -> pd.DataFrame:
    """[by,] subset, rank (1..max_rank, max_rank + 1 = overflow), bucket ("1".., ">10"), n,
    share (within subset) of the tuned top-1's rank under the base model (present ranks only)."""
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}),
      j AS (SELECT f.*, least(k.tuned_top1_rank_base, $mr + 1) AS rank
            FROM f JOIN topk k USING (run, trace_id, pos) WHERE k.tuned_top1_rank_base > 0)
      SELECT {g}subset, rank, count(*) AS n,
        n / sum(count(*)) OVER (PARTITION BY {g}subset) AS share
      FROM j, {_SUBSETS} WHERE subset = '{SUBSET_ALL}' OR js > $thr
      GROUP BY ALL {_order(by, 'any_value(so)', 'rank')}"""
    df = _q(con, sql, {**p, "thr": threshold, "mr": max_rank})
    df.insert(df.columns.get_loc("rank") + 1, "bucket",
              [str(r) if r <= max_rank else f">{max_rank}" for r in df["rank"]])
    return df


URIAL_CATEGORIES = ("unshifted", "marginal", "shifted")


def urial_categories(con, runs=None, sampled_from=None, correct=None,
                     by=None) -> pd.DataFrame:
    """[by,] category (unshifted: rank_base 1, marginal: 2-3, shifted: > 3), n, share."""
    g = _group(by)
    base, p = _filtered(runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}) SELECT {g}
        count(*) FILTER (WHERE rank_base = 1) AS unshifted,
        count(*) FILTER (WHERE rank_base BETWEEN 2 AND 3) AS marginal,
        count(*) FILTER (WHERE rank_base > 3) AS shifted
      FROM f WHERE rank_base IS NOT NULL GROUP BY ALL {_order(by)}"""
    wide = _q(con, sql, p)
    ids = [by] if by else []
    df = wide.melt(id_vars=ids, value_vars=list(URIAL_CATEGORIES), var_name="category",
                   value_name="n")
    df["category"] = pd.Categorical(df["category"], URIAL_CATEGORIES, ordered=True)
    df = df.sort_values(ids + ["category"], kind="stable").reset_index(drop=True)
    total = df.groupby(by)["n"].transform("sum") if by else df["n"].sum()
    df["share"] = df["n"] / np.maximum(total, 1)
    df["category"] = df["category"].astype(str)
    return df


def evolution(con, series_runs: list[str], high=0.1, sampled_from=None,
              correct=None) -> pd.DataFrame:
    """run, step (manifest series_step, else the list index), p50, p90, p95, p99 of js,
    n_high and jaccard_final: Jaccard overlap of the run's high-js positions (trace_id, pos
    with js > high) with those of the last run in `series_runs`."""
    series_runs = [str(r) for r in series_runs]
    if not series_runs:
        raise ValueError("series_runs is empty")
    base, p = _filtered(series_runs, sampled_from, correct)
    sql = f"""WITH f AS ({base}),
      h AS (SELECT run, trace_id, pos FROM f WHERE js > $hi),
      fin AS (SELECT trace_id, pos FROM h WHERE run = $last),
      s AS (SELECT run, quantile_cont(js, [0.5, 0.9, 0.95, 0.99]) AS q FROM f GROUP BY run),
      i AS (SELECT h.run, count(*) AS n_high, count(fin.pos) AS n_inter
            FROM h LEFT JOIN fin USING (trace_id, pos) GROUP BY h.run)
      SELECT s.run, r.series_step, s.q[1] AS p50, s.q[2] AS p90, s.q[3] AS p95, s.q[4] AS p99,
        coalesce(i.n_high, 0) AS n_high,
        coalesce(i.n_inter, 0) / nullif(coalesce(i.n_high, 0) + (SELECT count(*) FROM fin)
          - coalesce(i.n_inter, 0), 0) AS jaccard_final
      FROM s LEFT JOIN i USING (run) LEFT JOIN runs r USING (run)"""
    df = _q(con, sql, {**p, "hi": high, "last": series_runs[-1]})
    order = {r: k for k, r in enumerate(series_runs)}
    df = df.assign(_o=df["run"].map(order)).sort_values("_o").reset_index(drop=True)
    df["step"] = [int(s) if pd.notna(s) else int(o) for s, o in zip(df["series_step"], df["_o"])]
    return df[["run", "step", "p50", "p90", "p95", "p99", "n_high", "jaccard_final"]]


def contrast(con, run_a: str, run_b: str, near_zero=0.01, high=0.1, metric="js",
             sampled_from=None, correct=None) -> pd.DataFrame:
    """sparsity_summary of run_a and run_b, one row each (in that order), with a run column."""
    df = sparsity_summary(con, near_zero, high, metric, runs=[run_a, run_b],
                          sampled_from=sampled_from, correct=correct, by="run")
    return df.set_index("run").reindex([run_a, run_b]).reset_index()


def headline(con, near_zero=0.01, high=0.1, runs=None) -> pd.DataFrame:
    """Per run (open order): run, kind, n_traces, n_tokens, share_near_zero, share_high,
    mean_js, p95_js, top1_agree, accuracy_tuned, accuracy_base (NULL without such traces),
    mean_length (response tokens per trace)."""
    base, p = _filtered(runs)
    sql = f"""WITH t AS (SELECT run, count(*) AS n_tokens, avg((js < $nz)::DOUBLE) AS
          share_near_zero, avg((js > $hi)::DOUBLE) AS share_high, avg(js) AS mean_js,
          quantile_cont(js, 0.95) AS p95_js, avg(top1_agree::DOUBLE) AS top1_agree
        FROM ({base}) GROUP BY run),
      tr AS (SELECT run, count(*) AS n_traces,
          avg(correct::DOUBLE) FILTER (WHERE sampled_from = 'tuned') AS accuracy_tuned,
          avg(correct::DOUBLE) FILTER (WHERE sampled_from = 'base') AS accuracy_base,
          avg(length) AS mean_length FROM traces GROUP BY run)
      SELECT r.run, r.kind, coalesce(tr.n_traces, 0) AS n_traces,
        coalesce(t.n_tokens, 0) AS n_tokens, t.* EXCLUDE (run, n_tokens),
        tr.* EXCLUDE (run, n_traces)
      FROM runs r LEFT JOIN t USING (run) LEFT JOIN tr USING (run)
      WHERE $all_runs OR list_contains($f_runs::VARCHAR[], r.run) ORDER BY r.idx"""
    return _q(con, sql, {**p, "nz": near_zero, "hi": high, "all_runs": runs is None,
                         "f_runs": p.get("f_runs", [])})


def trace_list(con, run: str, sort_by="max_js", descending=True, search=None, correct=None,
               high=0.1, limit=100, offset=0, sampled_from=None) -> pd.DataFrame:
    """trace_id, prompt_id, prompt, correct, length, sampled_from, max_js, mean_js, n_high
    (tokens with js > high) for one run; `search` = case-insensitive substring of the prompt;
    sort_by one of TRACE_SORT (ties by trace_id), NULLs last."""
    if sort_by not in TRACE_SORT:
        raise ValueError(f"sort_by must be one of {TRACE_SORT}, got {sort_by!r}")
    conds, params = ["tr.run = $run"], {"run": str(run), "hi": high, "lim": limit,
                                        "off": offset}
    if search is not None:
        conds.append("contains(lower(tr.prompt), lower($search))")
        params["search"] = str(search)
    if correct is not None:
        conds.append("tr.correct = $correct")
        params["correct"] = bool(correct)
    if sampled_from is not None:
        conds.append("tr.sampled_from = $sampled_from")
        params["sampled_from"] = sampled_from
    direction = "DESC" if descending else "ASC"
    sql = f"""WITH a AS (SELECT trace_id, max(js) AS max_js, avg(js) AS mean_js,
          count(*) FILTER (WHERE js > $hi) AS n_high FROM tokens WHERE run = $run
          GROUP BY trace_id)
      SELECT tr.trace_id, tr.prompt_id, tr.prompt, tr.correct, tr.length, tr.sampled_from,
        a.max_js, a.mean_js, coalesce(a.n_high, 0) AS n_high
      FROM traces tr LEFT JOIN a USING (trace_id) WHERE {' AND '.join(conds)}
      ORDER BY {sort_by} {direction} NULLS LAST, trace_id LIMIT $lim OFFSET $off"""
    return _q(con, sql, params)


def trace_tokens(con, run: str, trace_id: int) -> pd.DataFrame:
    """All tokens columns of one trace ordered by pos, plus the topk columns (NULL if none)."""
    sql = """SELECT t.*, k.* EXCLUDE (run, trace_id, pos) FROM tokens t
      LEFT JOIN topk k USING (run, trace_id, pos)
      WHERE t.run = $run AND t.trace_id = $tid ORDER BY t.pos"""
    return _q(con, sql, {"run": str(run), "tid": int(trace_id)})


def token_search(con, js_min=None, rank_base_min=None, dlogp_max=None, text_contains=None,
                 rel_pos_range=None, correct_only=False, runs=None, sampled_from=None,
                 limit=200, window=5) -> pd.DataFrame:
    """Tokens matching all given conditions (js >= js_min, rank_base >= rank_base_min,
    dlogp <= dlogp_max, case-insensitive substring of the token, lo <= rel_pos <= hi, correct
    traces only), highest js first: run, trace_id, pos, token, js, rank_base, dlogp, rel_pos,
    context (tokens pos-window..pos+window concatenated), before, after (the parts of the
    context on either side of the token)."""
    base, p = _filtered(runs, sampled_from, True if correct_only else None)
    conds = ["TRUE"]
    for cond, name, val in [("js >= $js_min", "js_min", js_min),
                            ("rank_base >= $rb_min", "rb_min", rank_base_min),
                            ("dlogp <= $dlogp_max", "dlogp_max", dlogp_max),
                            ("contains(lower(token), lower($text))", "text", text_contains)]:
        if val is not None:
            conds.append(cond)
            p[name] = val
    if rel_pos_range is not None:
        conds.append("rel_pos BETWEEN $rp_lo AND $rp_hi")
        p["rp_lo"], p["rp_hi"] = (float(v) for v in rel_pos_range)
    sql = f"""WITH m AS (SELECT run, trace_id, pos, token, js, rank_base, dlogp, rel_pos
          FROM ({base}) WHERE {' AND '.join(conds)}
          ORDER BY js DESC NULLS LAST, run, trace_id, pos LIMIT $lim)
      SELECT m.*, string_agg(c.token, '' ORDER BY c.pos) AS context,
        coalesce(string_agg(c.token, '' ORDER BY c.pos) FILTER (WHERE c.pos < m.pos), '')
          AS before,
        coalesce(string_agg(c.token, '' ORDER BY c.pos) FILTER (WHERE c.pos > m.pos), '')
          AS after
      FROM m JOIN tokens c ON c.run = m.run AND c.trace_id = m.trace_id
        AND c.pos BETWEEN m.pos - $win AND m.pos + $win
      GROUP BY ALL ORDER BY m.js DESC NULLS LAST, m.run, m.trace_id, m.pos"""
    return _q(con, sql, {**p, "lim": limit, "win": window})
