"""Hostile row counts, lengths and ids (issue 23): each attack is refused with one clear
line, nothing in the cache or the uploads is lost or changed (tests/hostile_fs.py snapshot),
and the limit holds: row bombs are refused from a Parquet footer or at the first JSONL row
past SHIFTLENS_MAX_ROWS, with the peak memory of a fresh child process measured
(benchmarks/child.py), through the CLI and the upload path; the estimate counts every row
and a row past the models' context is refused. Run folders, sweeps and the job queue:
tests/test_hostile_store_limits.py."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.child import run_child
from core.errors import PromptSetError
from core.inputs.prompts import load_prompts
from core.inputs.rollouts import load_rollouts
from core.jobs.upload import rollouts_dir, save_prompt_set, save_rollouts
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
    assert lines[1] == "  empty.jsonl line 1: an empty record (no fields)"
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
