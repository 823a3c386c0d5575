"""Opening run folders: `open_runs` (the `runs` table and the lazy views tokens, topk, traces,
tok over their Parquet files), `table_files` and `opened_runs`.

After creating the views, open_runs hands over to core/queries/materialize.py (tokx,
trace_agg, optionally in memory) and, when materialised, core/queries/indexed.py (order
indexes). This module runs no analysis and holds no SQL helpers (core/queries/sql.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import RunsError
from core.queries import indexed, order_index
from core.queries.materialize import derive
from core.queries.run_index import ensure_index
from core.queries.sql import _sql_str
from core.store.run import Run
from core.store.schema import TOKENS_SCHEMA, TOPK_SCHEMA, TRACES_SCHEMA

# open_runs materialises automatically from this many token rows (see open_runs).
MATERIALIZE_ROWS = 2_000_000
# DuckDB's buffer pool per connection (its default is 80% of RAM): a quarter of the RAM, at
# most 3 GiB. Materialised data beyond it stays in the runs' on-disk indexes and is re-read.
QUERY_MEMORY = min(3 * 1024**3, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
_TABLES = {"tokens": TOKENS_SCHEMA, "topk": TOPK_SCHEMA, "traces": TRACES_SCHEMA}


def _runs(run_dirs) -> list[Run]:
    if isinstance(run_dirs, (str, Path, Run)):
        run_dirs = [run_dirs]
    return [d if isinstance(d, Run) else Run.open(d) for d in run_dirs]


def open_runs(run_dirs: list[str | Path | Run] | str | Path | Run,
              materialize: bool | None = None,
              names: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory connection with views tokens/topk/traces/tok over all runs (see
    core/queries/__init__.py). The `runs` table also holds each run's tuned checkpoint's own
    accuracy and where it comes from (core.store.samplers.checkpoint_accuracy) and its
    series_sampling setting (NULL before it existed: reuse).

    `materialize`: query every run through its on-disk index (core/queries/run_index.py: the
    token rows with the trace columns and top-k facts the analyses need, in DuckDB's own
    format, built on a run's first materialised open and reused after), with order indexes
    and per-cell aggregates in memory (True), or keep lazy Parquet views (False); None
    (default) materialises when the runs hold at least MATERIALIZE_ROWS token rows. Results
    are the same either way; materialised queries are much faster on large runs, and memory
    stays bounded (QUERY_MEMORY for DuckDB, plus about 16 bytes per token row of indexes).

    `names`: the run names, one per folder (the app passes the folder names, which are unique
    in a cache even where a copied folder's manifest repeats another run's name); default: the
    manifest's name, else the folder name.

    Damaged runs (core.store.validate: an unreadable manifest, a table whose footer or
    column types do not match the schema) are left out: the collection never reads their
    files, so every other run keeps working; Run.line says why. A folder that only lacks a
    table (Run.readable) is opened, that table empty; the app and the CLI never pass one
    (their listings count it as damaged)."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{QUERY_MEMORY // 2**20}MiB'")
    con.execute("CREATE TABLE runs (idx INTEGER, run VARCHAR, kind VARCHAR, "
                "series_step INTEGER, traces_from VARCHAR, path VARCHAR, "
                "accuracy DOUBLE, accuracy_source VARCHAR, series_sampling VARCHAR)")
    runs = _runs(run_dirs)
    if names is not None and len(names) != len(runs):
        raise ValueError(f"{len(names)} names for {len(runs)} run folders")
    keep = [i for i, r in enumerate(runs) if r.readable]
    names = [names[i] for i in keep] if names is not None else None
    runs = [runs[i] for i in keep]
    rows, labels = [], {}
    for i, r in enumerate(runs):
        name = names[i] if names is not None else r.recorded_name
        acc, acc_source = r.checkpoint_accuracy()
        rows.append((i, str(name), r.kind, r.series_step, r.traces_from, str(r.path), acc,
                     acc_source, r.series_sampling))
        labels[i] = r.label_sql("t.sampled_from")
    names = [r[1] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate run names: {names}")
    if rows:
        con.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    for view, schema in _TABLES.items():
        parts = []
        for i, r in enumerate(runs):
            files = r.table_files(view)
            if files:
                lst = ", ".join(_sql_str(str(f.resolve())) for f in files)
                cols = "t.*"  # an old series run's labels read as today's (core.store.samplers)
                if view == "traces" and labels[i] != "t.sampled_from":
                    cols = f"t.* REPLACE ({labels[i]} AS sampled_from)"
                parts.append(f"SELECT {cols}, r.run FROM read_parquet([{lst}], "
                             f"union_by_name = true) t, runs r WHERE r.idx = {int(i)}")
        if not parts:  # no run has this table: an empty view with the right columns
            # a table, not a registered Arrow object: those are private to one connection
            # and a session's cursor would not see them
            con.register("_empty", schema.append(pa.field("run", pa.string())).empty_table())
            con.execute(f"CREATE TABLE _empty_{view} AS SELECT * FROM _empty")
            con.unregister("_empty")
            parts = [f"SELECT * FROM _empty_{view}"]
        con.execute(f"CREATE VIEW {view} AS " + "\nUNION ALL BY NAME\n".join(parts))
    con.execute("CREATE VIEW tok AS SELECT t.*, tr.correct, tr.sampled_from, tr.length "
                "FROM tokens t LEFT JOIN traces tr USING (run, trace_id)")
    if materialize is None:
        materialize = con.execute("SELECT count(*) FROM tokens").fetchone()[0] >= MATERIALIZE_ROWS
    derive(con, bool(materialize))
    if materialize:
        indexed.enable(con)
    return con


def session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of `con` for one user session or thread: DuckDB runs one call at a time per
    connection object, so concurrent sessions sharing `con` itself fail with "connection is
    busy". The cursor sees the same views and attached run indexes (nothing is copied) and
    shares `con`'s order indexes and pre-aggregates."""
    cur = con.cursor()
    order_index.link(cur, con)
    return cur


def token_rows(run_dir: str | Path) -> int:
    """Token rows of a run, from its Parquet footers (no data read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in Run.open(run_dir).table_files("tokens"))


def prepare(run_dir: str | Path) -> Path | None:
    """Build a run's query index now (core/queries/run_index.py) when it holds at least
    MATERIALIZE_ROWS token rows, so that the first `open_runs` of it (in the app: the first
    page that shows it) does not pay for the build; returns the index file, or None for a run
    small enough to stay lazy. The precompute driver calls it after publishing."""
    if token_rows(run_dir) < MATERIALIZE_ROWS:
        return None
    return ensure_index(run_dir)


def opened_runs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The opened runs: run, kind, series_step, traces_from, path (in open order)."""
    return con.execute("SELECT run, kind, series_step, traces_from, path FROM runs "
                       "ORDER BY idx").df()


def run_gone(exc: BaseException) -> bool:
    """Whether `exc` says a run's files vanished under a query: another session or process
    renamed or deleted the run between listing it and reading it. The app then says so
    instead of showing the exception."""
    if isinstance(exc, FileNotFoundError):
        return True
    text = str(exc)
    return isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)) and (
        "No files found" in text or "No such file" in text or "does not exist" in text)


def damaged_since(exc: BaseException, run_paths) -> str | None:
    """When a query failed with `exc` because a run of the collection (`run_paths`, the
    folders it was opened on) was damaged since (a file replaced under a running server):
    the damaged runs' lines (core.store.run.Run.line), re-validated now, so the next listing
    quarantines them too; None when `exc` is not a read error or every run is still whole."""
    if not isinstance(exc, (duckdb.Error, pa.ArrowException, OSError)):
        return None
    bad = [r for r in (Run.open(p, fresh=True) for p in run_paths) if r.damaged]
    return "; ".join(r.line() for r in bad) or None


def damaged_error(exc: BaseException, run_paths) -> RunsError | None:
    """damaged_since() as a RunsError to raise (None when no run is damaged)."""
    line = damaged_since(exc, run_paths)
    return RunsError(line) if line else None
