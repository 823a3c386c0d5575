"""The Ray executor: the precompute job's shards run on a Ray Data actor pool.

    driver (core.precompute.driver) -> dataset of unfinished shard indices, one block per
    shard -> map_batches over an actor pool (each actor loads the pair once, as the local
    executor does: both models, or neither in `--scoring sequential`, which then loads one
    model at a time) -> every actor runs core.precompute.shard.run_shard and writes the
    shard's part files + `.done` marker -> the driver assembles and publishes

Workers write Parquet part files into the run's staging area, so a run has one layout
whichever executor made it: the config_hash is the same (engine, workers and parts_uri are
not content), and a run started on one executor resumes on the other.

Where parts go (`parts_uri`): by default the local staging folder
`<cache>/.staging/<run>/parts`, which is right on one machine or when the cache is on a
filesystem every node mounts. On a cluster without a shared filesystem pass a pyarrow
filesystem URI (`s3://bucket/prefix`, `gs://...`, `hdfs://...`); workers write through
`pyarrow.fs.FileSystem.from_uri` under `<prefix>/<run>-<config hash>`, and the driver copies
the parts into local staging before assembling, then deletes them. Tested with local folders
and with an S3 endpoint (a local moto server).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

from core.config import PrecomputeConfig
from core.engine.pair import load_pair
from core.errors import RunError
from core.precompute import shard
from core.store.manifest import config_hash


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local folder or a pyarrow filesystem URI."""
    if "://" not in uri:
        uri = str(Path(uri).expanduser().resolve())
    return pafs.FileSystem.from_uri(uri)


def _join_uri(uri: str, name: str) -> str:
    """`uri` with `name` appended to its path, before any query string (s3://b/p?region=x ->
    s3://b/p/name?region=x)."""
    u = urlsplit(uri)
    return urlunsplit((u.scheme, u.netloc, f"{u.path.rstrip('/')}/{name}", u.query, u.fragment))


def _load_pair(cfg: PrecomputeConfig):
    return load_pair(cfg.base, cfg.tuned, allow_pickle=cfg.allow_pickle,
                     trust_remote_code=cfg.trust_remote_code, device=cfg.device,
                     load_weights=cfg.scoring != "sequential")


class ShardWorker:
    """One actor of the pool: loads the pair and the prompt set once, then runs shards."""

    def __init__(self, cfg: PrecomputeConfig, parts_uri: str, reused: dict | None):
        self.cfg = cfg
        self.pair = _load_pair(cfg)
        self.ps = shard.load_inputs(cfg)
        self.shards = shard.shard_indices(cfg, self.ps)
        self.reused = reused
        self.fs, self.root = _fs(parts_uri)

    def __call__(self, batch: dict) -> dict:
        done, n_prompts = [], []
        for k in (int(x) for x in batch["shard"]):
            tables = shard.run_shard(self.cfg, self.pair, self.ps, self.shards[k], k,
                                     self.reused)
            shard.write_part(k, tables, self.root, self.fs)
            done.append(k)
            n_prompts.append(len(self.shards[k]))
        info = json.dumps(shard.pair_info(self.pair))
        return {"shard": done, "n_prompts": n_prompts, "info": [info] * len(done)}


class RayExecutor:
    """Connects to the Ray instance already initialised in this process, else `ray.init()`
    (which joins the cluster named by RAY_ADDRESS, or starts a local one). `cfg.workers`
    actors each hold the pair; `cfg.device="cuda"` gives each actor one GPU."""

    def __init__(self, cfg: PrecomputeConfig, shards: list[list[int]], reused: dict | None,
                 parts: Path, log: Callable[[str], None]):
        try:
            import ray  # noqa: F401
            import ray.data  # noqa: F401
        except ImportError:
            raise RunError("--engine ray needs Ray Data: pip install -r requirements-ray.txt"
                           ) from None
        self.cfg, self.shards, self.reused, self.local, self.log = cfg, shards, reused, parts, log
        self.remote = bool(cfg.parts_uri)
        self.uri = cfg.parts_uri or str(parts)
        self.fs, self.root = _fs(self.uri)
        if self.remote:  # one run's parts per prefix
            sub = f"{cfg.name}-{config_hash(cfg)}"
            self.root = f"{self.root.rstrip('/')}/{sub}"
            self.uri = _join_uri(self.uri, sub)
            self.fs.create_dir(self.root, recursive=True)

    def is_done(self, k: int) -> bool:
        return self.fs.get_file_info(f"{self.root}/{shard.done_name(k)}").type \
            != pafs.FileType.NotFound

    def run(self, todo: list[int], on_step=None) -> Iterator[tuple[int, dict]]:
        # shards run in Ray workers: progress is reported per finished shard only
        if not todo:
            return
        import ray
        import ray.data

        if not ray.is_initialized():
            ray.init(include_dashboard=False)
        pool = min(self.cfg.workers, len(todo))
        ds = ray.data.from_items([{"shard": k} for k in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(ShardWorker, batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=pool),
                            fn_constructor_kwargs={"cfg": self.cfg, "parts_uri": self.uri,
                                                   "reused": self.reused},
                            num_cpus=1, num_gpus=1 if self.cfg.device == "cuda" else 0)
        self.log(f"precompute {self.cfg.name!r} on Ray: {len(todo)} shards, {pool} workers")
        for row in ds.iter_rows():
            self.log(f"shard {int(row['shard'])} done")
            yield int(row["shard"]), json.loads(row["info"])

    def finish(self) -> None:
        if self.remote:  # bring the parts home: the driver assembles from local staging
            self.local.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(self.root, str(self.local.resolve()), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())

    def describe_pair(self) -> dict:
        return shard.pair_info(_load_pair(self.cfg))

    def cleanup(self) -> None:
        if self.remote:
            self.fs.delete_dir(self.root)
