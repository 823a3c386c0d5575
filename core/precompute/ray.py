"""The Ray engine: the precompute job's shards run on a Ray Data actor pool.

    driver: validate (as the local engine) -> dataset of unfinished shard indices, one block
    per shard -> map_batches over an actor pool (each actor loads the pair once and runs
    `core.precompute.driver._shard`, the local engine's shard function, with the same per-shard
    seeds) -> every actor writes its shard's part files + `.done` marker -> driver assembles
    tokens/topk/traces.parquet + manifest.json and publishes, exactly as the local engine

Design: workers write Parquet part files (`tokens-00003.parquet`, ...) into the run's staging
area, and the driver assembles them into the same single files the local engine writes.
So a run has one layout whichever engine made it: the DuckDB layer, the app, exports and
`--traces-from` read it unchanged, the manifest's config_hash is the same (engine, workers
and parts_uri are not content), and a run started on one engine resumes on the other (same
staging folder, same `.done` markers). Assembly is one sequential read + write of the tables,
small next to sampling and scoring.

Where parts go (`parts_uri`): by default the local staging folder
`<cache>/.staging/<run>/parts`, which is right on one machine or when the cache is on a
filesystem every node mounts. On a cluster without a shared filesystem pass a pyarrow
filesystem URI (`s3://bucket/prefix`, `gs://...`, `hdfs://...`); workers write through
`pyarrow.fs.FileSystem.from_uri`, and the driver copies the parts into local staging before
assembling. Tested with local folders and with an S3 endpoint (a local moto server).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.config import PrecomputeConfig
from core.engine.pair import load_pair
from core.precompute import driver as pc
from core.prompts import load_prompts
from core.store.schema import SCHEMA_VERSION, TOKENS_FILE, TOPK_FILE, TRACES_FILE
from core.store.storage import publish, staging_dir

TABLES = (TOKENS_FILE, TOPK_FILE, TRACES_FILE)


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local folder or a pyarrow filesystem URI."""
    if "://" not in uri:
        uri = str(Path(uri).expanduser().resolve())
    return pafs.FileSystem.from_uri(uri)


def _join_uri(uri: str, name: str) -> str:
    """`uri` with `name` appended to its path, before any query string (s3://b/p?region=x ->
    s3://b/p/name?region=x)."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(uri)
    return urlunsplit((u.scheme, u.netloc, f"{u.path.rstrip('/')}/{name}", u.query, u.fragment))


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _write_table(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """A part file as `storage.write_parquet` writes it (same metadata and codec), written to
    `<path>.tmp` and moved into place so a reader never sees half a file."""
    meta = dict(table.schema.metadata or {})
    meta[b"shiftlens.schema_version"] = SCHEMA_VERSION.encode()
    tmp = path + ".tmp"
    pq.write_table(table.replace_schema_metadata(meta), tmp, filesystem=fs,
                   compression="zstd", use_dictionary=True)
    fs.move(tmp, path)


def _write_text(fs: pafs.FileSystem, path: str, text: str) -> None:
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


class ShardWorker:
    """One actor of the pool: loads the pair and the prompt set once, then runs shards."""

    def __init__(self, cfg: PrecomputeConfig, parts_uri: str, reused: dict | None):
        self.cfg = cfg
        self.pair = load_pair(cfg.base, cfg.tuned, allow_pickle=cfg.allow_pickle,
                              trust_remote_code=cfg.trust_remote_code, device=cfg.device)
        self.ps = load_prompts(cfg.prompts, limit=cfg.max_prompts or None)
        self.shards = pc.shard_indices(cfg, self.ps)
        self.reused = reused
        self.fs, self.root = _fs(parts_uri)
        self.info = json.dumps(pc.pair_info(self.pair))

    def __call__(self, batch: dict) -> dict:
        done, n_prompts = [], []
        for k in (int(x) for x in batch["shard"]):
            tables = pc._shard(self.cfg, self.pair, self.ps, self.shards[k], k, self.reused)
            for fname, table in zip(TABLES, tables):
                _write_table(self.fs, f"{self.root}/{Path(fname).stem}-{k:05d}.parquet", table)
            _write_text(self.fs, f"{self.root}/shard-{k:05d}.done", "ok")
            done.append(k)
            n_prompts.append(len(self.shards[k]))
        return {"shard": done, "n_prompts": n_prompts, "info": [self.info] * len(done)}


def precompute_ray(cfg: PrecomputeConfig, *, num_workers: int = 2,
                   log: Callable[[str], None] = print,
                   progress: Callable[[dict], None] | None = None) -> Path:
    """Run the job described by `cfg` on Ray; returns the published run folder.

    Connects to the Ray instance already initialised in this process, else `ray.init()`
    (which joins the cluster named by RAY_ADDRESS, or starts a local one). `num_workers`
    actors each hold the pair; set `cfg.device="cuda"` to give each actor one GPU.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise pc.RunError("--engine ray needs Ray Data: pip install -r requirements-ray.txt"
                          ) from None

    def report(stage: str, shards_done: int, prompts_done: int) -> None:
        if progress is not None:
            progress({"stage": stage, "shards_done": shards_done, "shards_total": len(shards),
                      "prompts_done": prompts_done, "prompts_total": len(ps.rows)})

    if num_workers < 1:
        raise pc.RunError(f"--workers {num_workers}: need at least one worker")
    cfg, ps, final, want = pc._start(cfg, log)
    if ps is None:
        return final
    cache = Path(cfg.cache)
    reused = pc._reused_traces(cfg, cache, ps) if cfg.traces_from else None
    staging = staging_dir(cache, cfg.name)
    local_parts = staging / "parts"
    lock = pc._Lock(cache / ".staging" / f"{cfg.name}.lock", cfg.name)
    try:
        pc._open_staging(staging, want)
        parts_uri = cfg.parts_uri or str(local_parts)
        remote = bool(cfg.parts_uri)
        fs, root = _fs(parts_uri)
        if remote:
            root = f"{root.rstrip('/')}/{cfg.name}-{want}"  # one run's parts per prefix
            parts_uri = _join_uri(parts_uri, f"{cfg.name}-{want}")
            fs.create_dir(root, recursive=True)
        t0 = time.time()
        shards = pc.shard_indices(cfg, ps)
        todo = [k for k in range(len(shards))
                if not _exists(fs, f"{root}/shard-{k:05d}.done")]
        if len(todo) < len(shards):
            log(f"resuming {cfg.name!r}: {len(shards) - len(todo)}/{len(shards)} shards done")
        n_done = len(shards) - len(todo)
        p_done = len(ps.rows) - sum(len(shards[k]) for k in todo)
        report("shards", n_done, p_done)
        info = None
        if todo:
            if not ray.is_initialized():
                ray.init(include_dashboard=False)
            pool = min(num_workers, len(todo))
            gpus = 1 if cfg.device == "cuda" else 0
            ds = ray.data.from_items([{"shard": k} for k in todo], override_num_blocks=len(todo))
            ds = ds.map_batches(ShardWorker, batch_size=1,
                                compute=ray.data.ActorPoolStrategy(size=pool),
                                fn_constructor_kwargs={"cfg": cfg, "parts_uri": parts_uri,
                                                       "reused": reused},
                                num_cpus=1, num_gpus=gpus)
            log(f"precompute {cfg.name!r} on Ray: {len(todo)} shards, {pool} workers")
            for row in ds.iter_rows():
                n_done, p_done = n_done + 1, p_done + int(row["n_prompts"])
                info = json.loads(row["info"])
                log(f"shard {int(row['shard'])} done ({n_done}/{len(shards)})")
                report("shards", n_done, p_done)
        if remote:  # bring the parts home: the driver assembles from local staging
            local_parts.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(root, str(local_parts.resolve()), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
        if info is None:  # every shard was already done: the driver describes the pair
            info = pc.pair_info(load_pair(cfg.base, cfg.tuned, allow_pickle=cfg.allow_pickle,
                                          trust_remote_code=cfg.trust_remote_code,
                                          device=cfg.device))
        report("assembling", n_done, p_done)
        pc._assemble(cfg, info, ps, staging, len(shards), time.time() - t0)
        publish(staging, final)
        if remote:
            fs.delete_dir(root)
        report("done", n_done, p_done)
    finally:
        lock.release()
    log(f"wrote {final}")
    return final
