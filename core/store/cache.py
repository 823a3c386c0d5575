"""The run-folder owner: what a run is, how it is named, found, locked, staged, published,
renamed and deleted. Every other module goes through these functions.

    <cache>/<run>/                a complete run (manifest.json marks completeness)
    <cache>/.staging/<run>/       a run being computed (part files, resumable)
    <cache>/.staging/<run>.lock   flock held by the one process writing <run>
    <cache>/.trash-*              a run being deleted (renamed away first, then removed)

Names are full-match checked (letters, digits, '.', '_', '-'; starting with a letter or
digit; at most 100 characters). The default cache is core.paths.default_cache()
($SHIFTLENS_CACHE, else cache/ in the repository) for the CLI and the app alike.

This module knows nothing about jobs: rename and delete take `busy`, the runs a job holds
(core.api passes core.jobs.queue.busy_runs), so the store stays below the job queue.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from core.errors import RunsError
from core.paths import default_cache
from core.store.manifest import config_hash, read_manifest
from core.store.schema import MANIFEST_FILE
from core.store.storage import write_json

__all__ = ["RUN_NAME", "RunInfo", "RunLock", "check_start", "contrast_candidates",
           "default_cache", "delete_run", "is_locked", "list_runs", "name_problem",
           "open_staging", "publish", "rename_run", "resolve_run", "series_of", "staging_dir"]

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
STAGING = ".staging"


def name_problem(name: str | None, what: str = "run name") -> str | None:
    """Why `name` is not a valid run name (None when it is)."""
    if isinstance(name, str) and RUN_NAME.fullmatch(name):
        return None
    return f"{what} {name!r}: use letters, digits, '.', '_' and '-' only"


# ----------------------------------------------------------------------------- listing


@dataclass
class RunInfo:
    name: str
    path: Path
    kind: str | None
    pair: str  # "tuned vs base"
    prompt_set: str
    created: str
    n_traces: int
    n_tokens: int
    manifest: dict


def list_runs(cache: str | Path) -> list[RunInfo]:
    """Complete runs (folders with a manifest), newest first. Staging folders are skipped."""
    cache = Path(cache)
    if not cache.is_dir():
        return []
    out = []
    for d in sorted(cache.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        m = read_manifest(d)
        if m is None:
            continue
        models = m.get("models", {})
        spec = {k: models.get(k, {}).get('spec', '?') for k in ('tuned', 'base')}
        pair = f"{spec['tuned']} vs {spec['base']}"
        stats = m.get("stats", {})
        out.append(RunInfo(d.name, d, m.get("kind"), pair,
                           Path(m.get("prompt_set", {}).get("path", "?")).name,
                           m.get("created", ""), stats.get("n_traces", 0),
                           stats.get("n_tokens", 0), m))
    return sorted(out, key=lambda r: r.created, reverse=True)


def resolve_run(cache: str | Path, run: str | Path) -> Path:
    """The folder of a complete run: `run` itself when it is a run folder, else the run
    named `run` under `cache`. Raises RunsError naming where it looked."""
    p = Path(run)
    if p.is_dir() and (p / MANIFEST_FILE).is_file():
        return p
    p = Path(cache) / str(run)
    if name_problem(str(run)) is not None or read_manifest(p) is None:
        raise RunsError(f"{run}: no complete run (looked in {p})")
    return p


def series_of(runs: list[RunInfo], run: RunInfo) -> list[str]:
    """The checkpoint series ending at `run`: runs that re-scored its traces with earlier
    checkpoints (`traces_from == run`), by training step, then `run` itself. Empty if none."""
    steps = [r for r in runs if r.manifest.get("traces_from") == run.name
             and r.manifest.get("series_step") is not None]
    if not steps:
        return []
    steps.sort(key=lambda r: r.manifest["series_step"])
    return [r.name for r in steps] + [run.name]


def contrast_candidates(runs: list[RunInfo], run: RunInfo) -> list[str]:
    """Other runs on the same base model and prompt set (e.g. RL vs SFT), SFT runs first."""
    def key(r: RunInfo):
        m = r.manifest
        return (m.get("models", {}).get("base", {}).get("spec"),
                m.get("prompt_set", {}).get("fingerprint"))
    same = [r for r in runs if r.name != run.name and key(r) == key(run)
            and not r.manifest.get("traces_from")]
    return [r.name for r in sorted(same, key=lambda r: (r.kind != "sft", r.name))]


# ----------------------------------------------------------------------------- writing


def staging_dir(cache: str | Path, run: str) -> Path:
    return Path(cache) / STAGING / run


def _lock_path(cache: str | Path, run: str) -> Path:
    return Path(cache) / STAGING / f"{run}.lock"


class RunLock:
    """An exclusive, non-blocking flock on `<cache>/.staging/<run>.lock`, held by the one
    process that writes the run; `error` is the exception type raised when it is held."""

    def __init__(self, cache: str | Path, run: str, error: type[Exception] = RunsError):
        path = _lock_path(cache, run)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a+")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise error(f"run {run!r} is being computed by another process") from None

    def release(self) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(cache: str | Path, run: str) -> bool:
    """Whether a live process holds run's lock (never creates the lock file: a listing must
    not touch cache/)."""
    lock = _lock_path(cache, run)
    if not lock.is_file():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
    return False


def check_start(cache: str | Path, name: str, config, error: type[Exception]) -> str:
    """Whether a run `name` computed from `config` (a PrecomputeConfig) may start: "done"
    when a complete run with the same settings exists, "new" when it may be (re)computed.
    Raises `error` for an invalid name, a run with other settings (unless config.force) and
    a folder that is not a run."""
    problem = name_problem(name)
    if problem:
        raise error(problem)
    final = Path(cache) / name
    old = read_manifest(final)
    if old is not None and not config.force:
        if old.get("config_hash") == config_hash(config):
            return "done"
        raise error(f"run {name!r} exists with other settings; pass --force to replace it "
                    "or --name to write a new run")
    if final.exists() and old is None and not config.force:
        raise error(f"{final} exists and is not a run folder; remove it or choose --name")
    return "new"


def open_staging(cache: str | Path, run: str, want: str) -> Path:
    """The run's staging folder, kept when it was made with the same settings (`want`, the
    config hash: resume) and restarted otherwise; returns it with an empty `parts/` ready."""
    staging = staging_dir(cache, run)
    stamp = staging / "config_hash"
    if staging.exists() and (not stamp.is_file() or stamp.read_text() != want):
        shutil.rmtree(staging)  # other settings: restart cleanly
    (staging / "parts").mkdir(parents=True, exist_ok=True)
    stamp.write_text(want)
    return staging


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


# ----------------------------------------------------------------------------- rename, delete


def _check_idle(cache: Path, name: str, busy: Mapping[str, str]) -> None:
    """Refuse a run that a queued/running job will write or a live precompute holds."""
    job = busy.get(name)
    if job:
        raise RunsError(f"run {name!r} is being written by job {job}; cancel it first")
    if is_locked(cache, name):
        raise RunsError(f"run {name!r} is being computed by another process")


def _existing_run(cache: Path, name: str) -> Path:
    if name_problem(name):
        raise RunsError(f"{name!r} is not a run name")
    path = cache / name
    if read_manifest(path) is None:
        raise RunsError(f"no complete run named {name!r} in {cache}")
    return path


def rename_run(cache: str | Path, old: str, new: str, busy: Mapping[str, str] = {}) -> Path:
    """Rename run `old` to `new`; returns the new run folder.

    The folder is renamed (one atomic rename); then manifest.json gets the new "name" and
    config.name plus a "renamed_from" list, and runs that re-scored this run's traces (a
    checkpoint series: manifest traces_from == old) point at the new name, so series_of()
    still finds them. The manifest copy inside each Parquet file's key-value metadata keeps
    the name the run was computed under (rewriting whole tables to change it would cost as
    much as the run is large); manifest.json is the authority. Refuses (RunsError) a name
    that is not a run, a new name that is invalid or taken, and runs that a job (`busy`:
    {run: job id}) or a live precompute is writing.
    """
    cache = Path(cache)
    src = _existing_run(cache, old)
    problem = name_problem(new, "new name")
    if problem:
        raise RunsError(problem)
    dst = cache / new
    if dst.exists() or staging_dir(cache, new).exists():
        raise RunsError(f"{new!r} is taken (a run, a folder or a run being computed)")
    _check_idle(cache, old, busy)
    _check_idle(cache, new, busy)
    os.rename(src, dst)
    m = read_manifest(dst)
    m["renamed_from"] = [*m.get("renamed_from", []), old]
    m["name"] = new
    if isinstance(m.get("config"), dict):
        m["config"]["name"] = new
    write_json(m, dst / MANIFEST_FILE)
    for r in list_runs(cache):
        if r.manifest.get("traces_from") == old:
            r.manifest["traces_from"] = new
            if isinstance(r.manifest.get("config"), dict):
                r.manifest["config"]["traces_from"] = new
            write_json(r.manifest, r.path / MANIFEST_FILE)
    return dst


def delete_run(cache: str | Path, name: str, busy: Mapping[str, str] = {}) -> None:
    """Delete run `name`: renamed to a hidden trash folder at once (so no reader sees half a
    run), then removed. Series runs that re-scored its traces keep their own tables. Refuses
    (RunsError) a name that is not a run and runs a job or a live precompute is writing.
    The app asks first."""
    cache = Path(cache)
    path = _existing_run(cache, name)
    _check_idle(cache, name, busy)
    trash = cache / f".trash-{name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
