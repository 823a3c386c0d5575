"""End-to-end: a cross-sampling sweep is a queue job, not part of the Streamlit process.

Started from the app, it survives a restart of the server, and a second browser session on
the new server shows the same job's progress and then its stored results.

The job's process group is paused (SIGSTOP) from the moment the first session shows it
running until the second session has shown it running, so the sweep need not be long to
outlast the restart: it is short, and the test does not depend on the machine's speed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from core.experiments.cross_sampling import list_sweeps
from core.jobs import queue
from tests.browser import CHROMIUM, FLAGS, stop, streamlit_server

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]

# 8 prompts x 2 samples x (2 directions x 3 eps (2 + the target budget's) x 4 (the
# cross-sample and its three default controls) + 2 endpoints) = 416 samples: 10-20 s of
# sweeping on 2 CPU cores with the app and the browser watching (one torch thread, see
# server_process). The restart happens while the job is paused, so it costs none of that.
SAMPLES = 2
EPS = "0.01,0.05"
# before its first batch a sweep says it is loading models (no "0/? samples")
PROGRESS = re.compile(r"sweep (\S+) running: (?:(\d+)/(\d+) samples|loading models)")


def server_process(cache: Path):
    """The app server leading its own process group (so the test can kill it, and only it),
    yielded with its process. The job processes it starts inherit its environment: one
    OpenMP thread, because with two on two shared cores (the server and Chromium busy too)
    the sweep runs 5-10x slower and its length swings with the load."""
    return streamlit_server(cache, env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS",
                                                                          "1")},
                            own_group=True, with_process=True)


def process_alive(job: queue.Job) -> bool:
    """Is the job's own process (same pid and start time, not a zombie) running?"""
    try:
        raw = Path(f"/proc/{job.pid}/stat").read_text()
    except OSError:
        return False
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0] not in "ZX" and job.proc_start in (None, fields[19])


def pid_gone(job: queue.Job) -> bool:
    """No process (running or zombie) is left under the job's pid (a reused pid is another
    process: its start time differs)."""
    try:
        raw = Path(f"/proc/{job.pid}/stat").read_text()
    except OSError:
        return True
    return job.proc_start is not None and raw[raw.rindex(")") + 2:].split()[19] != job.proc_start


def wait_until(pred, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
    return value


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def no_exception(page) -> None:
    shown = page.locator("[data-testid=stException]")
    assert shown.count() == 0, f"the page shows an exception: {shown.first.inner_text()}"


def test_sweep_survives_a_server_restart_and_shows_in_a_second_session(
        app_cache, tmp_path, browser):
    from playwright.sync_api import expect

    t0 = time.monotonic()

    def mark(what: str) -> None:  # timings, shown with the output of a failed run
        print(f"{time.monotonic() - t0:6.1f} s  {what}", flush=True)

    cache = tmp_path / "cache"
    run_dir = cache / "demo-rl"
    shutil.copytree(app_cache / "demo-rl", run_dir)  # this sweep is seen by no other test
    shutil.rmtree(run_dir / "cross", ignore_errors=True)  # no stored sweep before this one
    for f in ("cross_samples.parquet", "cross_summary.parquet"):
        (run_dir / f).unlink(missing_ok=True)
    job_id, job, paused = None, None, False
    try:
        # session 1: submit the sweep, see it running
        with server_process(cache) as (url, proc):
            ctx1 = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx1.new_page()
            page.goto(f"{url}/cross?run=demo-rl")
            page.get_by_text("No stored sweep for this run yet.").wait_for(timeout=60_000)
            page.get_by_label("eps grid (js thresholds) or budgets in %").fill(EPS)
            page.get_by_label("prompts", exact=True).fill("8")
            page.get_by_label("samples per prompt").fill(str(SAMPLES))
            page.get_by_test_id("stBaseButton-primaryFormSubmit").click()
            shown = page.get_by_text(re.compile(r"sweep \S+ running: [1-9]\d*/\d+ samples"))
            shown.wait_for(timeout=60_000)  # sampling has begun (the first batch is in)
            job_id = PROGRESS.search(shown.inner_text()).group(1)
            job = queue.get_job(cache, job_id)
            assert os.getpgid(job.pid) == job.pid != os.getpgid(proc.pid)  # its own group
            os.killpg(job.pid, signal.SIGSTOP)  # paused until session 2 has shown it
            paused = True
            mark(f"session 1 shows {shown.inner_text()!r}; job paused")
            no_exception(page)
            ctx1.close()
            assert job.kind == "cross-sample" and job.run == "demo-rl"
            assert [j.id for j in queue.list_jobs(cache)] == [job_id]
            stop(proc)
            assert proc.poll() is not None
            mark("server 1 stopped")

        # the server is gone; the sweep is not
        queue.tick(cache, start=False)  # would mark a dead job failed
        job = queue.get_job(cache, job_id)
        assert job.state == "running", (job.state, job.error)
        assert process_alive(job), f"job process {job.pid} died with the server"

        # session 2, on a new server: the same job's progress, then its stored results
        with server_process(cache) as (url, proc):
            ctx2 = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx2.new_page()
            page.goto(f"{url}/cross?run=demo-rl")
            progress = page.get_by_text(PROGRESS)
            mixed = page.get_by_text("Mixed traces")
            progress.or_(mixed).first.wait_for(timeout=60_000)
            job = queue.get_job(cache, job_id)
            assert progress.count() and job.state == "running", (
                f"job {job_id} is {job.state}, not running, on the restarted server's page")
            m = PROGRESS.search(progress.inner_text())
            mark(f"session 2 on server 2 shows {progress.inner_text()!r}")
            os.killpg(job.pid, signal.SIGCONT)
            paused = False
            assert m.group(1) == job_id, f"second session shows {m.group(1)}, not {job_id}"
            assert m.group(3) is None or int(m.group(2)) < int(m.group(3))
            # and it is live: the count moves on (or the sweep ends and results show)
            page.get_by_text(re.compile(rf"sweep {job_id} running: (?!{m.group(2)}/)\d+/")) \
                .or_(mixed).first.wait_for(timeout=60_000)
            no_exception(page)

            mixed.wait_for(timeout=180_000)  # the page switches to the stored results
            mark("session 2 shows the stored results")
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
            no_exception(page)
            job = queue.get_job(cache, job_id)
            assert job.state == "done", (job.state, job.error)
            (sweep,) = list_sweeps(run_dir)  # stored as cross/<key>/
            assert sweep.summary.is_file() and sweep.samples.is_file()
            expect(page.get_by_text(PROGRESS)).to_have_count(0, timeout=30_000)  # stale one
            wait_until(lambda: pid_gone(job), 20,
                       f"job process {job.pid} to be gone (not running, no zombie)")
            ctx2.close()
    finally:
        if paused:
            with contextlib.suppress(OSError):
                os.killpg(job.pid, signal.SIGCONT)  # else cancel's SIGTERM waits forever
        if job_id is not None:
            with contextlib.suppress(Exception):
                if queue.get_job(cache, job_id).state in queue.ACTIVE:
                    queue.cancel(cache, job_id)

