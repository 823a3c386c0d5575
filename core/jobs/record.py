"""A job's record: the Job type and the files of `<cache>/.jobs/` (see core.jobs.queue for the
queue's layout and states). Reading and writing records only: scheduling is core.jobs.queue,
the OS processes core.jobs.process."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import JobError
from core.jobs.kinds import JOB_KINDS, JobKind
from core.paths import jobs_dir
from core.store.storage import write_json

ACTIVE = ("queued", "running")
TERMINAL = ("done", "failed", "cancelled")


@dataclass
class Job:
    id: str
    run: str
    state: str
    config: dict                 # dataclasses.asdict of the kind's config dataclass
    cwd: str                     # the job process's working folder (configs may be relative)
    created: float
    kind: str = "precompute"     # a key of core.jobs.kinds.JOB_KINDS
    depends_on: list[str] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    proc_start: str | None = None  # /proc start time: a reused pid is not our process
    returncode: int | None = None
    error: str | None = None
    blocked_by: str | None = None  # the dependency whose failure failed this job
    attempts: int = 0
    submitter: str = ""          # who queued it (an app session, a CLI process): fair_order
    path: Path = field(default=Path(), compare=False)  # the job folder (not stored)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("path")
        return d

    def _registered(self) -> JobKind | None:
        return JOB_KINDS.get(self.kind) if isinstance(self.kind, str) else None

    @property
    def label(self) -> str:
        """What the jobs panel calls this job's kind (its registered label)."""
        kind = self._registered()
        return kind.label if kind else f"unknown kind {str(self.kind)[:40]!r}"

    @property
    def opens(self) -> str | None:
        """The app page a done job of this kind links to; None for an unknown kind."""
        kind = self._registered()
        return kind.opens if kind else None

    def progress(self) -> dict | None:
        """The last progress record, or None before the first one: {"stage", "done",
        "total", "unit" ("prompts" | "samples"), "time"} plus the kind's own keys
        (precompute: shards_done, shards_total, prompts_done, prompts_total; cross-sample:
        tokens, seconds)."""
        try:
            return json.loads((self.path / "progress.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def fraction(self) -> float:
        """Share of prompts done, 0..1 (1 for a done job)."""
        if self.state == "done":
            return 1.0
        p = self.progress() or {}
        return p.get("done", 0) / max(p.get("total", 0), 1)

    def progress_line(self) -> str:
        """One line for a progress bar: percent, then the kind's own counts and step."""
        pct = f"{100 * self.fraction():.0f}%"
        p = self.progress()
        if self.state == "running" and not p:
            return f"{pct} · starting: loading models"
        if self.state == "done" or not p:
            return pct
        if "shards_total" in p:
            return " · ".join(x for x in (
                pct, f"{p.get('shards_done', 0)}/{p['shards_total']} shards",
                f"{p.get('prompts_done', 0)}/{p.get('prompts_total', 0)} prompts",
                p.get("step") or p.get("stage")) if x)
        return f"{pct} · {p.get('done', 0)}/{p.get('total', 0)} {p.get('unit', '')}".strip()

    def partial(self):
        """A cross-sampling job's summary of the rows so far (DataFrame, columns of
        core.experiments.cross_sampling.summarize), or None before the first batch."""
        f = self.path / "partial.parquet"
        if not f.is_file():
            return None
        import pyarrow.parquet as pq

        try:
            return pq.read_table(f).to_pandas()
        except OSError:
            return None


@contextlib.contextmanager
def locked(cache: str | Path):
    d = jobs_dir(cache)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_job(folder: Path) -> Job:
    d = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    known = {f.name for f in dataclasses.fields(Job)}
    return Job(**{k: v for k, v in d.items() if k in known}, path=folder)


def write_job(job: Job) -> None:
    write_json(job.to_json(), job.path / "job.json")


def list_jobs(cache: str | Path) -> list[Job]:
    """Every job of the cache, oldest first (read-only: never creates the queue folder)."""
    d = jobs_dir(cache)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        if p.is_dir() and not p.name.startswith(".") and (p / "job.json").is_file():
            with contextlib.suppress(OSError, json.JSONDecodeError, TypeError):
                out.append(read_job(p))
    return sorted(out, key=lambda j: (j.created, j.id))


def get_job(cache: str | Path, key: str) -> Job:
    """A job by id, unique id prefix, or run name (its latest job); raises JobError."""
    jobs = list_jobs(cache)
    for match in ([j for j in jobs if j.id == key], [j for j in jobs if j.id.startswith(key)],
                  [j for j in jobs if j.run == key][-1:]):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise JobError(f"{key!r} matches several jobs: {', '.join(j.id for j in match)}")
    raise JobError(f"no job {key!r} in {jobs_dir(cache)}")


def busy_runs(cache: str | Path) -> dict[str, str]:
    """{run name: job id} for runs a queued or running job will write."""
    return {j.run: j.id for j in list_jobs(cache) if j.state in ACTIVE}


