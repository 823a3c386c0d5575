"""The shift ledger without TRL (core.jobs.ledger, core.integrations.trl's _Ledger): the
framework-neutral record_checkpoint queues one series run per checkpoint and refuses bad
requests in one line before queueing anything; the callback's logic keeps the step
alignment (checkpoint-s scored on the rollouts of step s+1, the base on step 1's); a ledger
without a final run reads as one series from any of its runs. The real GRPOTrainer run is in
tests/test_trl_ledger.py (tier `trl`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import JobError
from core.jobs import queue
from core.jobs.ledger import record_checkpoint
from core.store.cache import series_of
from core.store.run import Run
from tests.conftest import DEMO, HELDOUT

STEP30 = DEMO / "rl-steps" / "step-12"


def _rollouts(tmp_path) -> Path:
    f = tmp_path / "completions_00004.parquet"
    f.write_bytes(b"PAR1")  # never read before queueing
    return f


@pytest.mark.unit
def test_record_checkpoint_queues_one_series_run_and_starts_nothing_when_asked(tmp_path):
    cache = tmp_path / "cache"
    f = _rollouts(tmp_path)
    job = record_checkpoint(str(DEMO / "base"), STEP30, 3, series="grpo", rollouts=f,
                            cache=cache, start=False)
    assert (job.run, job.state, job.kind) == ("grpo-step-3", "queued", "precompute")
    c = job.config
    assert (c["base"], c["tuned"], c["traces"], c["prompts"]) == (
        str(DEMO / "base"), str(STEP30.resolve()), str(f.resolve()), "")
    assert (c["kind"], c["series_step"], c["traces_from"], c["series_sampling"]) == (
        "series", 3, "grpo", "own")
    probe = record_checkpoint(str(DEMO / "base"), STEP30, 4, series="grpo", prompts=HELDOUT,
                              cache=cache, start=False)
    assert (probe.config["prompts"], probe.config["traces"]) == (str(HELDOUT.resolve()), "")
    assert [j.run for j in queue.list_jobs(cache)] == ["grpo-step-3", "grpo-step-4"]
    with pytest.raises(JobError, match="run 'grpo-step-3' is already queued"):
        record_checkpoint(str(DEMO / "base"), STEP30, 3, series="grpo", rollouts=f,
                          cache=cache, start=False)


@pytest.mark.unit
@pytest.mark.parametrize("kw, message", [
    (dict(), "give exactly one of rollouts="),
    (dict(rollouts="R", prompts=str(HELDOUT)), "give exactly one of rollouts="),
    (dict(rollouts="R", step=-1), "step -1: a training step is an integer >= 0"),
    (dict(rollouts="R", series="a b"), "series name 'a b': use letters"),
    (dict(rollouts="R", checkpoint="nowhere"), "checkpoint 'nowhere': not a saved model"),
    (dict(rollouts="missing.parquet"), "rollouts '.*missing.parquet': no such .jsonl"),
    (dict(prompts=str(DEMO / "base" / "config.json")), "prompts .*: no such .jsonl"),
    (dict(rollouts="R", base=""), "base: give the base model"),
])
def test_record_checkpoint_refuses_in_one_line_and_queues_nothing(tmp_path, kw, message):
    f = _rollouts(tmp_path)
    kw = {k: (str(f) if v == "R" else v) for k, v in kw.items()}
    args = dict(base=str(DEMO / "base"), checkpoint=STEP30, step=2, series="grpo")
    args.update({k: kw.pop(k) for k in list(kw) if k in args})
    with pytest.raises(JobError, match=message) as e:
        record_checkpoint(args["base"], args["checkpoint"], args["step"],
                          series=args["series"], cache=tmp_path / "cache", **kw)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists()


def _trl_output(root: Path, completions, checkpoints) -> Path:
    (root / "completions").mkdir(parents=True)
    for k in completions:
        (root / "completions" / f"completions_{k:05d}.parquet").write_bytes(b"PAR1")
    for k in checkpoints:
        (root / f"checkpoint-{k}").mkdir()
        (root / f"checkpoint-{k}" / "config.json").write_text("{}")
    return root


@pytest.mark.unit
def test_the_callback_scores_each_checkpoint_on_the_rollouts_it_sampled(tmp_path,
                                                                        monkeypatch):
    import core.integrations.trl as integ

    calls, lines = [], []

    def fake(base, ckpt, step, **kw):
        calls.append((str(ckpt), step, Path(kw.get("rollouts") or kw.get("prompts")).name,
                      kw["series"]))
        return queue.Job(id=f"j{step}", run=f"{kw['series']}-step-{step}", state="queued",
                         config={}, cwd="", created=0.0)

    monkeypatch.setattr(integ, "record_checkpoint", fake)
    out = _trl_output(tmp_path / "grpo-out", completions=(1, 2), checkpoints=(2,))
    led = integ._Ledger(base=str(DEMO / "base"), cache=tmp_path / "cache", log=lines.append)
    led.begin(str(out), None)
    assert led.series == "grpo-out"  # the output folder's name by default
    led.saved_step(str(out), 2)  # step 1's rollouts were the base's; checkpoint-2 waits
    assert calls == [(str(DEMO / "base"), 0, "completions_00001.parquet", "grpo-out")]
    for k in (3, 4):  # two more steps, then the save of checkpoint-4
        (out / "completions" / f"completions_{k:05d}.parquet").write_bytes(b"PAR1")
    (out / "checkpoint-4").mkdir()
    led.saved_step(str(out), 4)
    assert calls[1:] == [(str(out / "checkpoint-2"), 2, "completions_00003.parquet",
                          "grpo-out")]
    led.end()
    assert lines[-1] == ("shift ledger: checkpoint(s) [4] not recorded: no rollouts they "
                         "sampled (completions of the next step); give probe= to score them")
    refused = integ._Ledger(series="r", base=str(DEMO / "base"), cache=tmp_path / "c",
                            log=lines.append)
    monkeypatch.setattr(integ, "record_checkpoint", record_checkpoint)
    refused.begin(str(out), None)
    refused.recorded.add(0)  # the base's entry is not what this checks
    (out / "checkpoint-2" / "config.json").unlink()  # a checkpoint gone before its entry
    refused.saved_step(str(out), 2)
    assert lines[-1].startswith("shift ledger: step 2 not recorded: checkpoint ")
    assert not (tmp_path / "c").exists()  # nothing queued
    monkeypatch.setattr(integ, "record_checkpoint", fake)
    probe = integ._Ledger(series="p", base="b", probe=str(HELDOUT), log=lines.append)
    probe.begin(str(out), None)
    probe.saved_step(str(out), 2)
    assert calls[-1] == (str(out / "checkpoint-2"), 2, HELDOUT.name, "p")
    with pytest.raises(JobError, match="save_total_limit=2 deletes checkpoints"):
        integ._Ledger(base="b").begin(str(out), 2)
    with pytest.raises(JobError, match="give base="):
        integ._Ledger().begin(str(out), None, model=None)


@pytest.mark.unit
def test_the_integration_imports_transformers_only_when_the_callback_is_asked_for():
    import ast

    import core.integrations.trl as integ

    tree = ast.parse(Path(integ.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top for a in n.names} | {n.module or "" for n in top
                                                    if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.split(".")[0] in ("transformers", "trl")}
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        integ.Nope  # noqa: B018


def _info(name: str, **manifest) -> Run:
    return Run(name, Path(name), {"name": name, "kind": "series", **manifest})


@pytest.mark.unit
def test_a_ledger_without_a_final_run_reads_as_one_series_from_any_of_its_runs():
    runs = [_info("g-step-4", series_of="g", series_step=4),
            _info("g-step-0", series_of="g", series_step=0),
            _info("g-step-2", series_of="g", series_step=2),
            _info("other", series_step=None)]
    want = ["g-step-0", "g-step-2", "g-step-4"]
    assert series_of(runs, runs[0]) == want
    assert series_of(runs, runs[1]) == want
    assert series_of(runs, runs[3]) == []
    assert series_of(runs[:1], runs[0]) == []  # one run is no series
    final = _info("g", series_step=6)  # a final run exists: the series ends at it
    assert series_of(runs + [final], final) == want + ["g"]
    assert series_of(runs + [final], runs[0]) == []


@pytest.mark.model
def test_a_probe_ledger_is_one_series_of_the_checkpoints_own_samples(tmp_path):
    """The entries a verl/OpenRLHF hook would queue with a probe set (ledger_config is what
    record_checkpoint queues; computed here in this process, the queue's own path is the TRL
    test's, and so is the evolution page): each checkpoint samples the probe itself; the two
    entries read as one series whose evolution has both steps."""
    from core import queries as Q
    from core.config import PrecomputeConfig
    from core.jobs.ledger import ledger_config
    from core.precompute.driver import precompute
    from core.store.cache import list_runs

    probe = tmp_path / "probe.jsonl"
    probe.write_text("".join(HELDOUT.read_text().splitlines(keepends=True)[:2]))
    cache = tmp_path / "cache"
    for k in (12, 24):
        precompute(ledger_config(str(DEMO / "base"), str(DEMO / "rl-steps" / f"step-{k}"), k,
                                 series="loop", prompts=probe, cache=cache,
                                 settings=PrecomputeConfig(n=2, max_new_tokens=40)),
                   log=lambda line: None, show_progress=False)
    runs = list_runs(cache)
    assert series_of(runs, next(r for r in runs if r.name == "loop-step-12")) == [
        "loop-step-12", "loop-step-24"]
    m = json.loads((cache / "loop-step-24" / "manifest.json").read_text())
    assert m["samplers"]["tuned"]["model"] == str((DEMO / "rl-steps" / "step-24").resolve())
    names = ["loop-step-12", "loop-step-24"]
    df = Q.evolution(Q.open_runs([cache / n for n in names]), names, high=0.01)
    assert df["step"].tolist() == [12, 24] and (df["p99"] > 0).all()
