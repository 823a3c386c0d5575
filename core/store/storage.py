"""The writers of run tables: Arrow tables from score columns, and atomic Parquet/JSON writes
with provenance in every Parquet file.

Nothing is ever written in place: a file goes to `<name>.tmp` and is renamed. Where whole
runs are staged and published is core.store.cache's business.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.store.schema import (
    MANIFEST_FILE,
    SCHEMA_VERSION,
    TOKENS_SCHEMA,
    TOPK_SCHEMA,
    TRACES_SCHEMA,
)


def write_parquet(table: pa.Table, path: Path | str, metadata: dict | None = None,
                  filesystem: pafs.FileSystem | None = None) -> None:
    """Atomic Parquet write (to `<name>.tmp`, then renamed); `metadata` goes into the file's
    key-value metadata as JSON. `filesystem` (a pyarrow filesystem, e.g. S3) writes there,
    with `path` a path in it; default the local disk."""
    meta = dict(table.schema.metadata or {})
    meta[b"shiftlens.schema_version"] = SCHEMA_VERSION.encode()
    if metadata is not None:
        meta[b"shiftlens.manifest"] = json.dumps(metadata, default=str).encode()
    table = table.replace_schema_metadata(meta)
    tmp = f"{path}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=True,
                       filesystem=filesystem)
    except BaseException:  # a full disk, a kill: no half-written .tmp is left behind
        if filesystem is None:
            Path(tmp).unlink(missing_ok=True)
        raise
    if filesystem is None:
        os.replace(tmp, path)
    else:
        filesystem.move(tmp, str(path))


def write_bytes(data: bytes, path: Path) -> Path:
    """Atomic write of `data` to `path` (parent folders created): a temporary file unique to
    this process and thread, then one rename; never a half-written file. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(obj: dict, path: Path) -> None:
    """Atomic JSON write (UTF-8, indented)."""
    write_bytes(json.dumps(obj, indent=2, default=str, ensure_ascii=False).encode("utf-8"),
                path)


def tokens_table(scores: dict, trace_ids: np.ndarray, strings: list[str]) -> pa.Table:
    """Per-token table from `scoring.score_traces` output; `trace_ids[i]` names trace i."""
    off = scores["offsets"]
    lens = np.diff(off)
    tid = np.repeat(trace_ids.astype(np.int32), lens)
    pos = (np.arange(off[-1]) - np.repeat(off[:-1], lens)).astype(np.int32)
    rel = (pos / np.repeat(np.maximum(lens, 1), lens)).astype(np.float32)
    cols = {"trace_id": tid, "pos": pos, "rel_pos": rel, "token_id": scores["token_id"],
            "token": strings}
    for f in TOKENS_SCHEMA:
        if f.name not in cols:
            cols[f.name] = scores[f.name]
    return pa.Table.from_pydict(
        {f.name: pa.array(cols[f.name], type=f.type) for f in TOKENS_SCHEMA}, schema=TOKENS_SCHEMA)


def topk_table(scores: dict, trace_ids: np.ndarray, vocab_strings) -> pa.Table:
    """Top-k table; `vocab_strings(ids: np.ndarray) -> list[str]` maps ids to token text."""
    off = scores["offsets"]
    lens = np.diff(off)
    k = scores["base_topk_ids"].shape[1] if off[-1] else 0

    def lists(a: np.ndarray, typ) -> pa.Array:
        flat = pa.array(a.reshape(-1), type=typ)
        return pa.FixedSizeListArray.from_arrays(flat, k).cast(pa.list_(typ))

    def str_lists(ids: np.ndarray) -> pa.Array:
        flat = pa.array(vocab_strings(ids.reshape(-1)), type=pa.string())
        return pa.FixedSizeListArray.from_arrays(flat, k).cast(pa.list_(pa.string()))

    cols = {
        "trace_id": pa.array(np.repeat(trace_ids.astype(np.int32), lens)),
        "pos": pa.array((np.arange(off[-1]) - np.repeat(off[:-1], lens)).astype(np.int32)),
        "base_ids": lists(scores["base_topk_ids"].astype(np.int32), pa.int32()),
        "base_tokens": str_lists(scores["base_topk_ids"]),
        "base_probs": lists(scores["base_topk_probs"].astype(np.float32), pa.float32()),
        "tuned_ids": lists(scores["tuned_topk_ids"].astype(np.int32), pa.int32()),
        "tuned_tokens": str_lists(scores["tuned_topk_ids"]),
        "tuned_probs": lists(scores["tuned_topk_probs"].astype(np.float32), pa.float32()),
        "tuned_top1_rank_base": pa.array(scores["tuned_top1_rank_base"].astype(np.int32)),
        "tuned_top1_prob_base": pa.array(scores["tuned_top1_prob_base"].astype(np.float32)),
    }
    return pa.Table.from_pydict(cols, schema=TOPK_SCHEMA)


def traces_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=TRACES_SCHEMA)


def write_run(folder: Path, tables: dict[str, pa.Table], manifest: dict) -> None:
    """Write a run's tables ({file name: table}) into a staging folder, each with the
    manifest in its metadata, then manifest.json last: its presence marks the run complete."""
    for name, table in tables.items():
        write_parquet(table, Path(folder) / name, metadata=manifest)
    write_manifest(folder, manifest)


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write a run folder's manifest.json (atomic); written last, it marks the run complete."""
    write_json(manifest, Path(folder) / MANIFEST_FILE)
