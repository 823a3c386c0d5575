"""A training run's folder as a checkpoint series (core.jobs.training_run): TRL's
completions/completions_K.parquet beside checkpoint-K/ become one run per step, each
scoring that step's rollouts under the base and the checkpoint that sampled them
(checkpoint-(K-1), the base for K = 1), linked as a series the evolution figure and the
overview page show; a step without its sampling checkpoint is left out and named."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import PrecomputeConfig
from core.errors import PairError
from core.jobs.training_run import find_training_run, plan_training_run
from tests.conftest import DEMO, open_app
from tests.test_formats import demo  # noqa: F401  (three demo-task rollouts)

QUIET = dict(log=lambda s: None, show_progress=False)


def trl_folder(root, rows, steps=(1, 2, 3, 5), checkpoints=(1, 2, 3)):
    """A TRL GRPOTrainer output folder: a completions file per step and checkpoints (the demo's
    rl-steps stand in for the policy after updates 1, 2, 3)."""
    (root / "completions").mkdir(parents=True)
    for k in steps:
        pq.write_table(pa.table({
            "step": [k] * len(rows), "prompt": [r["prompt"] for r in rows],
            "completion": [r["text"] for r in rows],
            "accuracy_reward": [float(r["reward"]) for r in rows],
            "advantage": [0.0] * len(rows)}),
            root / "completions" / f"completions_{k:05d}.parquet")
    for k, src in zip(checkpoints, ("step-12", "step-24", "step-36")):
        shutil.copytree(DEMO / "rl-steps" / src, root / f"checkpoint-{k}")
    return root


@pytest.mark.unit
def test_steps_are_aligned_with_the_checkpoint_that_sampled_them(tmp_path):
    rows = [{"prompt": "Q: 1+2=? A:", "text": " 1+2=3. #### 3", "reward": 1}]
    folder = trl_folder(tmp_path / "run", rows)
    run = find_training_run(folder, "BASE")
    assert [(s.step, s.sampler_step) for s in run.steps] == [(1, 0), (2, 1), (3, 2)]
    assert run.steps[0].sampler == "BASE"
    assert run.steps[1].sampler == str(folder / "checkpoint-1")
    assert run.notes == ["steps 5 left out: their sampling checkpoint (checkpoint-(k-1)) is "
                         "not in the folder"]
    _, plan = plan_training_run(folder, "BASE", name="grpo")
    assert [(p.config.name, p.config.series_step, p.config.traces_from,
             p.config.series_sampling) for p in plan] == [
        ("grpo", 2, "", "reuse"), ("grpo-step-0", 0, "grpo", "own"),
        ("grpo-step-1", 1, "grpo", "own")]
    verl = tmp_path / "verl"  # rollout_data_dir one folder below, beside checkpoint-k/
    (verl / "rollouts").mkdir(parents=True)
    for k in (1, 2, 3):
        (verl / "rollouts" / f"{k}.jsonl").write_text("{}\n")
    (verl / "checkpoint-2").mkdir()
    run = find_training_run(verl, "BASE")
    assert [(s.step, s.path.name, s.sampler) for s in run.steps] == [
        (1, "1.jsonl", "BASE"), (3, "3.jsonl", str(verl / "checkpoint-2"))]
    assert run.notes[0].startswith("steps 2 left out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairError, match="no step's rollouts with the checkpoint that sampled"):
        find_training_run(tmp_path / "empty", "BASE")


@pytest.mark.model
def test_a_trl_run_becomes_a_series_the_evolution_page_shows(demo, tmp_path,  # noqa: F811
                                                             monkeypatch):
    from core import queries as Q
    from core.figures import evolution
    from core.precompute.driver import precompute
    from core.store.cache import list_runs, series_of

    folder = trl_folder(tmp_path / "run", demo["rows"], steps=(1, 2, 3), checkpoints=(1, 2))
    cache = tmp_path / "cache"
    _, plan = plan_training_run(folder, str(DEMO / "base"), name="grpo",
                                settings=PrecomputeConfig(), cache=cache)
    for p in plan:
        precompute(p.config, **QUIET)
    runs = list_runs(cache)
    final = next(r for r in runs if r.name == "grpo")
    names = series_of(runs, final)
    assert names == ["grpo-step-0", "grpo-step-1", "grpo"]
    m = json.loads((cache / "grpo-step-1" / "manifest.json").read_text())
    assert m["models"]["tuned"]["path"] == str(folder / "checkpoint-1")
    assert m["series_of"] == "grpo" and m["series_step"] == 1
    assert m["prompt_set"]["path"].endswith("completions_00002.parquet")
    assert ("step 2: sampled by the policy before update 2, checkpoint-1"
            in m["rollouts"]["notes"])
    assert m["stats"]["accuracy"] == {"tuned": round(2 / 3, 4)}  # from the rewards
    con = Q.open_runs([cache / n for n in names])
    df = Q.evolution(con, names, high=0.01).set_index("run")
    assert df["step"].tolist() == [0, 1, 2]
    assert df.loc["grpo-step-0", "p99"] < 1e-9  # the base sampled step 1: no shift yet
    assert df.loc["grpo", "p99"] > 1e-4
    spec = evolution(con, names)
    assert spec.data["run"].tolist() == names
    at = open_app(monkeypatch, cache, "views/overview.py", run="grpo")
    charts = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert all(n in charts for n in names)
    side = " ".join(c.value for c in at.sidebar.caption).replace("\\", "")  # md_escape's
    assert "read as TRL completions Parquet (GRPOTrainer log_completions); verdicts from " \
           "accuracy_reward (binary reward: 1 = correct)" in side, side


@pytest.mark.unit
def test_add_pair_training_run_prints_the_alignment_and_plan(tmp_path, capsys):
    from core.cli.main import main as cli_main

    rows = [{"prompt": "Q: 1+2=? A:", "text": " 1+2=3. #### 3", "reward": 1}]
    folder = trl_folder(tmp_path / "run", rows, steps=(2, 3), checkpoints=(1, 2))
    assert cli_main(["add-pair", "--training-run", str(folder), "--base", str(DEMO / "base"),
                     "--name", "grpo", "--check-only", "--cache", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("alignment: the rollouts of step k were sampled by the policy before "
                      "update k: checkpoint-(k-1), the base model for k = 1")
    assert out[1:] == [
        f"run grpo: completions_00003.parquet scored under {folder / 'checkpoint-2'} vs "
        f"{DEMO / 'base'} (series step 2)",
        f"run grpo-step-1: completions_00002.parquet scored under {folder / 'checkpoint-1'} "
        f"vs {DEMO / 'base'} (series step 1)"]
    with pytest.raises(SystemExit, match="--training-run FOLDER takes --base only"):
        cli_main(["add-pair", "--training-run", str(folder), "--base", "b", "--tuned", "t"])
