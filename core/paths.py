"""Where things live: the repository root, the shipped assets, the cache of runs and the
folders at the cache's level (the job queue, staging, uploads). Every module asks here for
these folders; none spells their names itself.

    <cache>/                  run folders ($SHIFTLENS_CACHE, else cache/ in the repository)
    <cache>/.jobs/            the job queue (core.jobs.queue)
    <cache>/.staging/         runs being computed and run locks (core.store.cache)
    <uploads>/models|prompts|rollouts/  uploads ($SHIFTLENS_UPLOADS, else uploads/ beside
                              the cache): inputs, not runs, so they stay out of the cache

A function that takes `cache` takes None for the default cache, never the working
directory. This module creates nothing and reads no file; the environment only through
core.settings.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import value

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"  # demo pairs (assets/demo) and shipped prompt sets (assets/prompts)
JOBS = ".jobs"        # hidden, so runs listings skip them
STAGING = ".staging"


def default_cache() -> Path:
    """The folder of runs: $SHIFTLENS_CACHE if set, else cache/ in the repository."""
    return value("SHIFTLENS_CACHE") or REPO_ROOT / "cache"


def cache_dir(cache: str | Path | None = None) -> Path:
    """`cache` as a Path; the default cache when it is None or empty."""
    return Path(cache) if cache not in (None, "") else default_cache()


def jobs_dir(cache: str | Path | None = None) -> Path:
    """The job queue's folder: `<cache>/.jobs`."""
    return cache_dir(cache) / JOBS


def staging_root(cache: str | Path | None = None) -> Path:
    """The folder of runs being computed and of run locks: `<cache>/.staging`."""
    return cache_dir(cache) / STAGING


def uploads_dir(cache: str | Path | None = None) -> Path:
    """The folder for uploads: $SHIFTLENS_UPLOADS, else `uploads/` beside the cache."""
    return value("SHIFTLENS_UPLOADS") or cache_dir(cache).resolve().parent / "uploads"


def models_dir(cache: str | Path | None = None) -> Path:
    """The folder that holds uploaded models: `<uploads>/models`."""
    return uploads_dir(cache) / "models"


def prompts_dir(cache: str | Path | None = None) -> Path:
    """The folder that holds uploaded prompt sets: `<uploads>/prompts`."""
    return uploads_dir(cache) / "prompts"


def rollouts_dir(cache: str | Path | None = None) -> Path:
    """The folder that holds uploaded rollout files: `<uploads>/rollouts`."""
    return uploads_dir(cache) / "rollouts"
