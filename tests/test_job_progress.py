"""A precompute reports progress inside a shard (sampling per model, then scoring), so a
small job (one shard) moves through its bar instead of sitting at 0% until it is done."""

from __future__ import annotations

import json

import pytest

from core.config import PrecomputeConfig
from core.jobs.queue import Job
from core.precompute.driver import precompute

pytestmark = pytest.mark.model


def test_progress_moves_within_a_single_shard(tiny_pair, tmp_path):
    records = []
    cfg = PrecomputeConfig(base=str(tiny_pair["base"]), tuned=str(tiny_pair["tuned"]),
                           prompts=str(tiny_pair["prompts"]), cache=str(tmp_path / "cache"),
                           name="p", n=1, max_new_tokens=8, sample_from="both")
    precompute(cfg, log=lambda m: None, show_progress=False, progress=records.append)
    assert {r["shards_total"] for r in records} == {1}
    inside = [r for r in records if r["stage"] == "shards" and r["shards_done"] == 0]
    steps = [r["step"] for r in inside]
    assert steps[1:] == ["shard 1/1: sampling from tuned", "shard 1/1: sampling from base",
                         "shard 1/1: scoring under both models"]
    partial = [r["prompts_partial"] for r in inside]
    assert partial == sorted(partial) and 0 < partial[-1] < records[-1]["prompts_total"]
    assert records[-1]["stage"] == "done"
    assert records[-1]["prompts_partial"] == records[-1]["prompts_total"] == 6


def test_progress_line_names_shards_prompts_and_step(tmp_path):
    job = Job(id="j1", run="r", state="running", config={}, cwd=".", created=0.0,
              path=tmp_path)
    (tmp_path / "progress.json").write_text(json.dumps({
        "stage": "shards", "shards_done": 1, "shards_total": 4, "prompts_done": 16,
        "prompts_total": 64, "done": 24.0, "total": 64, "step": "shard 2/4: scoring"}))
    assert job.fraction() == pytest.approx(24 / 64)
    assert job.progress_line() == "38% · 1/4 shards · 16/64 prompts · shard 2/4: scoring"
