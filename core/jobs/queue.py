"""The one job queue: every long task (precompute, cross-sampling sweeps) is a job in
`<cache>/.jobs/`, run as its own OS process.

    <cache>/.jobs/<id>/job.json       kind, config, state, pid, timestamps, run name
    <cache>/.jobs/<id>/log.txt        the job process's stdout and stderr
    <cache>/.jobs/<id>/progress.json  the last progress record (see `Job.progress`)
    <cache>/.jobs/<id>/partial.parquet  a sweep's summary of the rows so far (live charts)
    <cache>/.jobs/.lock               flock held for every read-modify-write of a job.json

Kinds (core.jobs.kinds, the one registry of config class, runner and label per kind):
"precompute" (config = PrecomputeConfig; writes a run), "cross-sample" (config =
CrossSampleConfig; stores a sweep in cross/<key>/ of an existing run) and "critical"
(config = CriticalConfig; stores a critical-token scan in layers/ of an existing run, trace
by trace: a resumed scan skips the traces it stored).
States: queued -> running -> done | failed | cancelled; resume() puts a failed or cancelled
job back to queued (precompute then skips the shards it finished). A queued job may depend
on others (a series re-scores the traces of the final run): it starts only when they are
done, and fails at once, with `blocked_by` set, when one of them fails or is cancelled;
resuming that one re-queues it.

Files: core.jobs.record (the Job type, reading and writing job folders), core.jobs.process
(starting, probing and signalling job processes; the job process itself). This module
schedules: submission, caps and fairness, tick, cancel, resume, wait.

There is no daemon. `tick(cache)` marks running jobs whose process has died as failed and
starts queued jobs while fewer than `max_running` (default 1) run; whoever polls calls it:
the app on every rerun of a jobs view, `python -m core jobs run` and `add-pair --wait` in a
loop. A job runs as `python -m core.jobs <job folder>` in its own session (process group),
so it survives app reloads and restarts, and cancel() can end it with everything it
started. Everything a page shows is read back from these files, so progress and logs
survive page reloads and server restarts and show in every session.

Fairness: every job records its submitter (an app session, or a command-line process:
`SUBMITTER` by default); one submitter may hold at most SHIFTLENS_MAX_JOBS_PER_SUBMITTER
(default 32) queued or running jobs, refused at submit, and queued jobs start round-robin
between submitters (`fair_order`), not first in first out, so a flood from one waits its
turn behind everyone else's next job.

Safety: two jobs never write the same run (submit and resume refuse a run that an active
job of any kind holds, and precompute's run lock refuses a second writer anyway); a killed
or cancelled precompute leaves only staging part files, never a run folder (runs are
published by renaming a complete staging folder), and a killed sweep writes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import time
from pathlib import Path

from core import settings
from core.config import PrecomputeConfig
from core.errors import CrossSampleError, JobError, RunsError
from core.jobs import process
from core.jobs.kinds import job_kind
from core.jobs.process import work  # noqa: F401  (the job process: python -m core.jobs)
from core.jobs.record import (  # noqa: F401  (the queue's public names, as before)
    ACTIVE,
    TERMINAL,
    Job,
    busy_runs,
    get_job,
    list_jobs,
    locked,
    write_job,
)
from core.paths import jobs_dir
from core.store.cache import check_start, resolve_run

SUBMITTER = f"process {os.getpid()}"  # the command line's submitter: its own process
MAX_JOBS_ENV = "SHIFTLENS_MAX_JOBS_PER_SUBMITTER"


def max_jobs() -> int:
    """SHIFTLENS_MAX_JOBS_PER_SUBMITTER: queued or running jobs one submitter may hold."""
    return settings.value(MAX_JOBS_ENV, JobError)


def check_cap(cache: str | Path, submitter: str, adding: int = 1) -> None:
    """Refuse (JobError) `adding` more jobs from `submitter` when they would hold more than
    max_jobs() queued or running jobs."""
    cap = max_jobs()
    held = sum(j.state in ACTIVE and j.submitter == submitter for j in list_jobs(cache))
    if held + adding > cap:
        raise JobError(f"{submitter} has {held} job(s) queued or running; {adding} more would "
                       f"pass the limit of {cap} per submitter ({MAX_JOBS_ENV}); wait for "
                       "them to finish or cancel some")


def fair_order(queued: list[Job], others: list[Job]) -> list[Job]:
    """The order in which `queued` jobs start: round-robin between submitters. A submitter's
    k-th job in line (counting its running jobs first) goes before anyone's (k+1)-th; among
    one rank, the submitter served longest ago (by its jobs' start times, `others` included)
    goes first, then submission time."""
    rank: dict[str, int] = {}
    served: dict[str, float] = {}
    for j in [*others, *queued]:
        if j.state == "running":
            rank[j.submitter] = rank.get(j.submitter, 0) + 1
        if j.started is not None:
            served[j.submitter] = max(served.get(j.submitter, j.started), j.started)
    keyed = []
    for j in sorted(queued, key=lambda j: (j.created, j.id)):
        k = rank.get(j.submitter, 0)
        rank[j.submitter] = k + 1
        keyed.append((k, served.get(j.submitter, float("-inf")), j.created, j.id, j))
    return [j for *_, j in sorted(keyed, key=lambda t: t[:4])]


def _enqueue(cache: str | Path, kind: str, run: str, config: dict,
             depends_on: list[str] = (), submitter: str | None = None) -> Job:
    """Write a queued job atomically; refuses an unknown kind, a run an active job holds,
    unknown deps, and a submitter at its cap."""
    job_kind(kind)
    submitter = submitter or SUBMITTER
    with locked(cache):
        check_cap(cache, submitter)
        jobs = {j.id: j for j in list_jobs(cache)}
        for j in jobs.values():
            if j.run == run and j.state in ACTIVE:
                raise JobError(f"run {run!r} is already {j.state} as job {j.id} ({j.kind})")
        missing = [d for d in depends_on if d not in jobs]
        if missing:
            raise JobError(f"unknown dependencies: {missing}")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        job = Job(id=f"{stamp}-{secrets.token_hex(3)}", run=run, state="queued",
                  config=config, cwd=os.getcwd(), created=time.time(), kind=kind,
                  depends_on=list(depends_on), submitter=submitter)
        tmp = jobs_dir(cache) / f".new-{job.id}"
        tmp.mkdir()
        job.path = tmp
        (tmp / "log.txt").write_text("")
        write_job(job)
        job.path = jobs_dir(cache) / job.id
        os.rename(tmp, job.path)  # a job folder appears complete or not at all
    return job


def submit(cache: str | Path, cfg: PrecomputeConfig, *, depends_on: list[str] = (),
           submitter: str | None = None) -> Job:
    """Queue a precompute of `cfg` into `cache`; returns the queued Job (not started: tick()).
    `submitter`: who asks (an app session; default this process: SUBMITTER).

    Refuses (JobError) a run name that is invalid, held by an active job, or taken by a
    complete run with other settings (unless cfg.force); unknown dependencies; a submitter
    at its cap (max_jobs).
    """
    from core.precompute.driver import default_name

    cfg = dataclasses.replace(cfg, cache=str(cache))
    cfg = dataclasses.replace(cfg, name=cfg.name or default_name(cfg))
    check_start(cache, cfg.name, cfg, JobError)
    return _enqueue(cache, "precompute", cfg.name, dataclasses.asdict(cfg), depends_on,
                    submitter)


def submit_cross_sample(cache: str | Path, cfg, submitter: str | None = None) -> Job:
    """Queue a cross-sampling sweep (a CrossSampleConfig) on an existing run of `cache`;
    returns the queued Job. Refuses (JobError) bad options, a run that is not complete, and
    a run an active job holds (a sweep or a precompute of it)."""
    from core.experiments.cross_sampling.job import check_options

    try:
        check_options(cfg)
        folder = resolve_run(cache, cfg.run)
    except (RunsError, CrossSampleError) as e:
        raise JobError(str(e)) from None
    cfg = dataclasses.replace(cfg, cache=str(cache))
    return _enqueue(cache, "cross-sample", folder.name, dataclasses.asdict(cfg),
                    submitter=submitter)


def submit_critical(cache: str | Path, cfg) -> Job:
    """Queue a critical-token scan (core.experiments.critical.CriticalConfig) on a complete
    run of `cache`; refuses (JobError) bad settings and a run an active job holds."""
    from core.experiments.critical import estimate

    cfg = dataclasses.replace(cfg, cache=str(cache))
    try:
        folder = cfg.folder()
        estimate(folder, cfg.traces, top=cfg.top, rollouts=cfg.rollouts,
                 max_traces=cfg.max_traces)
    except RunsError as e:
        raise JobError(str(e)) from None
    return _enqueue(cache, "critical", folder.name, dataclasses.asdict(cfg))


def tick(cache: str | Path, max_running: int = 1, start: bool = True) -> list[Job]:
    """Reap dead jobs and start queued ones; returns the jobs started by this call.

    A running job whose process is gone without reporting becomes failed; a queued job whose
    dependency failed or was cancelled becomes failed with `blocked_by`; queued jobs whose
    dependencies are done start in fair_order (round-robin between submitters) while fewer
    than `max_running` run.
    start=False only records deaths and dependency failures (a listing that starts nothing).
    Cheap (reads a few small files); never creates the queue folder.
    """
    if not jobs_dir(cache).is_dir():
        return []
    started = []
    with locked(cache):
        jobs = list_jobs(cache)
        by_id = {j.id: j for j in jobs}
        for j in jobs:
            if j.state == "running":
                alive, code = process.alive(j)
                if not alive:
                    j.state, j.finished, j.returncode = "failed", time.time(), code
                    how = (f"killed by signal {-code}" if code is not None and code < 0
                           else f"exit code {code}" if code is not None else "killed?")
                    j.error = f"the job process ended without reporting a result ({how})"
                    write_job(j)
        process.reap()
        running = sum(j.state == "running" for j in jobs)
        for j in fair_order([j for j in jobs if j.state == "queued"],
                            [j for j in jobs if j.state != "queued"]):
            deps = [by_id.get(d) for d in j.depends_on]
            bad = next((d for d in deps if d is None or d.state in ("failed", "cancelled")),
                       None)
            if bad is not None or any(d is None for d in deps):
                j.state, j.finished = "failed", time.time()
                j.blocked_by = bad.id if bad is not None else None
                j.error = f"dependency {bad.id if bad else '?'} did not finish"
                write_job(j)
                continue
            if not start or running >= max_running or any(d.state != "done" for d in deps):
                continue
            process.start(j)
            running += 1
            started.append(j)
    return started


def cancel(cache: str | Path, key: str, grace: float = 5.0) -> Job:
    """Cancel a queued or running job; returns it. A running job's process group gets
    SIGTERM, then SIGKILL after `grace` seconds; its staging part files stay for resume."""
    with locked(cache):
        job = get_job(cache, key)
        if job.state not in ACTIVE:
            raise JobError(f"job {job.id} is {job.state}; only queued or running jobs cancel")
        was_running = job.state == "running"
        job.state, job.finished, job.error = "cancelled", time.time(), "cancelled by the user"
        write_job(job)
    if was_running and job.pid:
        process.signal_group(job, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process.alive(job)[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.alive(job)[0]:
            process.signal_group(job, signal.SIGKILL)
            while process.alive(job)[0] and time.monotonic() < deadline + 5:
                time.sleep(0.05)
    return job


def resume(cache: str | Path, key: str) -> Job:
    """Put a failed or cancelled job back in the queue (same id, same config); returns it.
    Jobs that failed because this one did (`blocked_by`) are re-queued with it."""
    with locked(cache):
        job = get_job(cache, key)
        if job.state not in ("failed", "cancelled"):
            raise JobError(f"job {job.id} is {job.state}; only failed or cancelled jobs resume")
        for other in list_jobs(cache):
            if other.run == job.run and other.state in ACTIVE:
                raise JobError(f"run {job.run!r} is already {other.state} as job {other.id}")
        todo = [job] + [j for j in list_jobs(cache) if j.blocked_by == job.id]
        for j in todo:
            j.state, j.error, j.blocked_by, j.pid, j.returncode = "queued", None, None, None, None
            write_job(j)
            with open(j.path / "log.txt", "a") as f:
                f.write(f"--- resumed at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
    return job


def forget(cache: str | Path, key: str) -> None:
    """Remove a finished job's record (its run, if any, stays)."""
    import shutil

    with locked(cache):
        job = get_job(cache, key)
        if job.state in ACTIVE:
            raise JobError(f"job {job.id} is {job.state}; cancel it first")
        shutil.rmtree(job.path)


def read_log(cache: str | Path, key: str, tail: int = 200) -> str:
    """The last `tail` lines of a job's log (0 = all)."""
    text = (get_job(cache, key).path / "log.txt").read_text(errors="replace")
    return "\n".join(text.splitlines()[-tail:]) if tail else text


def wait(cache: str | Path, ids: list[str] | None = None, *, timeout: float | None = None,
         poll: float = 0.2, max_running: int = 1, on_update=None) -> list[Job]:
    """Run the queue in the foreground: tick() until the jobs `ids` (default: all) are done,
    failed or cancelled; returns them. `on_update(jobs)` is called after every tick."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        tick(cache, max_running)
        jobs = [j for j in list_jobs(cache) if ids is None or j.id in ids]
        if on_update is not None:
            on_update(jobs)
        if all(j.state in TERMINAL for j in jobs):
            return jobs
        if deadline is not None and time.monotonic() > deadline:
            raise JobError(f"jobs still active after {timeout} s: "
                           f"{[j.id for j in jobs if j.state in ACTIVE]}")
        time.sleep(poll)


