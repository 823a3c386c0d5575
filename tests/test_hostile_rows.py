"""Hostile row counts, lengths, ids, run folders and job floods (issue 23): each attack is
refused with one clear line, nothing in the cache or the uploads is lost or changed
(tests/hostile_fs.py snapshot), and the limit holds: row bombs are refused from a Parquet
footer or at the first JSONL row past SHIFTLENS_MAX_ROWS, with the peak memory of a fresh
child process measured (benchmarks/child.py), through the CLI and the upload path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.child import run_child
from core.errors import PromptSetError, RunsError
from core.inputs.prompts import load_prompts
from core.inputs.rollouts import load_rollouts
from core.jobs.runs import delete_run, rename_run
from core.jobs.upload import rollouts_dir, save_prompt_set, save_rollouts
from core.store.cache import list_runs, writing_into
from tests.conftest import DEMO
from tests.hostile_fs import snapshot

pytestmark = pytest.mark.unit
ROW = b'{"prompt": "Q: 1+1=? A:", "response": " 2"}\n'


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A cache with a run in it and the uploads beside it; snapshot() of both."""
    cache = tmp_path / "cache"
    (cache / "demo-rl").mkdir(parents=True)
    (cache / "demo-rl" / "manifest.json").write_text('{"schema": 1}')
    uploads = tmp_path / "uploads"
    for sub in ("prompts", "rollouts"):
        (uploads / sub).mkdir(parents=True)
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    monkeypatch.setenv("SHIFTLENS_UPLOADS", str(uploads))
    monkeypatch.delenv("SHIFTLENS_MAX_ROWS", raising=False)
    return {"root": tmp_path, "cache": cache, "uploads": uploads,
            "state": lambda: (snapshot(cache), snapshot(uploads))}


def null_rows_parquet(path: Path, rows: int) -> Path:
    """A Parquet file of `rows` null rows: a few kilobytes that describe millions of rows."""
    pq.write_table(pa.table({"prompt": pa.nulls(rows, pa.string())}), path)
    return path


def jsonl_rows(path: Path, rows: int, line: bytes = ROW) -> Path:
    path.write_bytes(line * rows)
    return path


# --- row bombs, in a child process whose peak memory is measured ----------------------------

CHILD = """
import contextlib, io, json, os
from pathlib import Path
from core.cli.main import main
from core.errors import ShiftLensError
from core.jobs.upload import save_prompt_set, save_rollouts
import core.precompute.driver  # what the CLI imports, before the measurement
cache = Path({cache!r})
cases = json.loads({cases!r})
datas = [Path(path).read_bytes() if how != "cli" else None for how, path, env in cases]
before = hwm()
out = []
for (how, path, env), data in zip(cases, datas):  # VmHWM only grows: each mib bounds all before
    os.environ.pop("SHIFTLENS_MAX_ROWS", None)
    os.environ.update(env)
    path, t = Path(path), time.perf_counter()
    try:
        if how == "cli":
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(["precompute", "--base", {base!r}, "--tuned", {base!r}, "--traces",
                           str(path), "--cache", str(cache)])
            message = err.getvalue().strip() if rc else "accepted"
        elif how == "upload-rollouts":
            save_rollouts(data, path.name, cache.parent / "uploads" / "rollouts")
            message = "accepted"
        else:
            save_prompt_set(data, path.name, cache.parent / "uploads" / "prompts")
            message = "accepted"
    except ShiftLensError as e:
        message = str(e)
    out.append({{"mib": hwm() - before, "s": time.perf_counter() - t, "message": message}})
print(json.dumps(out))
"""

# (id, how, file, SHIFTLENS_MAX_ROWS or None)
BOMBS = [("parquet-cli", "cli", "bomb.parquet", None),
         ("parquet-upload-rollouts", "upload-rollouts", "bomb.parquet", None),
         ("parquet-upload-prompts", "upload-prompts", "bomb.parquet", None),
         ("jsonl-cli", "cli", "bomb.jsonl", "1000"),
         ("jsonl-upload-rollouts", "upload-rollouts", "bomb.jsonl", "1000"),
         ("bad-rows-upload", "upload-rollouts", "empty.jsonl", None)]


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict:
    """Every row bomb through the CLI and the uploads, in one fresh child process whose peak
    memory (VmHWM, over its imports) is read after each: {id: {mib, s, message}}, and
    whether the cache and the uploads are byte for byte what they were."""
    root = tmp_path_factory.mktemp("bombs")
    cache = root / "cache"
    (cache / "demo-rl").mkdir(parents=True)
    (cache / "demo-rl" / "manifest.json").write_text('{"schema": 1}')
    for sub in ("prompts", "rollouts"):
        (root / "uploads" / sub).mkdir(parents=True)
    null_rows_parquet(root / "bomb.parquet", 2_000_000)
    assert (root / "bomb.parquet").stat().st_size < 64 * 1024
    jsonl_rows(root / "bomb.jsonl", 300_000)
    jsonl_rows(root / "empty.jsonl", 3_000_000, b"{}\n")
    cases = [(how, str(root / f), {"SHIFTLENS_MAX_ROWS": rows} if rows else {})
             for _, how, f, rows in BOMBS]
    before = (snapshot(cache), snapshot(root / "uploads"))
    out = run_child(CHILD.format(cache=str(cache), cases=json.dumps(cases),
                                 base=str(DEMO / "base")))
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {"results": {b[0]: r for b, r in zip(BOMBS, got)},
            "unchanged": before == (snapshot(cache), snapshot(root / "uploads"))}


def test_row_bombs_change_no_file(bombs):
    assert bombs["unchanged"]


@pytest.mark.parametrize("case", ["parquet-cli", "parquet-upload-rollouts",
                                  "parquet-upload-prompts"])
def test_parquet_row_bomb_is_refused_from_its_footer(bombs, case):
    """2,000,000 null rows in 4 KB (1.4-1.6 GB and 10-15 s before): refused from the footer
    at the default limit, the child's memory barely moving."""
    got = bombs["results"][case]
    prefix = "error: " if case.endswith("cli") else ""
    assert got["message"] == (f"{prefix}bomb.parquet: 2,000,000 rows, more than 200,000, the "
                              "limit for one file (SHIFTLENS_MAX_ROWS); split it")
    assert got["mib"] < 64, got


@pytest.mark.parametrize("case", ["jsonl-cli", "jsonl-upload-rollouts"])
def test_jsonl_row_bomb_stops_at_the_first_row_past_the_limit(bombs, case):
    """300,000 valid one-line rollouts against a limit of 1,000: the reading stops at line
    1,001, so the child's memory stays near its imports (every row read became a
    RolloutRow before: 249 MiB and 16 s for this file, accepted)."""
    got = bombs["results"][case]
    prefix = "error: " if case.endswith("cli") else ""
    assert got["message"] == (f"{prefix}bomb.jsonl line 1001: more than 1,000 rows, the limit "
                              "for one file (SHIFTLENS_MAX_ROWS); split it")
    assert got["mib"] < 64, got


def test_a_file_of_bad_rows_stops_at_the_first_problems(bombs):
    """6 MB of `{}` lines (1.07 GB before): every line is a problem, and the reading stops
    after 20 of them; the message lists them and says it stopped."""
    got = bombs["results"]["bad-rows-upload"]
    lines = got["message"].splitlines()
    assert lines[0] == "invalid rollout file:"
    assert lines[1].startswith("  empty.jsonl line 1: give exactly one of 'prompt'")
    assert lines[-1] == "  ... and more: the reading stopped after 20 problems"
    assert got["mib"] < 64, got


def test_rows_at_the_limit_are_read(world, monkeypatch):
    monkeypatch.setenv("SHIFTLENS_MAX_ROWS", "50")
    ok = jsonl_rows(world["root"] / "ok.jsonl", 50)
    assert len(load_rollouts(ok).rows) == 50
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(50)], "prompt": ["Q"] * 50,
                             "answer": ["2"] * 50}), world["root"] / "ok.parquet")
    assert len(load_prompts(world["root"] / "ok.parquet").rows) == 50
    with pytest.raises(PromptSetError, match=r"^ok\.jsonl line 51: more than 50 rows"):
        load_rollouts(jsonl_rows(world["root"] / "ok.jsonl", 51))


# --- conflicting rollout ids -----------------------------------------------------------------

def rollout_lines(*recs) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in recs)


@pytest.mark.parametrize("recs,message", [
    ([{"id": 1, "prompt": "Q: 1+1=? A:", "response": " 2"},
      {"id": "1", "prompt": "Q: 1+1=? A:", "response": " 3"}],
     "invalid rollout file: ids.jsonl line 2: prompt id '1' and 1 in ids.jsonl line 1 are "
     "the same id written as a number and as a string; write every id one way"),
    ([{"prompt_id": "a", "prompt": "Q: 1+1=? A:", "response": " 2"},
      {"prompt_id": "b", "prompt": "Q: 2+2=? A:", "response": " 4"},
      {"prompt_id": "a", "prompt": "Q: 3+3=? A:", "response": " 6"}],
     "invalid rollout file: ids.jsonl line 3: prompt id 'a' is also ids.jsonl line 1's, whose "
     "prompt differs; give different prompts different ids"),
], ids=["number-and-string", "one-id-two-prompts"])
def test_conflicting_rollout_ids_are_one_line_naming_both_rows(world, recs, message):
    before = world["state"]()
    with pytest.raises(PromptSetError) as info:
        save_rollouts(rollout_lines(*recs), "ids.jsonl", rollouts_dir(world["cache"]))
    assert str(info.value) == message
    assert world["state"]() == before


def test_one_id_on_samples_of_one_prompt_is_one_prompt(world):
    p = world["root"] / "same.jsonl"
    p.write_bytes(rollout_lines(*[{"id": 7, "prompt": "Q: 1+1=? A:", "response": f" {k}"}
                                  for k in range(3)]))
    rs = load_rollouts(p)
    assert {r.prompt_id for r in rs.rows} == {"7"} and rs.sample_index == [0, 1, 2]


def test_save_prompt_set_counts_rows_too(world, monkeypatch):
    monkeypatch.setenv("SHIFTLENS_MAX_ROWS", "3")
    data = b"".join(json.dumps({"id": f"p{i}", "prompt": "Q", "answer": "2"}).encode() + b"\n"
                    for i in range(4))
    before = world["state"]()
    with pytest.raises(PromptSetError, match=r"^p\.jsonl line 4: more than 3 rows, the limit"):
        save_prompt_set(data, "p.jsonl", world["uploads"] / "prompts")
    assert world["state"]() == before


# --- lengths: the estimate covers every row, a row past the context is refused --------------

def long_row_file(path: Path, response_tokens: int, at: int, rows: int = 300) -> Path:
    """`rows` short rollouts, the one at (1-based) line `at` with `response_tokens` ids."""
    recs = [{"id": f"p{i}", "prompt": "Q: 1+1=? A:", "response_ids": [5, 14, 5]}
            for i in range(rows)]
    recs[at - 1]["response_ids"] = [5] * response_tokens
    path.write_bytes(rollout_lines(*recs))
    return path


def check(report, name: str):
    (c,) = [c for c in report.checks if c.name == name]
    return c


def validate(traces: Path, **settings):
    from core.config import PrecomputeConfig
    from core.jobs.validate import validate_pair

    return validate_pair(str(DEMO / "base"), str(DEMO / "rl"), traces=str(traces),
                         settings=PrecomputeConfig(**settings))


def test_the_estimate_counts_a_long_row_past_row_256(world):
    """The estimate read the first 256 rows: a long response at row 300 was left out. Now
    the file is estimated the same whichever row holds it, and that row is named."""
    late = validate(long_row_file(world["root"] / "late.jsonl", 100, at=300))
    first = validate(long_row_file(world["root"] / "first.jsonl", 100, at=1))
    assert late.ok and first.ok
    assert check(late, "context").message == (
        "the longest row is late.jsonl line 300: 12 prompt and 100 response tokens, within "
        "the 128 positions the base model reads")
    assert late.estimates["tuned"].scored_tokens == first.estimates["tuned"].scored_tokens
    assert late.estimates["tuned"].total_bytes == first.estimates["tuned"].total_bytes
    assert "longest response's length, late.jsonl line 300)" in check(late, "time").message


def test_a_response_past_the_context_is_refused_naming_the_row(world):
    before = world["state"]()
    report = validate(long_row_file(world["root"] / "long.jsonl", 3000, at=300))
    assert not report.ok
    failed = [c for c in report.checks if not c.ok and c.fatal]
    assert [(c.name, c.message) for c in failed] == [("context", (
        "long.jsonl line 300: the prompt and response are 3,012 tokens, more than the 128 "
        "positions the base model reads (max_position_embeddings in config.json); shorten "
        "the row, or cut rows at the context (--truncate-to-context)"))]
    cut = validate(world["root"] / "long.jsonl", truncate_to_context=True)
    assert cut.ok and check(cut, "context").message == (
        "1 row(s) longer than the 128 positions the base model reads will be cut there and "
        "marked as cut in the run (the first: long.jsonl line 300)")
    assert world["state"]() == before


def test_a_prompt_past_the_context_is_refused(world):
    from core.jobs.validate import validate_pair

    p = world["root"] / "p.jsonl"
    p.write_bytes(rollout_lines({"id": "a", "prompt": "Q: 1+1=? A:", "answer": "2"},
                                {"id": "b", "prompt": "1+" * 100, "answer": "2"}))
    report = validate_pair(str(DEMO / "base"), str(DEMO / "rl"), prompts=str(p))
    assert check(report, "context").message == (
        "p.jsonl: prompt id 'b': the prompt is 201 tokens, at least the 128 positions the "
        "base model reads (max_position_embeddings in config.json), leaving none for a "
        "response; shorten it")
    assert not report.ok


@pytest.mark.model
def test_precompute_refuses_a_row_past_the_context_or_cuts_it_when_asked(world, capsys):
    """Through the CLI: refused in one line before anything is written; with
    --truncate-to-context the row is cut at the 128 positions and the run says so."""
    from core.cli.main import main
    from core.store.manifest import read_manifest

    traces = world["root"] / "long.jsonl"
    traces.write_bytes(rollout_lines(
        {"id": "a", "prompt": "Q: 1+1=? A:", "response": " 2"},
        {"id": "b", "prompt": "Q: 1+1=? A:", "response_ids": [5] * 300}))
    argv = ["precompute", "--base", str(DEMO / "base"), "--tuned", str(DEMO / "rl"),
            "--traces", str(traces), "--cache", str(world["cache"]), "--name", "cut"]
    before = world["state"]()
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "error: long.jsonl line 2: the prompt and response are 312 tokens, more than the 128 "
        "positions either model reads (max_position_embeddings in config.json); shorten the "
        "row, or cut rows at the context (--truncate-to-context)\n")
    assert world["state"]() == before
    assert main([*argv, "--truncate-to-context"]) == 0
    run = world["cache"] / "cut"
    assert read_manifest(run)["rollouts"]["cut_to_context"] == [1]
    traces_table = pq.read_table(run / "traces.parquet").to_pylist()
    assert [(t["length"], t["finished"]) for t in traces_table][1] == (128 - 12, False)


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
from tests.test_hostile_rows import sweep_result
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
    with pytest.raises(queue.JobError, match=r"^SHIFTLENS_MAX_JOBS_PER_SUBMITTER='many': give "
                                             r"a positive number \(default 32\)$"):
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
        queue._write(job)

    monkeypatch.setattr(queue, "_start", start)
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
