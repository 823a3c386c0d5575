"""The critical-token scan (issue 28): its effect equals rollouts counted by hand with the
same seeds, position choice, intervals and rank correlations against independent code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.engine.sampling import sample
from core.errors import RunsError
from core.experiments import critical as C
from core.experiments.run_trace import chat_template, load_trace
from core.inputs import verifiers
from tests.layerrun import RUN, files

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def run(layer_run):
    return layer_run


@pytest.fixture(scope="module")
def pair(layer_pair):
    return layer_pair


@pytest.fixture(scope="module")
def scanned(run, pair):
    return C.scan(run, [0, 1], top=2, rollouts=3, seed=5, pair=pair)


def _hand_count(pair, tr, pos, first, k, cfg, seed) -> int:
    """Correct rollouts from prefix + `first`, sampled and verified here directly."""
    tok = pair.tokenizer
    model = pair.tuned.model if tr.sampled_from == "tuned" else pair.base.model
    head = tr.response_ids[:pos] + [first]
    if first == tok.eos_token_id:
        conts = [[]] * k
    else:
        got = sample(model, tok, [tr.prompt_ids + head], n=k, temperature=cfg["temperature"],
                     top_p=cfg["top_p"], max_new_tokens=cfg["max_new_tokens"], seed=seed)
        conts = [s.response_ids for s in got]
    check = verifiers.get(tr.verifier)
    return sum(bool(check(tok.decode(head + c, skip_special_tokens=True), tr.reference)[1])
               for c in conts)


def test_effect_equals_hand_counted_rollouts(run, pair, scanned):
    from core.store.run import Run

    cfg = Run.open(run).config
    pos = C.positions(scanned)
    differ = pos[~pos.same_choice]
    assert len(differ) >= 1  # the check below is about something
    for r in differ.itertuples():
        tr = load_trace(run, r.trace_id).encode(pair.tokenizer, chat_template(run))
        h = scanned[(scanned.trace_id == r.trace_id) & (scanned.pos == r.pos)].iloc[0]
        seed = 5 + 7919 * r.trace_id + r.pos
        kt = _hand_count(pair, tr, r.pos, int(h.tuned_token_id), 3, cfg, seed)
        kb = _hand_count(pair, tr, r.pos, int(h.base_token_id), 3, cfg, seed)
        assert r.acc_tuned == kt / 3 and r.acc_base == kb / 3
        assert r.effect == pytest.approx((kt - kb) / 3)
        assert r.effect_lo <= r.effect <= r.effect_hi
    same = pos[pos.same_choice]
    assert (same.effect == 0).all()
    assert C.read_scan(run).shape == scanned.shape


def test_resume_takes_stored_traces_with_the_same_settings(run, scanned, monkeypatch):
    from core.store.run import Run

    def no_models(*a, **k):
        raise AssertionError("a resumed scan with nothing left to do loaded the pair")

    monkeypatch.setattr(Run, "load_pair", no_models)
    again = C.scan(run, [0, 1], top=2, rollouts=3, seed=5, resume=True)
    pd.testing.assert_frame_equal(again, scanned, check_dtype=False)
    assert (again.rollouts == 3).all() and (again.base_seed == 5).all()
    with pytest.raises(AssertionError, match="loaded the pair"):  # other settings: rescanned
        C.scan(run, [0, 1], top=2, rollouts=4, seed=5, resume=True)


def test_positions_are_top_js_random_and_entropy(run, scanned):
    for tid in (0, 1):
        tr = load_trace(run, tid)
        got = scanned[scanned.trace_id == tid].drop_duplicates("pos")
        top = [p for p, g in zip(got.pos, got.groups) if "top" in g.split(",")]
        want = sorted(np.argsort(-tr.js, kind="stable")[:2].tolist())
        assert sorted(top) == want
        ent = tr.entropy_tuned if tr.sampled_from == "tuned" else tr.entropy_base
        hi_ent = [p for p, g in zip(got.pos, got.groups) if "entropy" in g.split(",")]
        assert sorted(hi_ent) == sorted(np.argsort(-ent, kind="stable")[:2].tolist())
        rnd = [p for p, g in zip(got.pos, got.groups) if "random" in g.split(",")]
        assert len(rnd) == 2 and not set(rnd) & set(top)
    assert set(scanned.continued_by) == {"tuned"}


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, table II, example (a): 56/70 - 48/80
    d, lo, hi = C.effect_interval(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x, y = rng.random(30), np.round(rng.random(30), 1)  # ties in y
    assert C.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    pos = pd.DataFrame({"js": x, "entropy": -x, "effect": y})
    corr = C.criticality(pos, n_boot=200).set_index("predictor")
    assert corr.spearman["js"] == pytest.approx(-corr.spearman["entropy"])
    assert corr.lo["js"] <= corr.spearman["js"] <= corr.hi["js"]


@pytest.mark.parametrize("kw", [dict(top=0), dict(rollouts=0), dict(rollouts=10_000),
                                dict(traces=[999])])
def test_bad_arguments_refused_before_loading(run, kw):
    before = files(run)
    with pytest.raises(RunsError) as e:
        C.scan(run, **{"traces": [0], **kw})
    assert "\n" not in str(e.value)
    assert files(run) == before


def test_cli_critical_json(run, capsys):
    from core.cli.main import main

    assert main(["critical", RUN, "--cache", str(run.parent), "--traces", "2", "--top", "1",
                 "--rollouts", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["predictor"] for r in out["criticality"]} == {"js", "entropy"}
    assert all(r["trace_id"] == 2 for r in out["positions"])
    assert "tuned" in out["continued_by"]


def test_scan_as_a_queue_job(run, capsys):
    from core.cli.main import main
    from core.jobs import queue

    cache = run.parent
    assert main(["critical", RUN, "--cache", str(cache), "--traces", "3", "--top", "1",
                 "--rollouts", "2", "--queue", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimate"].startswith("at most 3 positions of 1 traces, 12 rollouts")
    with pytest.raises(Exception, match="already queued"):  # one job per run at a time
        queue.submit_critical(cache, C.CriticalConfig(RUN, traces=[3]))
    (job,) = queue.wait(cache, [out["job"]], timeout=300)
    assert job.state == "done", queue.read_log(cache, job.id)
    assert job.progress()["done"] == 1 and job.progress()["unit"] == "traces"
    assert set(C.read_scan(run, 3).rollouts) == {2}
    with pytest.raises(Exception, match="no trace 999"):  # refused before it is queued
        queue.submit_critical(cache, C.CriticalConfig(RUN, traces=[999]))


def test_trace_browser_lists_the_scanned_positions(run, scanned, monkeypatch):
    from tests.conftest import open_app

    marks = C.marks(run, 1)
    assert len(marks) == scanned[scanned.trace_id == 1].pos.nunique()
    at = open_app(monkeypatch, run.parent, None, trace=1)
    (exp,) = [e for e in at.expander if e.label.startswith("Critical tokens")]
    assert exp.label.startswith(f"Critical tokens: {int(marks.critical.sum())} of "
                                f"{len(marks)} scanned positions")
    assert len(at.dataframe[-1].value) == len(marks)
    none = open_app(monkeypatch, run.parent, None, trace=4)  # never scanned: no panel
    assert not [e for e in none.expander if e.label.startswith("Critical tokens")]
