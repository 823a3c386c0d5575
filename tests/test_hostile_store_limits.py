"""Hostile run folders, sweep writes and job floods (issue 23): run folders that are links
are read but never changed; a sweep cancelled, failed or killed during its final write
leaves nothing in the run; one submitter's flood of jobs stops at its cap and waits its
turn. Each refusal is one line, with the cache's bytes unchanged (tests/hostile_fs.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks.child import run_child
from core.errors import RunsError
from core.jobs.runs import delete_run, rename_run
from core.store.cache import list_runs, writing_into
from tests.conftest import DEMO
from tests.hostile_fs import snapshot

pytestmark = pytest.mark.unit


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A cache with a run in it; state() is its snapshot."""
    cache = tmp_path / "cache"
    (cache / "demo-rl").mkdir(parents=True)
    (cache / "demo-rl" / "manifest.json").write_text('{"schema": 1}')
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    return {"root": tmp_path, "cache": cache, "state": lambda: snapshot(cache)}


# --- run folders that are links -----------------------------------------------------------

def manifest_run(folder: Path, name: str, **extra) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(
        {"name": name, "created": "2026-01-01T00:00:00", "config": {"name": name}, **extra}))
    return folder


@pytest.fixture
def linked(world):
    """A run outside the cache reached through a link `cache/linked`, a real run `cache/a`."""
    outside = manifest_run(world["root"] / "elsewhere" / "run", "linked", traces_from="a")
    (world["cache"] / "linked").symlink_to(outside, target_is_directory=True)
    manifest_run(world["cache"] / "a", "a")
    world["outside"] = outside.parent
    world["state"] = lambda: (snapshot(world["cache"]), snapshot(outside.parent))
    return world


LINK = r"^run 'linked' is a link to '.*elsewhere/run', not a folder of the cache: it is only " \
       r"read; move the run into the cache to change it$"


@pytest.mark.parametrize("call", [
    lambda c: rename_run(c, "linked", "new"),
    lambda c: delete_run(c, "linked"),
    lambda c: writing_into(c / "linked").__enter__(),
], ids=["rename", "delete", "sweep-or-fork-writes-into-it"])
def test_a_run_folder_that_is_a_link_is_only_read(linked, call):
    before = linked["state"]()
    with pytest.raises(RunsError, match=LINK):
        call(linked["cache"])
    assert linked["state"]() == before
    assert not [p for p in linked["cache"].iterdir() if p.name.startswith(".trash-")]
    assert {r.name for r in list_runs(linked["cache"])} == {"a", "demo-rl", "linked"}  # read


def test_rename_never_rewrites_a_manifest_behind_a_link(linked):
    """Renaming `a` would point the linked run's traces_from at the new name, a write
    outside the cache: refused, nothing renamed."""
    before = linked["state"]()
    with pytest.raises(RunsError) as info:
        rename_run(linked["cache"], "a", "b")
    assert str(info.value) == ("run 'linked' names 'a' and is a link to outside the cache, "
                               "which a rename does not rewrite; move it into the cache first")
    assert linked["state"]() == before


# --- a sweep's final write: staged outside the run, published whole -------------------------

def sweep_result(seed: int = 0):
    import pandas as pd

    from core.store.cross import KEY_FIELDS

    settings = {k: None for k in KEY_FIELDS} | {"directions": ["tuned"], "eps_grid": [0.1],
                                                "seed": seed, "top_p": 1, "temperature": 1,
                                                "samples": 1}
    return type("Result", (), {"rows": [], "summary": pd.DataFrame(), "settings": settings})()


KILL_CHILD = """
import os, signal
from pathlib import Path
import core.store.cross as cross
from tests.test_hostile_store_limits import sweep_result
before = hwm()
real_write, real_rename, calls = cross.write_parquet, cross.os.rename, []
def write(*a, **kw):
    calls.append(a[1])
    if {at!r} == "summary" and Path(a[1]).name == "summary.parquet":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(*a, **kw)
def rename(src, dst):
    real_rename(src, dst)
    if {at!r} == "set-aside" and ".sweep-" in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
cross.write_parquet, cross.os.rename = write, rename
cross.write_results(Path({run!r}), sweep_result({seed}), {{}})
"""


def killed_while_writing(run: Path, at: str, seed: int = 0) -> int:
    import os

    from tests.conftest import ROOT

    body = KILL_CHILD.format(at=at, run=str(run), seed=seed)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{ROOT}:{env_path}"
    try:
        return run_child(body, check=False).returncode
    finally:
        os.environ["PYTHONPATH"] = env_path


def test_a_failed_or_cancelled_final_write_leaves_nothing_in_the_run(world, monkeypatch):
    import core.store.cross as cross

    run = world["cache"] / "demo-rl"
    real = cross.write_parquet

    def interrupted(table, path, **kw):
        if Path(path).name == "summary.parquet":
            raise KeyboardInterrupt  # what a cancel's signal raises mid-write
        return real(table, path, **kw)

    monkeypatch.setattr(cross, "write_parquet", interrupted)
    before = snapshot(run)
    with pytest.raises(KeyboardInterrupt):
        cross.write_results(run, sweep_result(), {})
    assert snapshot(run) == before
    assert not list((world["cache"] / ".staging").glob(".sweep-*"))


def test_a_kill_during_the_final_write_leaves_nothing_in_the_run(world):
    from core.store.cross import list_sweeps, repair_sweeps, write_results

    run = world["cache"] / "demo-rl"
    before = snapshot(run)
    assert killed_while_writing(run, "summary") == -9
    assert snapshot(run) == before  # nothing in the run; its staging is outside
    (left,) = (world["cache"] / ".staging").glob(".sweep-*")
    write_results(run, sweep_result(), {})  # the next write cleans up
    assert not left.exists() and [s.key for s in list_sweeps(run)] != []
    assert repair_sweeps(world["cache"] / ".staging") == []


def test_a_kill_while_replacing_a_sweep_puts_the_old_one_back(world):
    from core.store.cross import list_sweeps, write_results

    run = world["cache"] / "demo-rl"
    write_results(run, sweep_result(), {})
    before = snapshot(run)
    assert killed_while_writing(run, "set-aside") == -9  # the same key, rewritten
    assert [s.key for s in list_sweeps(run)] == []  # set aside, the new one never published
    write_results(run, sweep_result(seed=1), {})  # another sweep: repairs first
    keys = {s.key for s in list_sweeps(run)}
    assert len(keys) == 2
    restored = [e for e in snapshot(run) if not e[0].startswith("cross/p1-t1-k1-s1-")]
    assert restored == before


# --- a flood of jobs: a cap per submitter, round-robin between submitters -------------------

def precompute_cfg(name: str):
    from core.config import PrecomputeConfig

    return PrecomputeConfig(base=str(DEMO / "base"), tuned=str(DEMO / "rl"), prompts="p.jsonl",
                            name=name)


def test_a_flood_of_jobs_stops_at_the_cap_per_submitter(world, monkeypatch):
    """One process queued 200 jobs in 2.7 s before; now the 33rd is refused in one line,
    nothing written for it, while another submitter can still queue."""
    from core.jobs import queue

    cache = world["cache"]
    for i in range(32):
        queue.submit(cache, precompute_cfg(f"r{i}"))
    before = snapshot(cache)
    with pytest.raises(queue.JobError) as info:
        queue.submit(cache, precompute_cfg("r32"))
    assert str(info.value) == (
        f"{queue.SUBMITTER} has 32 job(s) queued or running; 1 more would pass the limit of "
        "32 per submitter (SHIFTLENS_MAX_JOBS_PER_SUBMITTER); wait for them to finish or "
        "cancel some")
    assert snapshot(cache) == before
    assert queue.submit(cache, precompute_cfg("other"), submitter="session b").submitter == \
        "session b"
    monkeypatch.setenv("SHIFTLENS_MAX_JOBS_PER_SUBMITTER", "many")
    with pytest.raises(queue.JobError, match=r"^SHIFTLENS_MAX_JOBS_PER_SUBMITTER: not a number "
                                             r"\('many'\); give a positive whole number "
                                             r"\(default 32\)$"):
        queue.submit(cache, precompute_cfg("r33"))


def test_add_pair_refuses_a_plan_past_the_cap_before_queueing_any(world, monkeypatch):
    from core.jobs import queue
    from core.jobs.add_pair import add_pair
    from tests.conftest import HELDOUT

    monkeypatch.setenv("SHIFTLENS_MAX_JOBS_PER_SUBMITTER", "2")
    queue.submit(world["cache"], precompute_cfg("mine"), submitter="session a")
    before = snapshot(world["cache"])
    with pytest.raises(queue.JobError, match=r"^session a has 1 job\(s\) queued or running; "
                                             r"2 more would pass the limit of 2"):
        add_pair(str(DEMO / "base"), str(DEMO / "rl"), str(HELDOUT), sft=str(DEMO / "sft"),
                 cache=world["cache"], submitter="session a")
    assert snapshot(world["cache"]) == before


def test_queued_jobs_start_round_robin_between_submitters(world, monkeypatch):
    """Ten jobs from a flooder, then one each from two others: with one job at a time the
    others' jobs start second and third, not eleventh and twelfth."""
    from core.jobs import queue

    cache = world["cache"]
    for i in range(10):
        queue.submit(cache, precompute_cfg(f"flood{i}"), submitter="session flood")
    queue.submit(cache, precompute_cfg("b"), submitter="session b")
    queue.submit(cache, precompute_cfg("c"), submitter="session c")
    order = []

    def start(job):  # no process: record the order and finish the job at once
        order.append(job.run)
        job.state, job.started, job.finished = "done", float(len(order)), float(len(order))
        queue.write_job(job)

    monkeypatch.setattr(queue.process, "start", start)
    while queue.tick(cache, max_running=1):
        pass
    assert order == ["flood0", "b", "c", *[f"flood{i}" for i in range(1, 10)]]


def test_fair_order_counts_running_jobs():
    from core.jobs.queue import Job, fair_order

    def job(i, who, state="queued"):
        return Job(id=f"j{i}", run=f"r{i}", state=state, config={}, cwd=".", created=i,
                   submitter=who)

    running = [job(0, "a", "running"), job(1, "a", "running")]
    queued = [job(2, "a"), job(3, "b"), job(4, "b"), job(5, "a"), job(6, "c")]
    assert [j.id for j in fair_order(queued, running)] == ["j3", "j6", "j4", "j2", "j5"]
    done = [dataclasses.replace(job(7, "b", "done"), started=9.0)]  # b was served last
    assert [j.id for j in fair_order([job(8, "b"), job(9, "c")], done)] == ["j9", "j8"]
