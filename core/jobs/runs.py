"""Renaming and deleting runs while jobs may be writing them: the store's rename and delete
(core.store.rename), refused for any run an active job (precompute or sweep) holds. The Runs
page and `python -m core runs rename|delete` both call these."""

from __future__ import annotations

from pathlib import Path

from core.jobs.queue import busy_runs
from core.store import rename as store


def rename_run(cache: str | Path, old: str, new: str) -> Path:
    """Rename run `old` to `new` (see core.store.rename.rename_run); returns the new folder."""
    return store.rename_run(cache, old, new, busy=busy_runs(cache))


def delete_run(cache: str | Path, name: str) -> None:
    """Delete run `name` (see core.store.rename.delete_run)."""
    store.delete_run(cache, name, busy=busy_runs(cache))
