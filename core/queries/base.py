"""Connection and shared helpers of the query layer (see core/queries/__init__.py)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from ..manifest import read_manifest
from ..schema import (
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


def open_runs(run_dirs: list[str | Path] | str | Path) -> duckdb.DuckDBPyConnection:
    """In-memory connection with views tokens/topk/traces/tok over all runs (see module doc)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE runs (idx INTEGER, run VARCHAR, kind VARCHAR, "
                "series_step INTEGER, traces_from VARCHAR, path VARCHAR)")
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    rows = []
    for i, d in enumerate(dirs):
        m = read_manifest(d) or {}
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
