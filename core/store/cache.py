"""The runs in a cache folder: what they are, for listings and pickers; rename and delete."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.errors import RunsError
from core.store.manifest import read_manifest


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


def _check_idle(cache: Path, name: str) -> None:
    """Refuse a run that a queued/running job will write or a live precompute holds."""
    import fcntl

    from core.jobs.queue import busy_runs

    job = busy_runs(cache).get(name)
    if job:
        raise RunsError(f"run {name!r} is being written by job {job}; cancel it first")
    lock = cache / ".staging" / f"{name}.lock"
    if lock.is_file():  # never create the lock file here: a listing must not touch cache/
        with open(lock) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
            except BlockingIOError:
                raise RunsError(f"run {name!r} is being computed by another process") from None


def _existing_run(cache: Path, name: str) -> Path:
    from core.precompute.driver import RUN_NAME

    if not RUN_NAME.match(name or ""):
        raise RunsError(f"{name!r} is not a run name")
    path = cache / name
    if read_manifest(path) is None:
        raise RunsError(f"no complete run named {name!r} in {cache}")
    return path


def rename_run(cache: str | Path, old: str, new: str) -> Path:
    """Rename run `old` to `new`; returns the new run folder.

    The folder is renamed (one atomic rename); then manifest.json gets the new "name" and
    config.name plus a "renamed_from" list, and runs that re-scored this run's traces (a
    checkpoint series: manifest traces_from == old) point at the new name, so series_of()
    still finds them. The manifest copy inside each Parquet file's key-value metadata keeps
    the name the run was computed under (rewriting whole tables to change it would cost as
    much as the run is large); manifest.json is the authority. Refuses (RunsError) a name
    that is not a run, a new name that is invalid or taken, and runs a job is writing.
    """
    from core.precompute.driver import RUN_NAME
    from core.store.storage import write_json

    cache = Path(cache)
    src = _existing_run(cache, old)
    if not RUN_NAME.match(new or ""):
        raise RunsError(f"new name {new!r}: use letters, digits, '.', '_' and '-' only")
    dst = cache / new
    if dst.exists() or (cache / ".staging" / new).exists():
        raise RunsError(f"{new!r} is taken (a run, a folder or a run being computed)")
    _check_idle(cache, old)
    _check_idle(cache, new)
    os.rename(src, dst)
    m = read_manifest(dst)
    m["renamed_from"] = [*m.get("renamed_from", []), old]
    m["name"] = new
    if isinstance(m.get("config"), dict):
        m["config"]["name"] = new
    write_json(m, dst / "manifest.json")
    for r in list_runs(cache):
        if r.manifest.get("traces_from") == old:
            r.manifest["traces_from"] = new
            if isinstance(r.manifest.get("config"), dict):
                r.manifest["config"]["traces_from"] = new
            write_json(r.manifest, r.path / "manifest.json")
    return dst


def delete_run(cache: str | Path, name: str) -> None:
    """Delete run `name`: renamed to a hidden trash folder at once (so no reader sees half a
    run), then removed. Series runs that re-scored its traces keep their own tables. Refuses
    (RunsError) a name that is not a run and runs a job is writing. The app asks first."""
    cache = Path(cache)
    path = _existing_run(cache, name)
    _check_idle(cache, name)
    trash = cache / f".trash-{name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
