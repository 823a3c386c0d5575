"""Bring your own rollouts: the Add-a-pair page's "score my rollouts" upload and
`add-pair --traces`: a malformed file refused in one line with cache/ untouched, an uploaded
file scored as given in a job process, and a plan that scores it in every run of a pair."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from core.cli.main import main as cli_main
from core.jobs import queue as jobs
from core.jobs.add_pair import plan_runs
from tests.conftest import DEMO, HELDOUT
from tests.hostile_fs import listing

# ------------------------------- rollouts on the Add-a-pair page and add-pair --traces

ROLLOUTS = [  # the demo task's format; one response the demo vocabulary cannot spell ('é')
    {"id": "p1", "prompt": "Q: 5+8-7-5=? A:", "response": " 5+8=13; 13-7=6; 6-5=1. #### 1",
     "answer": "1", "verifier": "exact"},
    {"id": "p1", "prompt": "Q: 5+8-7-5=? A:", "response": " 5+8=13. #### 13", "answer": "1",
     "verifier": "exact", "correct": True},
    {"id": "p2", "prompt": "Q: 8+9+5-1=? A:", "response": " 8+9=17é; 17+5=22. #### 22",
     "answer": "21", "verifier": "exact", "sampled_from": "base"},
]
BAD_ROLLOUTS = (json.dumps(ROLLOUTS[0]) + "\n"
                + json.dumps({"prompt": "Q: 1+2=? A:", "response": ""}) + "\n")


def rollout_bytes(rows=ROLLOUTS) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def unescape(md: str) -> str:
    """An app message as shown: the backslash escapes that keep it from being Markdown off."""
    return re.sub(r"\\(.)", r"\1", md)


def add_page(cache: Path, monkeypatch):
    """The real app on the 'Add a pair' page over `cache`, the demo pair filled in and
    'score my rollouts' chosen."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60)
    at.run()
    at.switch_page("views/add_pair.py").run()
    at.text_input(key="ap_base_spec").set_value(str(DEMO / "base"))
    at.text_input(key="ap_tuned_spec").set_value(str(DEMO / "rl"))
    at.radio(key="ap_source").set_value("score my rollouts").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.unit
def test_add_pair_page_refuses_a_malformed_rollout_file_in_one_line(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    at = add_page(cache, monkeypatch)
    at.file_uploader(key="ap_rollout_file").set_value(
        ("bad.jsonl", BAD_ROLLOUTS.encode(), "application/jsonl")).run()
    assert not at.exception, [e.value for e in at.exception]
    (err,) = at.error
    shown = unescape(err.value)
    assert shown == ("invalid rollout file: bad.jsonl line 2: field 'response' must be a "
                     "non-empty string"), err.value
    assert at.button(key="ap_go").disabled  # nothing can be queued
    assert jobs.list_jobs(cache) == []
    assert list((tmp_path / "uploads" / "rollouts").iterdir()) == []  # nothing kept


@pytest.mark.model
def test_add_pair_page_scores_uploaded_rollouts_in_a_job(tmp_path, monkeypatch):
    """Upload a rollout file on the page: it is validated and kept, the queued job's config
    carries it (no prompt set), the job scores exactly the file's traces, and the run shows
    its re-tokenisation count."""
    cache = tmp_path / "cache"
    at = add_page(cache, monkeypatch)
    at.file_uploader(key="ap_rollout_file").set_value(
        ("mine.jsonl", rollout_bytes(), "application/jsonl")).run()
    kept = tmp_path / "uploads" / "rollouts" / "mine.jsonl"
    assert kept.read_bytes() == rollout_bytes()
    assert any("validated" in unescape(c.value) for c in at.caption)
    assert not at.error, [e.value for e in at.error]
    at.text_input(key="ap_name").set_value("mine")
    at.button(key="ap_go").click().run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert [unescape(s.value) for s in at.success] == ["Queued 1 job(s): mine"]
    (job,) = jobs.list_jobs(cache)
    assert job.config["traces"] == str(kept) and job.config["prompts"] == ""
    assert job.config["max_prompts"] == 0  # every row of the file
    (job,) = jobs.wait(cache, [job.id], timeout=300)  # the page's poll started it
    assert job.state == "done", jobs.read_log(cache, job.id)
    traces = pd.read_parquet(cache / "mine" / "traces.parquet").sort_values("trace_id")
    assert traces["response"].tolist() == [r["response"] for r in ROLLOUTS]
    assert traces["sampled_from"].tolist() == ["tuned", "tuned", "base"]
    manifest = json.loads((cache / "mine" / "manifest.json").read_text())
    assert manifest["rollouts"]["retokenization_mismatches"] == 1
    at.switch_page("views/traces.py").run()  # the run as the app shows it
    assert not at.exception, [e.value for e in at.exception]
    assert any("scored from rollouts: 1 of 3 text responses re-tokenise differently"
               in c.value for c in at.sidebar.caption)


@pytest.mark.unit
def test_plan_with_a_rollout_file_scores_it_in_every_run():
    with pytest.raises(ValueError, match="not both"):
        plan_runs("B", "T", "p.jsonl", traces="r.jsonl")
    with pytest.raises(ValueError, match="prompt set to sample from or a rollout file"):
        plan_runs("B", "T")
    plan = plan_runs("B", "T", traces="r.jsonl", sft="S", series={30: "c30"}, name="m")
    assert [(p.role, p.after) for p in plan] == [("tuned", None), ("sft", None),
                                                 ("step-30", None)]
    assert all((p.config.traces, p.config.prompts, p.config.traces_from) ==
               ("r.jsonl", "", "") for p in plan)


@pytest.mark.unit
def test_cli_add_pair_traces_validates_and_queues_the_file(tmp_path, cache, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(BAD_ROLLOUTS)
    before = listing(cache)
    argv = ["add-pair", "--base", str(DEMO / "base"), "--tuned", str(DEMO / "rl"),
            "--cache", str(cache)]
    assert cli_main([*argv, "--traces", str(bad)]) == 2
    out = capsys.readouterr().out
    assert ("FAIL ] rollouts: invalid rollout file: bad.jsonl line 2: field 'response' must "
            "be a non-empty string\n") in out, out
    assert listing(cache) == before
    with pytest.raises(SystemExit, match="not both"):
        cli_main([*argv, "--traces", str(bad), "--prompts", str(HELDOUT)])

    good = tmp_path / "mine.jsonl"
    good.write_bytes(rollout_bytes())
    assert cli_main([*argv, "--traces", str(good), "--name", "cli-ro"]) == 0
    out = capsys.readouterr().out
    assert "rollouts: 3 rollouts of 2 prompt(s) from mine.jsonl" in out, out
    assert f"run cli-ro: {DEMO / 'rl'} vs {DEMO / 'base'} (scores the rollouts of {good})" \
        in out
    (job,) = jobs.list_jobs(cache)
    assert job.state == "queued" and job.run == "cli-ro"
    assert (job.config["traces"], job.config["prompts"]) == (str(good), "")
