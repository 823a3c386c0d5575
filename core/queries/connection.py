"""Connection and shared helpers of the query layer (see core/queries/__init__.py)."""

from __future__ import annotations

import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from core.store.manifest import read_manifest
from core.store.schema import (
    FLOAT_METRICS,
    INT_METRICS,
    TOKENS_FILE,
    TOKENS_SCHEMA,
    TOPK_FILE,
    TOPK_SCHEMA,
    TRACES_FILE,
    TRACES_SCHEMA,
)

LN2 = math.log(2)
METRICS = tuple(FLOAT_METRICS + INT_METRICS)
BY_COLUMNS = (None, "run", "sampled_from")
SUBSET_HIGH, SUBSET_ALL = "js>threshold", "all"
TRACE_SORT = ("trace_id", "prompt_id", "correct", "length", "sampled_from",
              "max_js", "mean_js", "n_high")
# open_runs materialises automatically from this many token rows (see open_runs).
MATERIALIZE_ROWS = 2_000_000
KOV = 10               # top-k overlap sizes precomputed per row for k = 1..KOV (tokx.k_ovK)
TRACE_AGG_HIGH = 0.1   # the js threshold of trace_agg.n_high (trace_list's default `high`)
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


def open_runs(run_dirs: list[str | Path] | str | Path, materialize: bool | None = None,
              names: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory connection with views tokens/topk/traces/tok over all runs (see module doc).

    `materialize`: copy tokens, traces and the top-k columns the analyses need into DuckDB
    tables once, now (True), or keep lazy Parquet views (False); None (default) materialises
    when the runs hold at least MATERIALIZE_ROWS token rows. Results are the same either way;
    materialised queries are much faster on large runs (no Parquet decoding per query).

    `names`: the run names, one per folder (the app passes the folder names, which are unique
    in a cache even where a copied folder's manifest repeats another run's name); default: the
    manifest's name, else the folder name."""
    con = duckdb.connect()
    con.execute("CREATE TABLE runs (idx INTEGER, run VARCHAR, kind VARCHAR, "
                "series_step INTEGER, traces_from VARCHAR, path VARCHAR)")
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if names is not None and len(names) != len(dirs):
        raise ValueError(f"{len(names)} names for {len(dirs)} run folders")
    rows = []
    for i, d in enumerate(dirs):
        m = read_manifest(d) or {}
        name = names[i] if names is not None else (m.get("name") or d.name)
        rows.append((i, str(name), m.get("kind"), m.get("series_step"),
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
    if materialize is None:
        materialize = con.execute("SELECT count(*) FROM tokens").fetchone()[0] >= MATERIALIZE_ROWS
    _derived(con, bool(materialize))
    return con


def _derived(con: duckdb.DuckDBPyConnection, materialize: bool) -> None:
    """`tokx` (tok + per-row top-k facts: k_has, k_r, k_pb, k_n, k_ov1..k_ovKOV) and
    `trace_agg` (per-trace max/mean js and n_high at TRACE_AGG_HIGH): views over the lazy
    views, or, materialised, tables (tokx sorted by run, trace_id, pos) that tokens, traces
    and tok are then re-pointed at. `topk` always stays a Parquet view (trace_tokens and
    topk_overlap beyond KOV read it)."""
    ov = ", ".join(f"len(list_intersect(list_slice(k.base_ids, 1, {i}), "
                   f"list_slice(k.tuned_ids, 1, {i})))::UTINYINT AS k_ov{i}"
                   for i in range(1, KOV + 1))
    tokx = f"""SELECT t.*, k.pos IS NOT NULL AS k_has, k.tuned_top1_rank_base AS k_r,
        k.tuned_top1_prob_base AS k_pb, least(len(k.base_ids), len(k.tuned_ids)) AS k_n, {ov}
      FROM tok t LEFT JOIN topk k USING (run, trace_id, pos)"""
    agg = f"""SELECT run, trace_id, max(js) AS max_js, avg(js) AS mean_js,
        count(*) FILTER (WHERE js > {TRACE_AGG_HIGH!r}) AS n_high
      FROM tokens GROUP BY run, trace_id"""
    if not materialize:
        con.execute(f"CREATE VIEW tokx AS {tokx}")
        con.execute(f"CREATE VIEW trace_agg AS {agg}")
        return
    tok_cols = [r[0] for r in con.execute("DESCRIBE tok").fetchall()]
    tokens_cols = [r[0] for r in con.execute("DESCRIBE tokens").fetchall()]
    traces_cols = [r[0] for r in con.execute("DESCRIBE traces").fetchall()]
    con.execute("CREATE TABLE traces_m AS SELECT * FROM traces")
    con.execute("CREATE OR REPLACE VIEW traces AS SELECT "
                + ", ".join(_ident(c) for c in traces_cols) + " FROM traces_m")
    kx = _topk_facts(con)
    if kx is not None:  # the same columns as `tokx` computes, built in numpy (much faster)
        con.register("_topk_facts", kx)
        ovs = ", ".join(f"k.k_ov{i}" for i in range(1, KOV + 1))
        tokx = f"""SELECT t.*, k.pos IS NOT NULL AS k_has, k.k_r, k.k_pb, k.k_n, {ovs}
          FROM tok t LEFT JOIN _topk_facts k USING (run, trace_id, pos)"""
    # cells: the (run, sampled_from, correct) groups every filter selects whole (order_index)
    con.execute("""CREATE TABLE cells AS SELECT (row_number() OVER (ORDER BY run,
        sampled_from NULLS LAST, correct NULLS LAST) - 1)::INTEGER AS cell, *
      FROM (SELECT run, sampled_from, correct, count(*) AS n_rows,
              count(top1_agree) AS n_top1, count(*) FILTER (WHERE top1_agree) AS s_top1
            FROM tok GROUP BY ALL)""")
    # vocab: the distinct token strings, so grouping and text search work on integer codes
    con.execute("CREATE TABLE vocab AS SELECT (row_number() OVER (ORDER BY token) - 1)"
                "::INTEGER AS tcode, token FROM (SELECT DISTINCT token FROM tokens"
                " WHERE token IS NOT NULL)")
    con.execute(f"""CREATE TABLE tokx AS SELECT x.*, c.cell, v.tcode FROM ({tokx}) x
      JOIN cells c ON x.run = c.run AND x.sampled_from IS NOT DISTINCT FROM c.sampled_from
        AND x.correct IS NOT DISTINCT FROM c.correct
      LEFT JOIN vocab v ON x.token = v.token
      ORDER BY x.run, x.trace_id, x.pos""")
    if kx is not None:
        con.unregister("_topk_facts")
    # per cell and stored list length: the top-k overlap sums of all rows (topk_overlap)
    sums = ", ".join(f"sum(k_ov{k})::BIGINT AS s{k}" for k in range(1, KOV + 1))
    con.execute(f"""CREATE TABLE cell_kov AS SELECT cell, least(k_n, {KOV}) AS kn,
        count(*) AS c, {sums} FROM tokx WHERE k_has AND k_n >= 1 GROUP BY ALL""")
    con.execute("CREATE OR REPLACE VIEW tokens AS SELECT "
                + ", ".join(_ident(c) for c in tokens_cols) + " FROM tokx")
    con.execute("CREATE OR REPLACE VIEW tok AS SELECT "
                + ", ".join(_ident(c) for c in tok_cols) + " FROM tokx")
    con.execute(f"CREATE TABLE trace_agg AS {agg}")
    from core.queries import indexed  # noqa: PLC0415 (indexed imports this module)

    indexed.enable(con)


def _topk_facts(con: duckdb.DuckDBPyConnection, chunk: int = 250_000) -> pa.Table | None:
    """run, trace_id, pos, k_r, k_pb, k_n, k_ov1..k_ovKOV of every topk row, with k_ovK =
    len(list_intersect(base_ids[:K], tuned_ids[:K])) (distinct shared ids) computed in numpy;
    None when the id lists are not all of one length without NULLs (the SQL then does it)."""
    import numpy as np
    import pyarrow.compute as pc

    t = con.sql("SELECT run, trace_id, pos, tuned_top1_rank_base AS k_r, "
                    "tuned_top1_prob_base AS k_pb, base_ids, tuned_ids FROM topk").to_arrow_table()
    n = t.num_rows
    lists = []
    for col in ("base_ids", "tuned_ids"):
        a = t[col].combine_chunks()
        if a.null_count or (n and pc.min_max(pc.list_value_length(a)).as_py()["min"] !=
                            pc.min_max(pc.list_value_length(a)).as_py()["max"]):
            return None
        flat = a.flatten()
        if flat.null_count:
            return None
        L = len(flat) // n if n else 0
        lists.append(flat.to_numpy(zero_copy_only=False).reshape(n, L))
    B, T = lists
    if n == 0 or B.shape[1] != T.shape[1] or B.shape[1] == 0:
        return None
    L = B.shape[1]
    ov = np.zeros((n, KOV), dtype=np.uint8)

    def work(s: int) -> None:
        b, u = B[s:s + chunk], T[s:s + chunk]
        c = len(b)
        # A shared id v is in both top-k prefixes iff max(first index in u, first index in b)
        # < k. With distinct ids per list (what top-k gives) that is max(i, j) for u_i = b_j.
        eq = u[:, :, None] == b[:, None, :]                 # [row, i (tuned), j (base)]
        j = eq.argmax(axis=2)
        hit = np.take_along_axis(eq, j[:, :, None], axis=2)[:, :, 0]
        m = np.where(hit, np.minimum(np.maximum(np.arange(L), j), KOV), KOV)
        # ov_k = #{i: m_i < k}: a per-row histogram of m, accumulated
        idx = (np.arange(c)[:, None] * (KOV + 1) + m).ravel()
        hist = np.bincount(idx, minlength=c * (KOV + 1)).reshape(c, KOV + 1)
        ov[s:s + c] = np.cumsum(hist[:, :KOV], axis=1)
        srt = np.sort(np.concatenate([u, b], axis=1).reshape(-1, 2, L), axis=2)
        dup = (np.diff(srt, axis=2) == 0).any(axis=(1, 2))
        if dup.any():  # repeated ids in a list: count distinct shared ids the slow way
            ov[s:s + c][dup] = _overlap_with_repeats(b[dup], u[dup], L)

    # numpy releases the GIL in these loops: chunks run on every core
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as ex:
        list(ex.map(work, range(0, n, chunk)))
    out = t.select(["run", "trace_id", "pos", "k_r", "k_pb"])
    out = out.append_column("k_n", pa.array(np.full(n, L, dtype=np.int64)))
    for k in range(1, KOV + 1):
        out = out.append_column(f"k_ov{k}", pa.array(ov[:, k - 1]))
    return out


def _overlap_with_repeats(b, u, L: int):
    """k_ov1..KOV for rows whose id lists may repeat ids: distinct shared ids per prefix."""
    import numpy as np

    tri = np.tril(np.ones((L, L), dtype=bool), -1)  # [i, i'] : i' < i
    first = ~((u[:, :, None] == u[:, None, :]) & tri).any(axis=2)   # first occurrence in u
    cum = np.logical_or.accumulate(u[:, :, None] == b[:, None, :], axis=2) & first[:, :, None]
    out = np.zeros((len(u), KOV), dtype=np.uint8)
    for k in range(1, KOV + 1):
        kk = min(k, L)
        out[:, k - 1] = cum[:, :kk, kk - 1].sum(axis=1)
    return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def opened_runs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
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


def _filtered(runs=None, sampled_from=None, correct=None, src="tok") -> tuple[str, dict]:
    """SQL of the filtered `src` rows ("tok" or "tokx"; use as a CTE body) and its named
    parameters."""
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
    return f"SELECT * FROM {src} WHERE " + " AND ".join(conds), params


def _q(con, sql: str, params: dict) -> pd.DataFrame:
    """Run with the named parameters the SQL uses (DuckDB rejects unused ones)."""
    used = set(re.findall(r"\$(\w+)", sql))
    return con.execute(sql, {k: v for k, v in params.items() if k in used}).df()


def _order(by: str | None, *cols: str) -> str:
    keys = ([by] if by else []) + list(cols)
    return "ORDER BY " + ", ".join(keys) if keys else ""


def _bin(col: str, p: str) -> str:
    """Bin index of `col` for params $p_a (left), $p_w (width), $p_n (bins), clamped."""
    return f"least(greatest(floor(({col} - ${p}_a) / ${p}_w), 0), ${p}_n - 1)::INTEGER"


def _fill_grid(df: pd.DataFrame, keys: list[str], sizes: list[int]) -> pd.DataFrame:
    """Reindex a count table on keys (group col first if any) to the full grid, zeros filled."""
    levels = ([df[keys[0]].drop_duplicates().sort_values(na_position="last").tolist()]
              if len(keys) > len(sizes) else [])
    levels += [range(n) for n in sizes]
    idx = pd.MultiIndex.from_product(levels, names=keys)
    return df.set_index(keys)["count"].reindex(idx, fill_value=0).reset_index()
