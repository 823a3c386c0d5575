"""Writing run tables atomically, with provenance in every Parquet file.

Nothing is ever written in place: a file goes to `<name>.tmp` and is renamed, and a run is
assembled in a staging folder (`cache/.staging/<run>/`) that is renamed into `cache/<run>/`
only once every table and the manifest are complete. A reader therefore either sees a
whole run or none. Staging also holds per-shard part files, which is what makes an
interrupted precompute resumable.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.store.schema import (
    MANIFEST_FILE,
    SCHEMA_VERSION,
    TOKENS_SCHEMA,
    TOPK_SCHEMA,
    TRACES_SCHEMA,
)

STAGING = ".staging"


def write_parquet(table: pa.Table, path: Path, metadata: dict | None = None) -> None:
    """Atomic Parquet write; `metadata` goes into the file's key-value metadata as JSON."""
    meta = dict(table.schema.metadata or {})
    meta[b"shiftlens.schema_version"] = SCHEMA_VERSION.encode()
    if metadata is not None:
        meta[b"shiftlens.manifest"] = json.dumps(metadata, default=str).encode()
    table = table.replace_schema_metadata(meta)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd", use_dictionary=True)
    os.replace(tmp, path)


def write_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


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


def staging_dir(cache: Path, run: str) -> Path:
    return cache / STAGING / run


def publish(staging: Path, final: Path) -> None:
    """Move a complete staging folder to its final place (replacing an older run)."""
    if not (staging / MANIFEST_FILE).is_file():
        raise RuntimeError(f"{staging}: no manifest; refusing to publish an incomplete run")
    parts = staging / "parts"
    if parts.exists():
        shutil.rmtree(parts)
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
