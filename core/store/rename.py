"""Renaming and deleting a complete run (the run-folder owner's other half: core.store.cache
names, finds, locks, stages and publishes). Both take `busy`, the runs a job holds ({run:
job id}; core.jobs.runs passes core.jobs.queue.busy_runs), and hold the names' locks, so a
precompute, sweep or fork in another process refuses them or is refused. A run folder that
is a symbolic link is never renamed or deleted."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Mapping

from core.errors import RunsError
from core.store.cache import (
    RunLock,
    _not_a_link,
    list_runs,
    name_problem,
    repair,
    staging_dir,
)
from core.store.manifest import read_manifest
from core.store.samplers import rename_samplers
from core.store.schema import MANIFEST_FILE
from core.store.storage import write_json

__all__ = ["delete_run", "rename_run"]


def _check_jobs(name: str, busy: Mapping[str, str]) -> None:
    """Refuse a run that a queued/running job will write."""
    job = busy.get(name)
    if job:
        raise RunsError(f"run {name!r} is being written by job {job}; cancel it first")


def _existing_run(cache: Path, name: str) -> Path:
    if name_problem(name):
        raise RunsError(f"{name!r} is not a run name")
    path = cache / name
    _not_a_link(path)
    if not (path / MANIFEST_FILE).is_file():  # a damaged run is a run: it may be deleted
        raise RunsError(f"no complete run named {name!r} in {cache}")
    return path


def _linked_runs_naming(cache: Path, old: str) -> list[str]:
    """Runs reached through a link whose manifest names run `old` (rename would rewrite them
    wherever they lie)."""
    return [r.name for r in list_runs(cache) if r.path.is_symlink() and (
        old in (r.manifest.get("traces_from"), r.manifest.get("series_of"))
        or any(isinstance(rec, dict) and rec.get("run") == old
               for rec in (r.manifest.get("samplers") or {}).values()))]


def rename_run(cache: str | Path, old: str, new: str, busy: Mapping[str, str] = {}) -> Path:
    """Rename run `old` to `new`; returns the new run folder.

    Both names' locks are held throughout, so a precompute that has reserved either name
    (or a sweep or fork writing into `old`) refuses the rename, and a precompute cannot
    reserve them meanwhile. The folder is renamed (one atomic rename); then manifest.json
    gets the new "name" and config.name plus a "renamed_from" list, and runs that re-scored
    this run's traces or belong to its series (manifest traces_from or series_of == old,
    sampler records naming it) point at the new name, so series_of() still finds them. The
    manifest copy inside each Parquet file's key-value metadata keeps the name the run was
    computed under (rewriting whole tables to change it would cost as much as the run is
    large); manifest.json is the authority.
    Refuses (RunsError) a name that is not a run, a new name that is invalid, taken or
    being computed (its staging folder exists), and runs that a job (`busy`: {run: job
    id}) or another process holds.
    """
    cache = Path(cache)
    _existing_run(cache, old)
    problem = name_problem(new, "new name")
    if problem:
        raise RunsError(problem)
    _check_jobs(old, busy)
    _check_jobs(new, busy)
    with RunLock(cache, old), RunLock(cache, new):
        repair(cache, new)
        src = _existing_run(cache, old)
        dst = cache / new
        if dst.exists() or dst.is_symlink() or staging_dir(cache, new).exists():
            raise RunsError(f"{new!r} is taken (a run, a folder or a run being computed)")
        if linked := _linked_runs_naming(cache, old):
            raise RunsError(f"run {linked[0]!r} names {old!r} and is a link to outside the "
                            "cache, which a rename does not rewrite; move it into the cache "
                            "first")
        try:
            os.rename(src, dst)
        except OSError as e:
            raise RunsError(f"cannot rename {old!r} to {new!r}: {e.strerror or e}") from None
        m = read_manifest(dst)
        if not m:  # not JSON / not an object: the folder moves, the manifest stays as it is
            return dst
        m["renamed_from"] = [*m.get("renamed_from", []), old]
        m["name"] = new
        if isinstance(m.get("config"), dict):
            m["config"]["name"] = new
        rename_samplers(m, old, new)
        write_json(m, dst / MANIFEST_FILE)
        for r in list_runs(cache):  # a damaged table does not stop its links following
            linked = [k for k in ("traces_from", "series_of") if r.manifest.get(k) == old]
            if linked or rename_samplers(r.manifest, old, new):
                for k in linked:
                    r.manifest[k] = new
                if linked and isinstance(r.manifest.get("config"), dict):
                    r.manifest["config"]["traces_from"] = new
                write_json(r.manifest, r.path / MANIFEST_FILE)
    return dst


def delete_run(cache: str | Path, name: str, busy: Mapping[str, str] = {}) -> None:
    """Delete run `name`: renamed to a hidden trash folder at once (so no reader sees half a
    run), then removed. Series runs that re-scored its traces keep their own tables. Refuses
    (RunsError) a name that is not a run, and runs a job or another process (a precompute
    that reserved the name, a sweep or fork writing into it) holds. The app asks first."""
    cache = Path(cache)
    _existing_run(cache, name)
    _check_jobs(name, busy)
    with RunLock(cache, name):
        path = _existing_run(cache, name)
        trash = cache / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
