"""A run's query index: an on-disk DuckDB database derived from its Parquet tables, built once
and reused by every later `open_runs(..., materialize=True)` of that run.

It holds, per run (no `run` column: the collection adds it, so a renamed folder keeps its
index):

    tokx       every token row with its trace's correct / sampled_from / length, the per-row
               top-k facts (k_has, k_r, k_pb, k_n, k_ov1..k_ovKOV), its cell and `tcode`
               (a 64-bit hash of the token string), sorted by trace_id, pos
    tokx_js    the rows with a js value, the columns token search returns or filters on,
               sorted by js descending: DuckDB's zone maps then skip every row group below
               a js bound, so the highest-js rows are read without a scan
    tokx_ctx   trace_id, pos, token only, sorted by trace_id, pos: the context of search
               hits (a narrow table decodes a few traces' tokens about 4x faster than tokx)
    traces_m   the traces table
    cells      the run's (sampled_from, correct) groups with row and top-1 counts
    vocab      (tcode, token) of every distinct token string
    cell_kov   per cell and stored list length: the top-k overlap sums of all rows
    trace_agg  per trace: max_js, mean_js, n_high (js > TRACE_AGG_HIGH)
    meta       the fingerprint of the Parquet files it was built from

Why on disk: a collection of ten 10M-row runs does not fit in memory as tables (about 0.3 GiB
per million rows), while DuckDB reads its own format through a bounded buffer pool; and a run
added to a cache costs one build of its own index, not a rebuild of the collection's.

The file is `.query-index.duckdb` in the run folder (moved and deleted with it), or, when the
folder is not writable, in the system temp folder under a name derived from the path. It is
rebuilt when the run's table files change (names, sizes, modification times) or the index
format does. Builds take a file lock and write to a temporary file renamed into place, so
concurrent openers build it once and never read a half-written index.

This module creates no collection-level views (core/queries/materialize.py attaches these
files) and runs no analysis.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from core.queries.sql import KOV, TRACE_AGG_HIGH, _sql_str, overlap_sql
from core.store.run import INDEX_FILE, Run

INDEX_VERSION = 4
# DuckDB memory while building one run's index (it spills to disk beyond this)
BUILD_MEMORY = 2 * 1024**3
FACT_BATCH = 1_000_000  # top-k rows per numpy batch of the overlap facts


def fingerprint(run_dir: str | Path) -> str:
    """What the index is built from: the table files' names (relative), sizes and mtimes, the
    index format and DuckDB's version (tcode is DuckDB's hash)."""
    run_dir = Path(run_dir)
    parts = [f"v{INDEX_VERSION}", f"kov{KOV}", f"hi{TRACE_AGG_HIGH!r}", duckdb.__version__]
    relabel = _labels(run_dir)
    if relabel != "sampled_from":  # an old series run's labels, read as today's
        parts.append(relabel)
    run = Run.open(run_dir)
    for name in ("tokens", "topk", "traces"):
        for f in run.table_files(name):
            st = f.stat()
            parts.append(f"{f.relative_to(run_dir)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def index_path(run_dir: str | Path) -> Path:
    """Where the run's index lives: in the run folder when writable, else in the temp folder."""
    run_dir = Path(run_dir).resolve()
    if os.access(run_dir, os.W_OK):
        return run_dir / INDEX_FILE
    tag = hashlib.sha256(str(run_dir).encode()).hexdigest()[:20]
    d = Path(tempfile.gettempdir()) / "shiftlens-index"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{run_dir.name}-{tag}.duckdb"


def _stored_fingerprint(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
        try:
            rows = con.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchall()
        finally:
            con.close()
    except duckdb.Error:
        return None  # unreadable or from another format: rebuilt
    return rows[0][0] if rows else None


@contextmanager
def _locked(path: Path):
    with open(path.with_name(path.name + ".lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_index(run_dir: str | Path) -> Path:
    """The run's index file, built now if missing or stale (see the module doc)."""
    run_dir = Path(run_dir)
    path = index_path(run_dir)
    fp = fingerprint(run_dir)
    if _stored_fingerprint(path) == fp:
        return path
    with _locked(path):
        if _stored_fingerprint(path) == fp:  # another process built it meanwhile
            return path
        tmp = path.with_name(f"{path.name}.{os.getpid()}.building")
        tmp.unlink(missing_ok=True)
        try:
            _build(run_dir, tmp, fp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            Path(str(tmp) + ".wal").unlink(missing_ok=True)
            shutil.rmtree(str(tmp) + ".spill", ignore_errors=True)
    return path


def _view(db, view: str, files: list[Path], select: str = "*") -> None:
    lst = ", ".join(_sql_str(str(f.resolve())) for f in files)
    db.execute(f"CREATE VIEW {view} AS SELECT {select} FROM read_parquet([{lst}], "
               "union_by_name = true)")


def _labels(run_dir: Path) -> str:
    """SQL of the run's sampled_from as today's labels (core.store.samplers.label_sql: an
    old series run's "tuned" traces were sampled by its source run's model)."""
    return Run.open(run_dir).label_sql()


# Rows per row group of the index's tables (DuckDB's default is 122,880): zone maps per 16k
# rows let a few traces' rows (search context, one trace's tokens) be read without decoding
# most of the table; measured on 10M rows: 200 traces' context 26 ms against 42 ms.
ROW_GROUP_SIZE = 16_384


def _build(run_dir: Path, out: Path, fp: str) -> None:
    db = duckdb.connect()
    try:
        db.execute(f"ATTACH {_sql_str(str(out))} AS ix (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        db.execute("USE ix")
        db.execute(f"SET memory_limit = '{BUILD_MEMORY // 2**20}MiB'")
        db.execute(f"SET temp_directory = {_sql_str(str(out) + '.spill')}")
        run = Run.open(run_dir)
        tok_files, topk_files = run.table_files("tokens"), run.table_files("topk")
        tr_files = run.table_files("traces")
        if not tok_files or not tr_files:
            raise ValueError(f"{run_dir}: no tokens or traces table to index")
        _view(db, "tokens_v", tok_files)
        relabel = _labels(run_dir)
        _view(db, "traces_v", tr_files, "*" if relabel == "sampled_from"
              else f"* REPLACE ({relabel} AS sampled_from)")
        db.execute("CREATE TABLE traces_m AS SELECT * FROM traces_v")
        db.execute("""CREATE TABLE cells AS SELECT (row_number() OVER (ORDER BY
            sampled_from NULLS LAST, correct NULLS LAST) - 1)::INTEGER AS cell, *
          FROM (SELECT tr.sampled_from, tr.correct, count(*) AS n_rows,
                  count(t.top1_agree) AS n_top1, count(*) FILTER (WHERE t.top1_agree) AS s_top1
                FROM tokens_v t LEFT JOIN traces_m tr USING (trace_id) GROUP BY ALL)""")
        db.execute("CREATE TABLE vocab AS SELECT hash(token) AS tcode, token FROM "
                   "(SELECT DISTINCT token FROM tokens_v WHERE token IS NOT NULL)")
        _facts(db, topk_files)
        ovs = ", ".join(f"f.k_ov{i}" for i in range(1, KOV + 1))
        db.execute(f"""CREATE TABLE tokx AS SELECT t.*, tr.correct, tr.sampled_from, tr.length,
            f.trace_id IS NOT NULL AS k_has, f.k_r, f.k_pb, f.k_n, {ovs}, c.cell,
            CASE WHEN t.token IS NULL THEN NULL ELSE hash(t.token) END AS tcode
          FROM tokens_v t LEFT JOIN traces_m tr USING (trace_id)
          LEFT JOIN facts f USING (trace_id, pos)
          JOIN cells c ON tr.sampled_from IS NOT DISTINCT FROM c.sampled_from
            AND tr.correct IS NOT DISTINCT FROM c.correct
          ORDER BY t.trace_id, t.pos""")
        db.execute("DROP TABLE facts")
        db.execute("""CREATE TABLE tokx_js AS SELECT js, trace_id, pos, cell, tcode, token,
            rank_base, dlogp, rel_pos FROM tokx WHERE js IS NOT NULL
          ORDER BY js DESC, trace_id, pos""")
        db.execute("CREATE TABLE tokx_ctx AS SELECT trace_id, pos, token FROM tokx "
                   "ORDER BY trace_id, pos")
        sums = ", ".join(f"sum(k_ov{k})::BIGINT AS s{k}" for k in range(1, KOV + 1))
        db.execute(f"""CREATE TABLE cell_kov AS SELECT cell, least(k_n, {KOV}) AS kn,
            count(*) AS c, {sums} FROM tokx WHERE k_has AND k_n >= 1 GROUP BY ALL""")
        db.execute(f"""CREATE TABLE trace_agg AS SELECT trace_id, max(js) AS max_js,
            avg(js) AS mean_js, count(*) FILTER (WHERE js > {TRACE_AGG_HIGH!r}) AS n_high
          FROM tokx GROUP BY trace_id""")
        for v in ("tokens_v", "traces_v", "topk_v"):  # they name the Parquet files' paths
            db.execute(f"DROP VIEW IF EXISTS {v}")
        db.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR)")
        db.execute("INSERT INTO meta VALUES ('fingerprint', ?), ('source', ?)",
                   [fp, json.dumps({"run_dir": str(run_dir.resolve())})])
        db.execute("CHECKPOINT ix")
    finally:
        db.close()


_FACT_COLS = ["trace_id", "pos", "k_r", "k_pb", "k_n"] + [f"k_ov{i}" for i in range(1, KOV + 1)]


def _facts(db, topk_files: list[Path]) -> None:
    """Table `facts`: trace_id, pos, k_r, k_pb, k_n, k_ov1..k_ovKOV of every top-k row, with
    k_ovK = len(list_intersect(base_ids[:K], tuned_ids[:K])) (distinct shared ids), in numpy
    batches when every id list has one length without NULLs, else in SQL."""
    cols = ("trace_id INTEGER, pos INTEGER, k_r INTEGER, k_pb FLOAT, k_n BIGINT, "
            + ", ".join(f"k_ov{i} UTINYINT" for i in range(1, KOV + 1)))
    db.execute(f"CREATE TABLE facts ({cols})")
    if not topk_files:
        return
    _view(db, "topk_v", topk_files)
    lo_b, hi_b, lo_t, hi_t, nulls = db.execute(
        "SELECT min(len(base_ids)), max(len(base_ids)), min(len(tuned_ids)), "
        "max(len(tuned_ids)), count(*) FILTER (WHERE base_ids IS NULL OR tuned_ids IS NULL "
        "OR list_count(base_ids) < len(base_ids) OR list_count(tuned_ids) < len(tuned_ids)) "
        "FROM topk_v").fetchall()[0]
    uniform = lo_b is not None and lo_b == hi_b == lo_t == hi_t and lo_b > 0 and not nulls
    if not uniform:
        ov = ", ".join(overlap_sql("base_ids", "tuned_ids", i) for i in range(1, KOV + 1))
        db.execute(f"""INSERT INTO facts SELECT trace_id, pos, tuned_top1_rank_base,
            tuned_top1_prob_base, least(len(base_ids), len(tuned_ids)), {ov} FROM topk_v""")
        return
    rd = db.cursor()  # reads while `db` inserts
    rd.execute("USE ix")
    try:
        reader = rd.sql("SELECT trace_id, pos, tuned_top1_rank_base AS k_r, "
                        "tuned_top1_prob_base AS k_pb, base_ids, tuned_ids FROM topk_v"
                        ).to_arrow_reader(FACT_BATCH)
        L = int(lo_b)
        for batch in reader:
            n = batch.num_rows
            B, T = (batch.column(c).flatten().to_numpy(zero_copy_only=False).reshape(n, L)
                    for c in ("base_ids", "tuned_ids"))
            ov = overlap_sizes(B, T)
            out = pa.Table.from_batches([batch]).select(["trace_id", "pos", "k_r", "k_pb"])
            out = out.append_column("k_n", pa.array(np.full(n, L, dtype=np.int64)))
            for k in range(1, KOV + 1):
                out = out.append_column(f"k_ov{k}", pa.array(ov[:, k - 1]))
            db.register("_facts_batch", out)
            db.execute("INSERT INTO facts SELECT * FROM _facts_batch")
            db.unregister("_facts_batch")
    finally:
        rd.close()


def overlap_sizes(B: np.ndarray, T: np.ndarray, chunk: int = 250_000) -> np.ndarray:
    """(n, KOV) uint8: for each row, the number of distinct ids shared by the first k base ids
    B[:, :k] and the first k tuned ids T[:, :k], k = 1..KOV (lists of one length L)."""
    n, L = B.shape
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
    return ov


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
