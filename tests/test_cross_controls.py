"""Cross-sampling controls that control (issue 15): decisions vs changed tokens, the
change-matched random and entropy controls, paired intervals, captions at a budget chosen
before the sweep, and sweeps stored side by side keyed by their settings.

Unit tests reuse the bigram mock pair of tests/test_cross_sampling.py; model tests run tiny
sweeps (2-3 prompts, a short cap) on the shipped demo pair.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from core.experiments.cross_sampling import (
    CONTROL_KINDS,
    Job,
    bootstrap_ci,
    cross_decode,
    entropy_positions,
    get_sweep,
    list_sweeps,
    paired,
    read_summary,
    summarize,
    sweep,
)
from core.figures.cross import cross_sampling
from tests.conftest import DEMO, HELDOUT
from tests.test_cross_sampling import EOS, PAD, PROMPTS, ROWS, mock_models, mock_pair


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def inverse_cdf(logits: torch.Tensor, u: float) -> int:
    """Independent reference of one draw: numpy softmax and the first cdf index above u."""
    p = np.exp(logits.double().numpy() - logits.double().numpy().max())
    cdf = np.cumsum(p / p.sum())
    return int(np.searchsorted(cdf, u * cdf[-1], side="right"))


# --- decisions and changed tokens (unit) -----------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_changed_tokens_are_the_switches_whose_two_draws_differ(temperature):
    """A switch changes the token only where the intervention's draw (same prefix, same
    uniform) differs from the primary's; eps < 0 switches at every step."""
    base, tuned = mock_models(shift_rows=(3, 5, 8))
    jobs = [Job(p, prim, eps=-1.0, seed=s) for s, p in enumerate(PROMPTS)
            for prim in ("base", "tuned")]
    got = cross_decode(base, tuned, jobs, eos_id=EOS, pad_id=PAD, max_new_tokens=40,
                       temperature=temperature, top_p=1.0)
    n_changed = 0
    for d in got:
        assert d.switched == list(range(len(d.tokens)))
        gen = torch.Generator().manual_seed(d.job.seed)
        seq, want = list(d.job.prompt_ids), []
        for step, tok in enumerate(d.tokens):
            last = seq[-1]
            if temperature == 0:
                draws = [int(base.W[last].argmax()), int(tuned.W[last].argmax())]
            else:
                u = float(torch.rand(1, generator=gen))
                draws = [inverse_cdf(base.W[last], u), inverse_cdf(tuned.W[last], u)]
            want += [step] if draws[0] != draws[1] else []
            seq.append(tok)
        assert d.changed == want
        assert len(d.entropy) == len(d.tokens)
        n_changed += len(want)
    assert 0 < n_changed < sum(len(d.tokens) for d in got)  # some switches change nothing


@pytest.mark.unit
def test_change_matched_controls_change_exactly_as_many_tokens_as_their_reference():
    pair = mock_pair(shift_rows=(3, 5, 8))
    res = sweep(pair, ROWS, ["forward", "reverse"], [0.01, 0.3], samples=2, temperature=1.0,
                top_p=1.0, max_new_tokens=16, batch_size=7, n_boot=50)
    df = res.frame()
    assert set(df.control_kind) == {"", "random", "entropy", "untreated"}
    key = ["prompt_id", "sample_index", "direction", "eps"]
    ref = df[~df.control & df.direction.isin(["forward", "reverse"])]
    for kind in ("random", "entropy"):
        ctl = df[df.control_kind == kind].merge(ref, on=key, suffixes=("", "_ref"))
        assert len(ctl) == len(ref)
        assert (ctl.n_requested == ctl.n_changed_ref).all()
        assert (ctl.n_changed == ctl.n_changed_ref).all()
        assert all(a == b for a, b in zip(ctl.switched, ctl.changed))  # every switch changes
    assert ref.n_changed.sum() > 0 and (ref.n_switched > ref.n_changed).any()
    s = res.summary
    ctl_rows = s[s.control]
    assert ((ctl_rows.diff_lo <= ctl_rows["diff"]) & (ctl_rows["diff"] <= ctl_rows.diff_hi)).all()
    assert s[~s.control]["diff"].isna().all()


@pytest.mark.unit
def test_untreated_control_must_differ_from_its_treatment():
    """The untreated control never switches where its cross-sample did, so on a pair whose
    draws differ at a few steps, every control row whose cross-sample changed a token
    decodes another sequence: before its first change it is the primary alone, and either
    the cross-sample changed a token there first (the control cannot: that step is
    excluded) or the control's first change lands at a step the cross-sample kept."""
    pair = mock_pair(shift_rows=(3, 5, 8))
    res = sweep(pair, ROWS, ["forward", "reverse"], [0.01, 0.3], ["random", "untreated"],
                samples=2, temperature=1.0, top_p=1.0, max_new_tokens=16, batch_size=7,
                n_boot=50)
    df = res.frame()
    key = ["prompt_id", "sample_index", "direction", "eps"]
    ref = df[~df.control & df.direction.isin(["forward", "reverse"])]
    ctl = df[df.control_kind == "untreated"].merge(ref, on=key, suffixes=("", "_ref"))
    assert len(ctl) == len(ref) and (ctl.n_changed_ref > 0).sum() >= 5
    for _, r in ctl.iterrows():
        assert not set(r.switched) & set(r.switched_ref)   # never at a treated step
        if r.n_changed_ref > 0:
            assert list(r.tokens) != list(r.tokens_ref)
    s = res.summary.set_index(["direction", "eps", "control_kind"])
    for d in ("forward", "reverse"):
        for e in (0.01, 0.3):
            row = s.loc[(d, e, "untreated")]
            assert row.same_as_ref == 0 and row.changed_overlap == 0
            assert 0 <= s.loc[(d, e, "random")].same_as_ref <= 1


@pytest.mark.unit
def test_same_as_ref_counts_identical_sequences_by_hand():
    rows = []
    # 3 prompts; the reference changed a token on p0 and p1; the control copies p0's
    # sequence (changed the same step) and differs on p1; p2 (nothing changed) is left out
    for i, (ref_t, ref_c, ctl_t, ctl_c) in enumerate([([1, 2, 3], [1], [1, 2, 3], [1]),
                                                      ([4, 5], [0], [4, 6], [1]),
                                                      ([7], [], [8], [0])]):
        for kind, t, c in (("", ref_t, ref_c), ("random", ctl_t, ctl_c)):
            rows.append({"prompt_id": f"p{i}", "sample_index": 0, "direction": "forward",
                         "eps": 0.1, "control": bool(kind), "control_kind": kind,
                         "tokens": t, "changed": c, "n_changed": len(c), "n_switched": len(c),
                         "n_requested": len(ref_c) if kind else None, "n_tokens": len(t),
                         "budget": 0.1, "correct": True})
    s = summarize(rows, n_boot=10, seed=0)
    ctl = s[s.control_kind == "random"].iloc[0]
    assert ctl.same_as_ref == pytest.approx(0.5)          # p0 identical, p1 not
    assert ctl.changed_overlap == pytest.approx(0.5)      # Jaccard 1 on p0, 0 on p1


@pytest.mark.unit
def test_decision_matched_control_is_kept_as_an_option():
    pair = mock_pair(shift_rows=(3, 5, 8))
    res = sweep(pair, ROWS, ["forward"], [0.01], "random", samples=2, match="decisions",
                temperature=1.0, max_new_tokens=16, n_boot=20)
    df = res.frame()
    ref, ctl = df[~df.control & (df.direction == "forward")], df[df.control]
    assert list(ctl.n_switched) == list(ref.n_switched) == list(ctl.n_requested)
    assert (ctl.n_changed <= ctl.n_switched).all()


@pytest.mark.unit
def test_entropy_control_draws_positions_in_proportion_to_entropy():
    ent = [0.0, 0.1, 0.0, 3.0, 0.9, 0.0]
    counts = np.zeros(len(ent))
    for seed in range(4000):
        (p,) = entropy_positions(1, ent, seed)
        counts[p] += 1
    share = counts / counts.sum()
    assert share == pytest.approx(np.array(ent) / sum(ent), abs=0.03)
    assert entropy_positions(5, ent, 1) >= {1, 3, 4}  # zero-entropy steps only after them
    assert entropy_positions(9, ent, 1) == frozenset(range(6))


@pytest.mark.unit
def test_paired_interval_is_the_bootstrap_of_per_prompt_differences():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(30):
        for k in range(2):
            for kind, p in (("", 0.7), ("random", 0.4)):
                rows.append({"prompt_id": f"p{i}", "sample_index": k, "direction": "forward",
                             "eps": 0.05, "control": bool(kind), "control_kind": kind,
                             "n_switched": 3, "n_changed": 1, "n_requested": 1 if kind else None,
                             "n_tokens": 30, "budget": 0.1, "correct": bool(rng.random() < p)})
    s = summarize(rows, n_boot=400, seed=5)
    df = pd.DataFrame(rows)
    acc = df.groupby(["control_kind", "prompt_id"]).correct.mean()
    want = bootstrap_ci((acc[""] - acc["random"]).to_numpy(), 400, 5)
    got = s[s.control].iloc[0]
    assert (got["diff"], got.diff_lo, got.diff_hi) == pytest.approx(want)
    assert got.budget_changed == pytest.approx(1 / 30) and got.budget == pytest.approx(0.1)


# --- captions (unit) --------------------------------------------------------------------------

def _summary(rows):
    cols = ["direction", "eps", "control_kind", "budget", "budget_changed", "accuracy", "diff"]
    s = pd.DataFrame(rows, columns=cols)
    s["control"] = s.control_kind != ""
    s["ci_lo"], s["ci_hi"] = s.accuracy - 0.05, s.accuracy + 0.05
    s["diff_lo"], s["diff_hi"] = s["diff"] - 0.1, s["diff"] + 0.1
    s["n"], s["n_prompts"] = 80, 40
    return s


@pytest.mark.unit
def test_caption_reports_the_budget_chosen_before_the_sweep_and_explains_over_100():
    inf = math.inf
    s = _summary([
        ("base", inf, "", 0, 0, 0.40, None), ("tuned", inf, "", 0, 0, 0.60, None),
        ("forward", 0.02, "", 0.07, 0.02, 0.626, None),  # the target: 113% of the gap
        ("forward", 0.02, "random", 0.02, 0.02, 0.50, 0.126),
        ("forward", 0.01, "", 0.09, 0.03, 0.70, None),  # a larger effect, not the target
        ("reverse", 0.02, "", 0.07, 0.02, 0.45, None),
    ])
    spec = cross_sampling(s, "r", {"target_budget": 0.05, "target_eps": 0.02, "n_prompts": 40,
                                   "samples": 2})
    c = spec.caption
    assert "chosen before the sweep (5% of the run's stored tokens: eps 0.02)" in c
    assert "forward 62.6% with 7.0% of tokens switched and 2.0% changed" in c
    assert "recovers 113% of the gap: the mixed decode beat the tuned model" in c
    assert "minus random control +12.6 points [+2.6, +22.6] (paired)" in c
    assert "reverse 45.0%" in c and "removes 75% of the gap" in c and "70.0%" not in c
    assert "40 prompts x 2 samples" in c
    assert spec.summary["forward"]["gap_share"] == pytest.approx(1.13)
    none = cross_sampling(s, "r", {"n_prompts": 40, "samples": 2}).caption
    assert "no target budget was set before this sweep" in none and "gap" not in none


@pytest.mark.unit
def test_every_control_kind_is_drawn():
    inf = math.inf
    s = _summary([("base", inf, "", 0, 0, 0.40, None), ("tuned", inf, "", 0, 0, 0.60, None),
                  ("forward", 0.02, "", 0.07, 0.02, 0.55, None)]
                 + [("forward", 0.02, k, 0.02, 0.02, 0.50, 0.05) for k in CONTROL_KINDS])
    names = [t.name for t in cross_sampling(s, "r").figure.data]
    assert len(names) == 1 + len(CONTROL_KINDS) and len(set(names)) == len(names)
    assert "forward control: by entropy at untreated steps" in names


# --- stored sweeps (unit) ---------------------------------------------------------------------

@pytest.mark.unit
def test_an_old_single_sweep_is_read_as_the_legacy_sweep(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    old = pa.table({"direction": ["base", "forward", "forward"], "eps": [math.inf, 0.1, 0.1],
                    "control": [False, False, True], "n": [2, 2, 2], "n_prompts": [1, 1, 1],
                    "budget": [0.0, 0.1, 0.1], "token_share": [0.0, 0.1, 0.1],
                    "mean_tokens": [9.0, 9.0, 9.0], "accuracy": [0.5, 1.0, 0.5],
                    "ci_lo": [0.5, 1.0, 0.5], "ci_hi": [0.5, 1.0, 0.5]})
    meta = {b"shiftlens.manifest": json.dumps({"created": "2025-01-01T00:00:00+00:00",
            "cross_sample_config": {"sweep": {"control": True, "top_p": 1.0}}}).encode()}
    pq.write_table(old.replace_schema_metadata(meta), tmp_path / "cross_summary.parquet")
    (info,) = list_sweeps(tmp_path)
    assert info.key == "legacy" and info.legacy
    assert info.settings["controls"] == ["random"] and info.settings["match"] == "decisions"
    s = read_summary(tmp_path, "legacy")
    assert list(s.control_kind) == ["", "", "random"] and s.budget_changed.isna().all()
    assert "budget: switch decisions" in cross_sampling(s).figure.layout.xaxis.title.text


# --- on the demo pair (model) -----------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from core.config import PrecomputeConfig
    from core.precompute.driver import precompute

    cache = tmp_path_factory.mktemp("controls_cache")
    return precompute(PrecomputeConfig(base=str(DEMO / "base"), tuned=str(DEMO / "rl"),
                                       prompts=str(HELDOUT), cache=str(cache), name="demo",
                                       max_prompts=3, n=1, max_new_tokens=48),
                      log=lambda s: None, show_progress=False)


COMMON = ["--prompts", "2", "--eps", "0.05", "--direction", "forward", "--control", "random",
          "--bootstrap", "20"]


@pytest.fixture(scope="module")
def two_sweeps(demo_run):
    """Two sweeps of the demo run that differ only in top-p, run by the CLI."""
    from core.cli.main import main

    for top_p in ("1", "0.7"):
        assert main(["cross-sample", "demo", "--cache", str(demo_run.parent), "--top-p", top_p,
                     *COMMON]) == 0
    return list_sweeps(demo_run)


@pytest.mark.model
def test_two_sweeps_with_different_top_p_are_stored_side_by_side_and_listed(demo_run, two_sweeps,
                                                                           capsys):
    from core.cli.main import main

    capsys.readouterr()
    sweeps = two_sweeps
    assert sorted(s.settings["top_p"] for s in sweeps) == [0.7, 1.0]
    assert len({s.key for s in sweeps}) == 2 and all(s.summary.is_file() for s in sweeps)
    for s in sweeps:  # each sweep's own files, with its own settings in their metadata
        meta = json.loads(__import__("pyarrow.parquet").parquet.read_schema(s.summary)
                          .metadata[b"shiftlens.manifest"])
        assert meta["cross_sample_config"]["sweep"]["top_p"] == s.settings["top_p"]
        assert read_summary(demo_run, s.key).n.min() == 2
    assert main(["cross-sweeps", "demo", "--cache", str(demo_run.parent)]) == 0
    out = capsys.readouterr().out
    assert all(s.key in out for s in sweeps) and "top-p 0.7" in out and "top-p 1" in out
    assert main(["cross-sweeps", "demo", "--cache", str(demo_run.parent), "--show",
                 sweeps[1].key]) == 0
    assert "changed %" in capsys.readouterr().out
    # The same settings again replace that sweep only.
    assert main(["cross-sample", "demo", "--cache", str(demo_run.parent), "--top-p", "1",
                 *COMMON]) == 0
    assert {s.key for s in list_sweeps(demo_run)} == {s.key for s in sweeps}


@pytest.mark.model
def test_the_page_lists_the_stored_sweeps_and_overlays_two(demo_run, two_sweeps, monkeypatch):
    from tests.conftest import open_app

    at = open_app(monkeypatch, demo_run.parent, "views/cross.py", run="demo")
    keys = {s.key for s in two_sweeps}
    shown = at.selectbox(key="cs_sweep").options  # each sweep's label: its key, its settings
    assert all(any(o.startswith(f"{k}: top-p") for o in shown) for k in keys)
    other = next(k for k in keys if k != at.selectbox(key="cs_sweep").value)
    at.selectbox(key="cs_overlay").set_value(other).run()
    assert not at.exception, [e.value for e in at.exception]
    caps = " ".join(c.value for c in at.caption).replace("\\", "")  # md_escape'd
    assert "Two sweeps of this run: A = " in caps and f"B = {other}: top-p" in caps


@pytest.mark.model
def test_on_the_demo_each_control_changes_as_many_tokens_as_its_cross_sample(demo_run):
    from core.experiments.cross_sampling import CrossSampleConfig, run_cross_sample

    cfg = CrossSampleConfig(run="demo", cache=str(demo_run.parent), prompts=3, samples=2,
                            eps="0,0.02", top_p=1.0, bootstrap=200, seed=3,
                            control="random,entropy")
    res, written = run_cross_sample(cfg, log=lambda s: None, show_progress=False)
    info = get_sweep(demo_run)
    assert written == info.summary and info.settings["target_budget"] == 0.05
    target = info.settings["target_eps"]
    assert target in info.settings["eps_grid"] and len(info.settings["eps_grid"]) == 3
    samples = pd.read_parquet(info.samples)
    key = ["prompt_id", "sample_index", "direction", "eps"]
    ref = samples[~samples.control & samples.direction.isin(["forward", "reverse"])]
    assert ref.n_changed.sum() > 0 and (ref.n_switched > ref.n_changed).any()
    for kind in ("random", "entropy"):
        ctl = samples[samples.control_kind == kind].merge(ref, on=key, suffixes=("", "_ref"))
        assert len(ctl) == len(ref) == 3 * 2 * 2 * 3
        assert (ctl.n_changed == ctl.n_changed_ref).all(), ctl[["n_changed", "n_changed_ref"]]
    # Both budgets and the paired intervals are in the stored summary.
    s = read_summary(demo_run, info.key)
    ctl = s[s.control]
    assert len(ctl) == 2 * 2 * 3 and (ctl.n_short == 0).all()
    assert ctl[["diff", "diff_lo", "diff_hi"]].notna().all().all()
    assert ((ctl.diff_lo <= ctl["diff"]) & (ctl["diff"] <= ctl.diff_hi)).all()
    fwd = s[(s.direction == "forward") & ~s.control & (s.eps == 0)].iloc[0]
    assert fwd.budget == 1.0 and 0 < fwd.budget_changed < fwd.budget
    for _, c in ctl.iterrows():  # the stored difference is the paired one over prompts
        mine = samples[(samples.direction == c.direction) & (samples.eps == c.eps)]
        acc = mine.groupby(["control_kind", "prompt_id"]).correct.mean()
        want = bootstrap_ci((acc[""] - acc[c.control_kind]).to_numpy(), 200, 3)
        if want[1] == want[2]:  # a point bootstrap interval: Tango's over the sample pairs
            assert c.diff_lo < c["diff"] < c.diff_hi
            want = (want[0], *paired.tango_paired(int(c.n_ref_only), int(c.n_other_only),
                                                  int((mine.control_kind ==
                                                       c.control_kind).sum()))[1:])
        assert (c["diff"], c.diff_lo, c.diff_hi) == pytest.approx(want)
        assert c.test == "paired sign-flip" and 0 < c.p_value <= 1
