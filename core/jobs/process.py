"""The OS side of jobs: starting a job as its own process (`python -m core.jobs <folder>`, in
its own session), telling whether it still runs (/proc, pid reuse included), signalling its
process group, and the job process itself (`work`), which records its own result."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from core.jobs.kinds import job_kind
from core.jobs.record import Job, locked, read_job, write_job

_CHILDREN: dict[int, subprocess.Popen] = {}  # processes this process started, to reap them


def proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of a Linux process, None when there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], fields[19]


def alive(job: Job) -> tuple[bool, int | None]:
    """(is the job's process running, its exit code when known)."""
    p = _CHILDREN.get(job.pid)
    if p is not None:
        code = p.poll()  # also reaps it: a finished child must not linger as a zombie
        return code is None, code
    if not job.pid:
        return False, None
    st = proc_stat(job.pid)
    if st is None:
        if Path("/proc/self/stat").exists():
            return False, None
        try:  # no /proc (not Linux): a signal-0 probe
            os.kill(job.pid, 0)
            return True, None
        except OSError:
            return False, None
    return st[0] not in "ZX" and (job.proc_start in (None, st[1])), None


def start(job: Job) -> None:
    log = open(job.path / "log.txt", "ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log:
        p = subprocess.Popen([sys.executable, "-m", "core.jobs", str(job.path.resolve())],
                             cwd=job.cwd, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _CHILDREN[p.pid] = p
    st = proc_stat(p.pid)
    job.state, job.pid, job.proc_start = "running", p.pid, st[1] if st else None
    job.started, job.finished, job.returncode, job.error = time.time(), None, None, None
    job.attempts += 1
    write_job(job)


def reap() -> None:
    """Reap every child this process started that has ended, however it reported: none
    lingers as a zombie."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def signal_group(job: Job, sig: int) -> None:
    if not alive(job)[0]:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.pid, sig)  # the job leads its own session: its pid is the group id


def _finish(job_dir: Path, state: str, error: str | None = None) -> None:
    """Record the worker's own result, unless the job was cancelled meanwhile."""
    with locked(job_dir.parent.parent):
        job = read_job(job_dir)
        if job.state != "running" or job.pid != os.getpid():
            return
        job.state, job.finished, job.error = state, time.time(), error
        job.returncode = 0 if state == "done" else 1
        write_job(job)


def work(job_dir: Path) -> int:
    """The job process (`python -m core.jobs <job folder>`): run the job, record the result."""
    job = read_job(job_dir)

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    say(f"job {job.id} ({job.kind}): run {job.run!r}, attempt {job.attempts}, "
        f"pid {os.getpid()}")
    try:
        kind = job_kind(job.kind)
        kind.runner(job, kind.make_config(job.config), say)
    except BaseException as e:  # record every failure, interrupts included
        traceback.print_exc()
        _finish(job_dir, "failed", f"{type(e).__name__}: {e}")
        return 1
    _finish(job_dir, "done")
    return 0
