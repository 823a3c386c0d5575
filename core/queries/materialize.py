"""The derived relations of an opened connection: `tokx` and `trace_agg`, as views or, when
materialising, in-memory tables (plus `cells`, `vocab`, `cell_kov`), with the per-row top-k
facts computed in numpy (`_topk_facts`, `_overlap_with_repeats`).

It works on the views core/queries/connection.py created; it does not open runs or read
manifests, and does not build the order indexes (connection.open_runs turns those on through
core/queries/indexed.py after materialising).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.queries.sql import KOV, TRACE_AGG_HIGH, _ident


def derive(con: duckdb.DuckDBPyConnection, materialize: bool) -> None:
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


def _topk_facts(con: duckdb.DuckDBPyConnection, chunk: int = 250_000) -> pa.Table | None:
    """run, trace_id, pos, k_r, k_pb, k_n, k_ov1..k_ovKOV of every topk row, with k_ovK =
    len(list_intersect(base_ids[:K], tuned_ids[:K])) (distinct shared ids) computed in numpy;
    None when the id lists are not all of one length without NULLs (the SQL then does it)."""
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
    tri = np.tril(np.ones((L, L), dtype=bool), -1)  # [i, i'] : i' < i
    first = ~((u[:, :, None] == u[:, None, :]) & tri).any(axis=2)   # first occurrence in u
    cum = np.logical_or.accumulate(u[:, :, None] == b[:, None, :], axis=2) & first[:, :, None]
    out = np.zeros((len(u), KOV), dtype=np.uint8)
    for k in range(1, KOV + 1):
        kk = min(k, L)
        out[:, k - 1] = cum[:, :kk, kk - 1].sum(axis=1)
    return out
