"""Checkpoint series: who sampled the traces (issue 15, item 2).

A series run re-scores the final run's traces: they are labelled "reused" (not "tuned"), the
manifest names the run and model that sampled them, and the checkpoint's own accuracy comes
from its own samples, else its model card, else "not measured". Old series runs (labels
copied from the source) still open, their "tuned" traces read as "reused"."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.config import PrecomputeConfig
from core.store import samplers
from core.store.manifest import config_hash
from tests.conftest import DEMO, HELDOUT

STEP30 = DEMO / "rl-steps" / "step-12"


def _manifest(**kw) -> dict:
    m = {"name": "r", "stats": {"accuracy": {"tuned": 0.7, "base": 0.4}},
         "models": {"base": {"spec": "b", "fingerprint": {"digest": "B"}},
                    "tuned": {"spec": "t", "fingerprint": {"digest": "T"}}}}
    m.update(kw)
    return m


@pytest.mark.unit
def test_series_accuracy_takes_one_source_for_every_checkpoint():
    card = "model card, 1,000 prompts sampled at T=1"
    own = _manifest(tuned_card={"accuracy": 0.655, "n": 1000})       # own samples 0.7 + card
    step = _manifest(stats={"accuracy": {"reused": 0.674}}, tuned_card={"accuracy": 0.56,
                                                                        "n": 1000})
    # the demo's case: steps from cards, the final from its own samples -> cards for all
    assert samplers.series_accuracy([step, own]) == [(0.56, card), (0.655, card)]
    assert samplers.series_accuracy([own, own]) == [(0.7, "own samples")] * 2
    bare = _manifest(stats={}, tuned_card=None)                      # no source at all
    assert samplers.series_accuracy([step, bare]) == [(0.56, card), (None, "not measured")]


@pytest.mark.unit
def test_reused_traces_are_relabelled_and_their_sampler_recorded():
    src = _manifest(name="final", samplers={
        "tuned": {"run": "final", "role": "tuned", "model": "t", "fingerprint": "T"},
        "base": {"run": "final", "role": "base", "model": "b", "fingerprint": "B"}})
    relabel, records = samplers.reuse_plan(src, "b", "B")
    assert relabel == {"tuned": "reused", "base": "base"}
    assert records["reused"] == {"run": "final", "role": "tuned", "model": "t",
                                 "fingerprint": "T"}
    relabel, _ = samplers.reuse_plan(src, "other-base", "X")  # not this run's base model
    assert relabel == {"tuned": "reused", "base": "reused-base"}
    # a chain: re-scoring a series run keeps its labels and its records
    relabel, records = samplers.reuse_plan(
        _manifest(name="s", stats={"accuracy": {"reused": 0.7}},
                  samplers={"reused": records["reused"]}), "b", "B")
    assert relabel == {"reused": "reused"} and records["reused"]["run"] == "final"


@pytest.mark.unit
def test_old_series_runs_read_their_tuned_label_as_reused():
    old = _manifest(traces_from="final")  # written before `samplers`
    assert samplers.legacy_relabel(old) == {"tuned": "reused"}
    assert samplers.label_sql(old) == ("CASE sampled_from WHEN 'tuned' THEN 'reused' "
                                       "ELSE sampled_from END")
    assert samplers.legacy_relabel(_manifest()) is None  # not a series run
    assert samplers.legacy_relabel(_manifest(traces_from="final", samplers={})) is None
    assert samplers.label_sql(_manifest()) == "sampled_from"


@pytest.mark.unit
def test_checkpoint_accuracy_is_its_own_else_its_card_else_not_measured(tmp_path):
    assert samplers.checkpoint_accuracy(_manifest()) == (0.7, "own samples")
    card = {"accuracy": 0.563, "n": 1000}
    got = samplers.checkpoint_accuracy(_manifest(
        stats={"accuracy": {"reused": 0.674}}, tuned_card=card))
    assert got == (0.563, "model card, 1,000 prompts sampled at T=1")
    # an old series run: its "tuned" accuracy (0.674) is the final model's; the card is
    # read from the checkpoint folder
    old = _manifest(traces_from="demo-rl", stats={"accuracy": {"tuned": 0.674, "base": 0.45}})
    old["models"]["tuned"]["path"] = str(STEP30)
    assert samplers.checkpoint_accuracy(old) == (0.852,
                                                 "model card, 500 prompts sampled at T=1")
    old["models"]["tuned"]["path"] = str(tmp_path)  # no card
    assert samplers.checkpoint_accuracy(old) == (None, "not measured")
    (tmp_path / "model_card.json").write_text('{"eval": {"sampled_t1": {"accuracy": "x"}}}')
    assert samplers.checkpoint_accuracy(old) == (None, "not measured")
    (tmp_path / "model_card.json").write_text("[" * 100_000)  # hostile JSON
    assert samplers.checkpoint_accuracy(old) == (None, "not measured")


@pytest.mark.unit
def test_the_default_series_sampling_keeps_existing_runs_hashes():
    cfg = PrecomputeConfig(base="b", tuned="t", prompts="p", traces_from="final")
    # settings added later are left out at their defaults (ADDED_DEFAULTS), so old runs
    # keep their hashes
    d = {k: v for k, v in dataclasses.asdict(cfg).items()
         if k not in ("name", "cache", "force", "device", "engine", "workers", "parts_uri",
                      "series_sampling", "field", "truncate_to_context", "math_dtype")}
    import hashlib
    want = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert config_hash(cfg) == want
    assert config_hash(dataclasses.replace(cfg, series_sampling="own")) != want


@pytest.mark.unit
def test_add_pair_plans_own_sampling_without_waiting_for_the_final_run():
    from core.jobs.add_pair import plan_runs

    series = [(30, "ckpt/30"), (60, "ckpt/60")]
    reuse = plan_runs("b", "t", "p.jsonl", series=series, name="n")
    assert [(p.role, p.config.traces_from, p.after) for p in reuse[1:]] == [
        ("step-30", "n", "tuned"), ("step-60", "n", "tuned")]
    own = plan_runs("b", "t", "p.jsonl", series=series, name="n",
                    settings=PrecomputeConfig(series_sampling="own"))
    assert [(p.role, p.config.traces_from, p.config.series_sampling, p.after)
            for p in own[1:]] == [("step-30", "n", "own", None), ("step-60", "n", "own", None)]


@pytest.fixture(scope="module")
def series_cache(tmp_path_factory):
    """final (both samplers), step-12 re-scoring its traces, step-24 sampling its own."""
    from core.precompute.driver import precompute

    cache = tmp_path_factory.mktemp("series")
    common = dict(base=str(DEMO / "base"), prompts=str(HELDOUT), cache=str(cache),
                  max_prompts=3, n=2, max_new_tokens=32)
    quiet = dict(log=lambda s: None, show_progress=False)
    precompute(PrecomputeConfig(tuned=str(DEMO / "rl"), name="final", kind="rl",
                                sample_from="both", series_step=60, **common), **quiet)
    precompute(PrecomputeConfig(tuned=str(STEP30), name="final-step-12", kind="series",
                                series_step=12, traces_from="final", **common), **quiet)
    precompute(PrecomputeConfig(tuned=str(DEMO / "rl-steps" / "step-24"),
                                name="final-step-24", kind="series", series_step=24,
                                traces_from="final", series_sampling="own", **common), **quiet)
    return cache


def _traces(run_dir) -> pd.DataFrame:
    return pq.read_table(run_dir / "traces.parquet").to_pandas().sort_values("trace_id")


@pytest.mark.model
def test_a_series_run_records_who_sampled_its_traces(series_cache):
    final, step = _traces(series_cache / "final"), _traces(series_cache / "final-step-12")
    assert (step.response.tolist(), step.trace_id.tolist()) == (final.response.tolist(),
                                                                final.trace_id.tolist())
    want = final.sampled_from.map({"tuned": "reused", "base": "base"}).tolist()
    assert step.sampled_from.tolist() == want
    m = json.loads((series_cache / "final-step-12" / "manifest.json").read_text())
    fm = json.loads((series_cache / "final" / "manifest.json").read_text())
    assert m["samplers"]["reused"] == {
        "run": "final", "role": "tuned", "model": str(DEMO / "rl"),
        "fingerprint": fm["models"]["tuned"]["fingerprint"]["digest"]}
    assert m["samplers"]["base"]["fingerprint"] == m["models"]["base"]["fingerprint"]["digest"]
    assert (m["traces_from"], m["series_of"]) == ("final", "final")
    assert set(m["stats"]["accuracy"]) == {"reused", "base"}
    assert m["tuned_card"]["accuracy"] == 0.852
    assert samplers.checkpoint_accuracy(m) == (0.852, "model card, 500 prompts sampled at T=1")
    assert "final's tuned model" in samplers.reused_note(m)


@pytest.mark.model
def test_own_sampling_gives_the_checkpoints_own_traces_and_accuracy(series_cache):
    from core.store.cache import list_runs, series_of

    own = _traces(series_cache / "final-step-24")
    assert set(own.sampled_from) == {"tuned"}
    assert own.response.tolist() != _traces(series_cache / "final").response.tolist()
    m = json.loads((series_cache / "final-step-24" / "manifest.json").read_text())
    assert (m["traces_from"], m["series_of"]) == (None, "final")
    assert samplers.checkpoint_accuracy(m) == (m["stats"]["accuracy"]["tuned"], "own samples")
    runs = list_runs(series_cache)
    final = next(r for r in runs if r.name == "final")
    assert series_of(runs, final) == ["final-step-12", "final-step-24", "final"]


@pytest.mark.model
@pytest.mark.parametrize("materialize", [False, True])
def test_evolution_shows_each_checkpoints_own_accuracy(series_cache, materialize):
    from core import queries as Q

    names = ["final-step-12", "final-step-24", "final"]
    con = Q.open_runs([series_cache / n for n in names], materialize=materialize)
    df = Q.evolution(con, names, high=0.01).set_index("run")  # a small run: a low bar
    final = json.loads((series_cache / "final" / "manifest.json").read_text())
    assert df.loc["final-step-12", "accuracy"] == 0.852
    assert df.loc["final-step-12", "accuracy_source"].startswith("model card")
    # one source for every checkpoint where one covers them all (cards here), else each its
    # own: never another model's
    mans = [json.loads((series_cache / n / "manifest.json").read_text()) for n in names]
    want = samplers.series_accuracy(mans)
    assert df.loc[names, "accuracy"].tolist() == [a for a, _ in want]
    assert df.loc[names, "accuracy_source"].tolist() == [src for _, src in want]
    if all(samplers.card_accuracy(m)[0] is not None for m in mans):
        assert df["accuracy_source"].nunique() == 1
    else:
        assert df.loc["final-step-24", "accuracy_source"] == "own samples"
        assert df.loc["final", "accuracy"] == final["stats"]["accuracy"]["tuned"]
    assert pd.isna(df.loc["final-step-24", "jaccard_final"])  # its positions are its own
    assert df.loc["final", "jaccard_final"] == 1.0
    assert 0 < df.loc["final-step-12", "jaccard_final"] < 1  # the final's positions
    from core.figures import evolution

    spec = evolution(con, names)  # the figure's caption and table carry them too
    assert "step 12 85.2%" in spec.caption
    assert "model card, 500 prompts sampled at T=1: step" in spec.caption
    assert len({src for _, src in want}) == 1 or "own samples: steps 24, 60" in spec.caption
    assert spec.data.set_index("run").loc["final-step-12", "accuracy"] == 0.852


@pytest.mark.model
def test_old_series_runs_open_with_their_labels_read_as_reused(series_cache, tmp_path):
    """A series run written before `samplers`: labels copied from the source ("tuned")."""
    from core import queries as Q

    old = tmp_path / "old-step-12"
    shutil.copytree(series_cache / "final-step-12", old)
    t = pq.read_table(old / "traces.parquet").to_pandas()
    t["sampled_from"] = t["sampled_from"].replace({"reused": "tuned"})
    pq.write_table(pq.read_table(old / "traces.parquet").from_pandas(
        t, schema=pq.read_schema(old / "traces.parquet")), old / "traces.parquet")
    m = json.loads((old / "manifest.json").read_text())
    for k in ("samplers", "series_of", "tuned_card"):
        m.pop(k)
    m["name"], m["stats"]["accuracy"] = "old-step-12", {"tuned": 0.7, "base": 0.4}
    (old / "manifest.json").write_text(json.dumps(m))
    for materialize in (False, True):
        con = Q.open_runs([old], materialize=materialize)
        got = con.execute("SELECT DISTINCT sampled_from FROM traces ORDER BY 1").fetchall()
        assert got == [("base",), ("reused",)], materialize
        cells = con.execute("SELECT DISTINCT sampled_from FROM tok ORDER BY 1").fetchall()
        assert cells == [("base",), ("reused",)]
        acc = con.execute("SELECT accuracy, accuracy_source FROM runs").fetchone()
        assert acc == (0.852, "model card, 500 prompts sampled at T=1")
        assert Q.headline(con).accuracy_tuned.isna().all()


@pytest.mark.model
def test_overview_shows_a_series_checkpoints_own_accuracy(app):
    """The app cache's series re-scores demo-rl's traces: step 48's headline shows its
    card's 89.6%, not the 88-odd % of the final model's samples, and says who sampled them."""
    at = app("views/overview.py", run="demo-rl-step-48")
    acc = next(m for m in at.metric if m.label == "accuracy (this checkpoint)")
    assert acc.value == "89.6%"
    text = " ".join(c.value for c in at.caption).replace("\\", "")  # md_escape's
    assert "model card, 500 prompts sampled at T=1" in text
    assert "sampled by demo-rl's tuned model" in text
    at.switch_page("views/add_pair.py")
    at.run()
    assert at.radio(key="ap_series_sampling").value == "reuse"
