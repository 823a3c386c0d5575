"""The run-folder owner: what a run is, how it is named, found, locked, staged, published,
renamed and deleted (the last two in core/store/rename.py). Every other module goes through
these functions.

    <cache>/<run>/                a complete run (manifest.json marks completeness)
    <cache>/.staging/<run>/       a run being computed (part files, resumable)
    <cache>/.staging/.<run>.lock  flock on the name <run> (exists only while held): exclusive
                                  for a precompute from before its models load to publish,
                                  a rename (both names) and a delete; shared for sweeps and
                                  forks writing into the complete run
    <cache>/.staging/.sweep-<pid>-<hex>/  a sweep being written, or one set aside while its
                                  replacement is published (core.store.cross)
    <cache>/.<run>.old-<pid>      the replaced run during a --force publish (repair())
    <cache>/.trash-<run>-<hex>    a run being deleted (renamed away first, then removed)

Names are full-match checked (letters, digits, '.', '_', '-'; starting with a letter or
digit; at most 100 characters). A run folder that is a symbolic link is read like any
other, but never renamed, deleted or written into (that would change files outside the
cache). The default cache is core.paths.default_cache()
($SHIFTLENS_CACHE, else cache/ in the repository) for the CLI and the app alike.

The store knows nothing about jobs: rename and delete (core/store/rename.py) take `busy`, the
runs a job holds (core.jobs.runs passes core.jobs.queue.busy_runs), so the store stays below
the job queue.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import RunsError, clip
from core.paths import STAGING, default_cache
from core.store.lock import FileLock, Held, is_held
from core.store.manifest import config_hash, read_manifest
from core.store.run import Run
from core.store.schema import MANIFEST_FILE

__all__ = ["RUN_NAME", "Run", "RunLock", "Reservation", "check_start",
           "contrast_candidates", "default_cache", "is_locked", "list_runs",
           "healthy", "name_problem", "open_run", "run_exists", "repair",
           "resolve_run", "series_of", "staging_dir", "writing_into"]

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def name_problem(name: str | None, what: str = "run name") -> str | None:
    """Why `name` is not a valid run name (None when it is)."""
    if isinstance(name, str) and RUN_NAME.fullmatch(name):
        return None
    return f"{what} {name!r}: use letters, digits, '.', '_' and '-' only"


# ----------------------------------------------------------------------------- listing


def list_runs(cache: str | Path, damaged: bool = True) -> list[Run]:
    """Runs in `cache` (folders with a manifest.json), newest first, each validated
    (core.store.validate): damaged runs (`problem` set) come after the healthy ones, or are
    left out with damaged=False. Hidden folders (staging, trash) are skipped."""
    cache = Path(cache)
    if not cache.is_dir():
        return []
    out = []
    for d in sorted(cache.iterdir()):
        if d.name.startswith(".") or not d.is_dir() or not (d / MANIFEST_FILE).is_file():
            continue
        out.append(Run.open(d))
    out.sort(key=lambda r: r.created, reverse=True)
    out.sort(key=lambda r: r.damaged)
    return [r for r in out if damaged or not r.damaged]


def run_exists(cache: str | Path, name: str) -> bool:
    """Whether `cache` holds a run named `name` (complete: a manifest.json; damaged or not)."""
    return name_problem(name) is None and (Path(cache) / name / MANIFEST_FILE).is_file()


def healthy(runs: list[Run]) -> list[Run]:
    return [r for r in runs if not r.damaged]


def open_run(cache: str | Path, run: str | Path | Run, fresh: bool = False,
             tables: bool = True) -> Run:
    """The complete, healthy run `run` (a name under `cache`, a run folder, or a Run):
    raises RunsError naming where it looked, or the damaged run's line (`tables=False`: only
    a damaged manifest is refused; see Run.require)."""
    if isinstance(run, Run):
        return Run.open(run.path, fresh=fresh).require(tables=tables)
    p = Path(run)
    if not (p.is_dir() and (p / MANIFEST_FILE).is_file()):
        p = Path(cache) / str(run)
        if name_problem(str(run)) is not None or not (p / MANIFEST_FILE).is_file():
            raise RunsError(f"{run}: no complete run (looked in {p})")
    return Run.open(p, fresh=fresh).require(tables=tables)


def resolve_run(cache: str | Path, run: str | Path) -> Path:
    """The folder of a complete, healthy run (see open_run)."""
    return open_run(cache, run).path


def series_of(runs: list[Run], run: Run) -> list[str]:
    """The checkpoint series ending at `run`: runs of earlier checkpoints that name it as
    their series' final run (`series_of`, else, in runs written before that field,
    `traces_from`: they re-scored its traces), by training step, then `run` itself. A
    ledger (core.jobs.ledger: a series recorded while training, whose runs name a final run
    that does not exist) is read from any of its runs: all of them, by training step, the
    latest standing for the final run. Empty if none."""
    def linked(r: Run, name: str) -> bool:
        return r.series_of == name and r.series_step is not None

    steps = [r for r in runs if linked(r, run.name)]
    head = run.series_of
    if not steps and head and linked(run, head) and all(r.name != head for r in runs):
        ledger = sorted((r for r in runs if linked(r, head)), key=lambda r: r.series_step)
        return [r.name for r in ledger] if len(ledger) > 1 else []
    if not steps:
        return []
    steps.sort(key=lambda r: r.series_step)
    return [r.name for r in steps] + [run.name]


# SFT contrasts by kind, the default first: an SFT matched to the RL run (the demo's
# sft-matched, chosen at the RL model's mean KL from base), then a plain "sft", then any
# other "sft-..." label (the demo's sft-10x-lr).
SFT_MATCHED = "sft-matched"


def _contrast_rank(kind: str | None) -> int:
    kind = kind or ""
    return (0 if kind == SFT_MATCHED else 1 if kind == "sft"
            else 2 if kind.startswith("sft") else 3)


def contrast_candidates(runs: list[Run], run: Run) -> list[str]:
    """Other runs on the same base model and prompt set (e.g. RL vs SFT), SFT runs first:
    an SFT matched to the RL run (kind "sft-matched") before a plain "sft", then other
    "sft-..." kinds, then the rest; by name within each. The first is the default."""
    def key(r: Run):
        return r.spec("base"), r.prompt_fingerprint
    same = [r for r in runs if r.name != run.name and not r.damaged and key(r) == key(run)
            and not r.series_of]
    return [r.name for r in sorted(same, key=lambda r: (_contrast_rank(r.kind), r.name))]


# ----------------------------------------------------------------------------- locking


BUSY = "a precompute, a cross-sampling sweep, a fork being saved, a rename or a delete"


def staging_dir(cache: str | Path, run: str) -> Path:
    return Path(cache) / STAGING / run


def _lock_path(cache: str | Path, run: str) -> Path:
    # '.<run>.lock': a run name never starts with '.', so no run's staging folder (and no
    # run called 'X.lock') can be another run's lock file.
    return Path(cache) / STAGING / f".{run}.lock"


class RunLock:
    """The lock of run name `run` in `cache`, a non-blocking flock on
    `<cache>/.staging/.<run>.lock` (removed by its last holder): exclusive for whoever
    creates, replaces, renames or deletes the run; shared (`shared=True`) for writers of
    extra tables into a complete run (cross-sampling, forks), which may run together.
    Raises `error` when it is held in a way that excludes this use."""

    def __init__(self, cache: str | Path, run: str, error: type[Exception] = RunsError,
                 shared: bool = False):
        try:
            self._lock = FileLock(_lock_path(cache, run), shared=shared)
        except Held:
            raise error(f"run {run!r} is in use by another process ({BUSY}); try again "
                        "when it has finished") from None
        except OSError as e:
            raise error(f"cannot lock run {run!r} in {cache}: {e.strerror or e}") from None

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(cache: str | Path, run: str) -> bool:
    """Whether a live process holds run's lock (never creates the lock file: a listing must
    not touch cache/)."""
    return is_held(_lock_path(cache, run))


@contextmanager
def writing_into(run_dir: str | Path, error: type[Exception] = RunsError) -> Iterator[Path]:
    """Hold a complete run's lock, shared, while extra tables are written into its folder
    (a cross-sampling sweep, a fork): meanwhile a rename, a delete or a --force recompute
    of it is refused, and this is refused while one of those holds it."""
    run_dir = Path(run_dir)
    _not_a_link(run_dir, error)
    lock = RunLock(run_dir.parent, run_dir.name, error, shared=True)
    try:
        if read_manifest(run_dir) is None:
            raise error(f"{run_dir}: no complete run (renamed or deleted meanwhile?)")
        yield run_dir
    finally:
        lock.release()


@contextmanager
def one_writer(run_dir: str | Path, table: str, what: str,
               wait: float = 60.0) -> Iterator[None]:
    """Exclusive among writers of one extra table of a complete run (a read-modify-write of
    forks.parquet, a layer-view table): they wait their turn, up to `wait` seconds, then
    RunsError ("another `what` is still being saved"). The lock file lives with the run
    locks (cache/.staging) and is gone when the last writer is done. Take it inside
    writing_into()."""
    run_dir = Path(run_dir)
    deadline = time.monotonic() + wait
    while True:
        try:
            lock = FileLock(run_dir.parent / STAGING / f".{run_dir.name}.{table}.lock")
            break
        except Held:
            if time.monotonic() > deadline:
                raise RunsError(f"run {run_dir.name!r}: another {what} is still being saved; "
                                "try again") from None
            time.sleep(0.05)
    try:
        yield
    finally:
        lock.release()


def repair(cache: str | Path, name: str) -> list[str]:
    """Finish what an interrupted publish or delete of run `name` left; call it holding the
    name's lock (which proves that no process publishing or deleting it is alive: a PID
    could be reused, the lock cannot). A publish killed between its two renames leaves
    `.<name>.old-<pid>`: restored when `name` is missing, else removed; a delete killed in
    its removal leaves `.trash-<name>-<hex>`: removed. Returns what was done, one line each."""
    cache, done = Path(cache), []
    final = cache / name
    olds, trash = [], []
    for p in cache.iterdir() if cache.is_dir() else ():
        if p.name.startswith(f".{name}.old-") and p.name[len(name) + 6:].isdigit():
            olds.append(p)
        elif re.fullmatch(rf"\.trash-{re.escape(name)}-[0-9a-f]{{8}}", p.name):
            trash.append(p)
    for p in sorted(olds, key=lambda p: p.stat().st_mtime, reverse=True):
        if not final.exists() and read_manifest(p) is not None:
            os.replace(p, final)
            done.append(f"restored run {name!r} from {p.name} (an interrupted --force publish)")
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name} (left by an interrupted publish)")
    for p in trash:
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"removed {p.name} (left by an interrupted delete)")
    return done


# ----------------------------------------------------------------------------- writing


def check_start(cache: str | Path, name: str, config, error: type[Exception]) -> str:
    """Whether a run `name` computed from `config` (a PrecomputeConfig) may start: "done"
    when a complete run with the same settings exists, "new" when it may be (re)computed.
    Raises `error` for an invalid name, a run with other settings (unless config.force) and
    a folder that is not a run (--force replaces runs only). Advisory when called without
    the name's lock (the job queue); a Reservation calls it under the lock."""
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
    if old is None and (final.exists() or final.is_symlink()):
        raise error(f"{final} exists and is not a run folder (--force replaces runs only); "
                    "move it away or choose --name")
    return "new"


def _identity(path: Path) -> tuple | None:
    """What is at `path` now: None, or (device, inode, the manifest's created stamp)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, (read_manifest(path) or {}).get("created")


class Reservation:
    """Run name `name` held by one precompute from before its models load until publish:
    the name's lock (exclusive), then repair() of an interrupted publish, check_start(), and
    a note of what the final folder holds. `state` is check_start's answer; `repaired`
    lists what repair() did. publish() replaces exactly that folder and nothing else."""

    def __init__(self, cache: str | Path, name: str, config, error: type[Exception]):
        problem = name_problem(name)
        if problem:
            raise error(problem)
        self.cache, self.name, self.error = Path(cache), name, error
        self.final = self.cache / name
        self._lock = RunLock(cache, name, error)
        try:
            self.repaired = repair(self.cache, name)
            self.state = check_start(cache, name, config, error)
            self._found = _identity(self.final)
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def open_staging(self, want: str) -> Path:
        """The run's staging folder, kept when it was made with the same settings (`want`,
        the config hash: resume) and restarted otherwise; returned with `parts/` ready."""
        staging = staging_dir(self.cache, self.name)
        if staging.is_file() and not is_held(staging):
            staging.unlink()  # an older version's lock file of run NAME minus '.lock'
        elif staging.exists() and not staging.is_dir():
            raise self.error(f"{staging} is not a folder and is in use; try again later")
        stamp = staging / "config_hash"
        if staging.exists() and (not stamp.is_file() or stamp.read_text() != want):
            shutil.rmtree(staging)  # other settings: restart cleanly
        (staging / "parts").mkdir(parents=True, exist_ok=True)
        stamp.write_text(want)
        return staging

    def publish(self, staging: Path) -> Path:
        """Move the complete staging folder to the run's place, replacing the run that was
        there when the name was reserved (a --force recompute) and nothing else: if the
        folder changed meanwhile (outside ShiftLens, which the lock keeps out), nothing is
        replaced and the staging folder is kept. Returns the run folder."""
        if not (staging / MANIFEST_FILE).is_file():
            raise RuntimeError(f"{staging}: no manifest; refusing to publish an incomplete run")
        final = self.final
        if _identity(final) != self._found:
            raise self.error(
                f"run {self.name!r}: {final} changed while this run was computed, so it is "
                f"not replaced; the computed run is kept in {staging}: move {final} away "
                "and re-run the same command to publish it")
        parts = staging / "parts"
        if parts.exists():
            shutil.rmtree(parts)
        if self._found is not None:
            trash = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, trash)  # a kill here leaves the trash: repair() restores it
            os.replace(staging, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, final)
        self._found = _identity(final)
        return final


def _not_a_link(path: Path, error: type[Exception] = RunsError) -> None:
    """Refuse a run folder that is a symbolic link: renaming, deleting or writing into it
    would change files wherever it leads, outside the cache (reading it is fine)."""
    if path.is_symlink():
        raise error(f"run {path.name!r} is a link to {clip(os.readlink(path), 120)}, not a "
                    "folder of the cache: it is only read; move the run into the cache to "
                    "change it")
