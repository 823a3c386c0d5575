"""The derived relations of an opened connection: `tokx` and `trace_agg` as views over the
lazy Parquet views or, when materialising, over every run's on-disk query index
(core/queries/run_index.py) attached read-only, plus the small tables `cells`, `vocab` and
`cell_kov`.

It works on the views core/queries/connection.py created; it does not read manifests, and
does not build the order indexes (connection.open_runs turns those on through
core/queries/indexed.py after materialising).
"""

from __future__ import annotations

import duckdb

from core.queries.run_index import ensure_index
from core.queries.sql import KOV, TRACE_AGG_HIGH, _ident, _sql_str, overlap_sql


def derive(con: duckdb.DuckDBPyConnection, materialize: bool) -> None:
    """`tokx` (tok + per-row top-k facts: k_has, k_r, k_pb, k_n, k_ov1..k_ovKOV) and
    `trace_agg` (per-trace max/mean js and n_high at TRACE_AGG_HIGH): views over the lazy
    views, or, materialised, the runs' indexes (see `attach`) that tokens, traces and tok are
    then re-pointed at. `topk` always stays a Parquet view (trace_tokens and topk_overlap
    beyond KOV read it)."""
    ov = ", ".join(f"{overlap_sql('k.base_ids', 'k.tuned_ids', i)} AS k_ov{i}"
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
    attach(con)


def attach(con: duckdb.DuckDBPyConnection) -> None:
    """Materialised: attach every run's on-disk index (core/queries/run_index.py, built on
    first use) and point tokens, traces and tok at it. Collection-level relations: `tokx`,
    `tokx_js`, `tokx_ctx`, `traces`, `trace_agg` (views: a UNION ALL over the runs, each with
    its name as `run`), and small tables `cells` (cell ids made unique across runs), `vocab`
    and `cell_kov`."""
    tok_cols = [r[0] for r in con.execute("DESCRIBE tok").fetchall()]
    tokens_cols = [r[0] for r in con.execute("DESCRIBE tokens").fetchall()]
    traces_cols = [r[0] for r in con.execute("DESCRIBE traces").fetchall()]
    runs = con.execute("SELECT idx, run, path FROM runs ORDER BY idx").fetchall()
    parts: dict[str, list[str]] = {"tokx": [], "tokx_js": [], "tokx_ctx": [], "traces": [],
                                   "trace_agg": [], "cells": [], "vocab": [], "cell_kov": []}
    off = 0
    for idx, name, path in runs:
        db = f"r{int(idx)}"
        con.execute(f"ATTACH {_sql_str(str(ensure_index(path)))} AS {db} (READ_ONLY)")
        run = _sql_str(name)
        parts["tokx"].append(f"SELECT * REPLACE (cell + {off} AS cell), {run} AS run "
                             f"FROM {db}.tokx")
        parts["tokx_js"].append(f"SELECT * REPLACE (cell + {off} AS cell), {run} AS run "
                                f"FROM {db}.tokx_js")
        parts["tokx_ctx"].append(f"SELECT *, {run} AS run FROM {db}.tokx_ctx")
        parts["traces"].append(f"SELECT *, {run} AS run FROM {db}.traces_m")
        parts["trace_agg"].append(f"SELECT {run} AS run, * FROM {db}.trace_agg")
        parts["cells"].append(f"SELECT cell + {off} AS cell, {run} AS run, * EXCLUDE (cell) "
                              f"FROM {db}.cells")
        parts["vocab"].append(f"SELECT tcode, token FROM {db}.vocab")
        parts["cell_kov"].append(f"SELECT * REPLACE (cell + {off} AS cell) FROM {db}.cell_kov")
        off += con.execute(f"SELECT count(*) FROM {db}.cells").fetchall()[0][0]
    if not runs:  # nothing to attach: keep the (empty) lazy views
        derive(con, False)
        return

    def union(name: str) -> str:
        return "\nUNION ALL BY NAME\n".join(parts[name])

    con.execute(f"CREATE OR REPLACE VIEW tokx AS {union('tokx')}")
    con.execute(f"CREATE OR REPLACE VIEW tokx_js AS {union('tokx_js')}")
    con.execute(f"CREATE OR REPLACE VIEW tokx_ctx AS {union('tokx_ctx')}")
    con.execute("CREATE OR REPLACE VIEW traces AS SELECT "
                + ", ".join(_ident(c) for c in traces_cols) + f" FROM ({union('traces')})")
    con.execute(f"CREATE OR REPLACE VIEW trace_agg AS {union('trace_agg')}")
    con.execute(f"CREATE TABLE cells AS SELECT * FROM ({union('cells')}) ORDER BY cell")
    con.execute(f"CREATE TABLE vocab AS SELECT DISTINCT tcode, token FROM ({union('vocab')})")
    con.execute(f"CREATE TABLE cell_kov AS {union('cell_kov')}")
    con.execute("CREATE OR REPLACE VIEW tokens AS SELECT "
                + ", ".join(_ident(c) for c in tokens_cols) + " FROM tokx")
    con.execute("CREATE OR REPLACE VIEW tok AS SELECT "
                + ", ".join(_ident(c) for c in tok_cols) + " FROM tokx")
