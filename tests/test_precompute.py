"""Precompute of the demo pair into a temp dir, checked against a direct recomputation,
then every query over it and the CLI. Fixture data comes from the production code path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from core import queries
from core.config import PrecomputeConfig
from core.engine.sampling import encode_prompts
from core.precompute.driver import RunError, precompute
from core.store.schema import SCHEMA_VERSION, SCHEMAS
from tests.conftest import DEMO, HELDOUT

pytestmark = pytest.mark.model


def cfg(cache, **kw):
    d = dict(base=str(DEMO / "base"), tuned=str(DEMO / "rl"), prompts=str(HELDOUT),
             cache=str(cache), name="rl", max_prompts=6, n=2, sample_from="both",
             max_new_tokens=64, shard_size=4, kind="rl")
    d.update(kw)
    return PrecomputeConfig(**d)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    precompute(cfg(cache), log=lambda s: None, show_progress=False)
    precompute(cfg(cache, tuned=str(DEMO / "sft"), name="sft", sample_from="tuned", kind="sft"),
               log=lambda s: None, show_progress=False)
    for step in sorted(p.name for p in (DEMO / "rl-steps").iterdir()):
        precompute(cfg(cache, tuned=str(DEMO / "rl-steps" / step), name=f"rl-{step}",
                       traces_from="rl", kind="series", series_step=int(step.split("-")[1])),
                   log=lambda s: None, show_progress=False)
    return cache


def test_run_folder_is_complete_and_self_describing(demo_cache):
    run = demo_cache / "rl"
    for f, schema in SCHEMAS.items():
        t = pq.read_table(run / f)
        assert t.schema.remove_metadata() == schema
        meta = t.schema.metadata
        assert meta[b"shiftlens.schema_version"].decode() == SCHEMA_VERSION
        assert json.loads(meta[b"shiftlens.manifest"])["name"] == "rl"
    m = json.loads((run / "manifest.json").read_text())
    digests = {k: m["models"][k]["fingerprint"]["digest"] for k in ("base", "tuned")}
    assert digests["base"] != digests["tuned"]
    assert m["prompt_set"]["fingerprint"] and m["packages"]["torch"]
    assert m["config"]["sample_from"] == "both" and m["schema_version"] == SCHEMA_VERSION
    traces = pd.read_parquet(run / "traces.parquet")
    tokens = pd.read_parquet(run / "tokens.parquet")
    assert len(traces) == 6 * 2 * 2 and set(traces.sampled_from) == {"tuned", "base"}
    assert traces.length.sum() == len(tokens)
    assert not tokens.duplicated(["trace_id", "pos"]).any()
    assert not list(demo_cache.glob(".staging/*/"))  # nothing left behind


def test_metrics_equal_direct_recomputation(demo_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = demo_cache / "rl"
    tokens = pd.read_parquet(run / "tokens.parquet")
    topk = pd.read_parquet(run / "topk.parquet")
    traces = pd.read_parquet(run / "traces.parquet").set_index("trace_id")
    tok = AutoTokenizer.from_pretrained(DEMO / "rl")
    mb = AutoModelForCausalLM.from_pretrained(DEMO / "base").eval()
    mt = AutoModelForCausalLM.from_pretrained(DEMO / "rl").eval()
    rng = np.random.default_rng(0)
    for row in tokens.iloc[rng.choice(len(tokens), 40, replace=False)].itertuples():
        tr = traces.loc[row.trace_id]
        resp = tokens[tokens.trace_id == row.trace_id].sort_values("pos").token_id.tolist()
        prompt = encode_prompts(tok, [tr.prompt])[0]
        ids = torch.tensor([prompt + resp[: row.pos]])
        with torch.no_grad():
            p = torch.softmax(mb(ids).logits[0, -1].double(), -1).numpy()
            q = torch.softmax(mt(ids).logits[0, -1].double(), -1).numpy()
        t = row.token_id
        assert t == resp[row.pos]
        assert row.js == pytest.approx(jensenshannon(p, q) ** 2, abs=2e-5)
        assert row.kl_tb == pytest.approx(entropy(q, p), abs=2e-4)
        assert row.kl_bt == pytest.approx(entropy(p, q), abs=2e-4)
        assert row.entropy_base == pytest.approx(entropy(p), abs=2e-5)
        assert row.entropy_tuned == pytest.approx(entropy(q), abs=2e-5)
        assert row.logp_base == pytest.approx(np.log(p[t]), abs=1e-4)
        assert row.dlogp == pytest.approx(np.log(q[t]) - np.log(p[t]), abs=2e-4)
        assert row.rank_base == 1 + (p > p[t]).sum()
        assert row.rank_tuned == 1 + (q > q[t]).sum()
        assert row.top1_agree == (p.argmax() == q.argmax())
        assert row.rel_pos == pytest.approx(row.pos / tr.length)
        k = topk[(topk.trace_id == row.trace_id) & (topk.pos == row.pos)].iloc[0]
        assert list(k.base_ids[:3]) == list(np.argsort(-p)[:3])
        np.testing.assert_allclose(k.tuned_probs, np.sort(q)[::-1][: len(k.tuned_probs)],
                                   atol=1e-5)
        assert k.tuned_top1_rank_base == 1 + (p > p[q.argmax()]).sum()


def test_every_query_runs_on_the_demo_runs(demo_cache):
    con = queries.open_runs(sorted(p for p in demo_cache.iterdir() if not p.name.startswith(".")))
    series = [f"rl-{p.name}" for p in sorted((DEMO / "rl-steps").iterdir(),
                                             key=lambda p: int(p.name.split("-")[1]))] + ["rl"]
    frames = {
        "sparsity": queries.sparsity_summary(con, by="run"),
        "histogram": queries.histogram(con, runs=["rl"]),
        "entropy": queries.entropy_by_js_bin(con, runs=["rl"]),
        "hist2d": queries.js_entropy_hist2d(con, runs=["rl"]),
        "position": queries.position_profile(con, runs=["rl"], by="sampled_from"),
        # pooled: this small run's tuned-sampled traces may have no high-js token
        "identity": queries.token_identity(con, runs=["rl"], min_count=1,
                                           sampled_from="pooled"),
        "overlap": queries.topk_overlap(con, runs=["rl"]),
        "realloc": queries.reallocation(con, runs=["rl"]),
        "urial": queries.urial_categories(con, runs=["rl"]),
        "evolution": queries.evolution(con, series),
        "contrast": queries.contrast(con, "rl", "sft"),
        "headline": queries.headline(con, sampled_from="pooled"),
        "traces": queries.trace_list(con, "rl"),
        "search": queries.token_search(con, js_min=0.0, runs=["rl"]),
    }
    for name, df in frames.items():
        assert len(df) > 0, name
    evo = frames["evolution"]
    assert evo.jaccard_final.iloc[-1] == pytest.approx(1.0) or evo.n_high.iloc[-1] == 0
    hl = frames["headline"].set_index("run")
    assert hl.loc["rl", "n_tokens"] == len(pd.read_parquet(demo_cache / "rl" / "tokens.parquet"))


def test_rerun_is_a_no_op_and_other_settings_are_refused(demo_cache):
    logs = []
    precompute(cfg(demo_cache), log=logs.append, show_progress=False)
    assert "already complete" in logs[0]
    with pytest.raises(RunError, match="exists with other settings"):
        precompute(cfg(demo_cache, n=3), log=lambda s: None, show_progress=False)


def test_series_runs_rescore_the_same_traces(demo_cache):
    a = pd.read_parquet(demo_cache / "rl" / "tokens.parquet")
    step = sorted(p.name for p in (DEMO / "rl-steps").iterdir())[0]
    b = pd.read_parquet(demo_cache / f"rl-{step}" / "tokens.parquet")
    keys = ["trace_id", "pos", "token_id"]
    a, b = (x.sort_values(["trace_id", "pos"]).reset_index(drop=True) for x in (a, b))
    assert (a[keys].values == b[keys].values).all()
    assert not np.allclose(a.js, b.js)


def test_cli_summary_and_runs(demo_cache, capsys):
    from core.cli.main import main

    assert main(["summary", "rl", "sft", "--cache", str(demo_cache)]) == 0
    out = capsys.readouterr().out
    assert "share_near_zero" in out and "rl" in out and "sft" in out
    assert main(["runs", "--cache", str(demo_cache)]) == 0
    assert "rl-step" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="nope: no complete run"):
        main(["summary", "nope", "--cache", str(demo_cache)])


@pytest.mark.parametrize("command", ["precompute", "summary", "runs"])
def test_help_explains_every_option(command, capsys):
    import dataclasses

    from core.cli.main import build_parser, main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:  # every option is listed with a non-empty explanation
        if action.option_strings and action.dest != "help":
            assert action.option_strings[-1] in out and action.help, action.dest
    if command == "precompute":
        for f in dataclasses.fields(PrecomputeConfig):
            assert "--" + f.name.replace("_", "-") in out
            assert f.metadata["help"].split()[0] in out


def test_series_and_contrast_are_found_like_the_app_does(demo_cache):
    from core.store.cache import contrast_candidates, list_runs, series_of

    runs = list_runs(demo_cache)
    rl = next(r for r in runs if r.name == "rl")
    steps = sorted((int(p.name.split("-")[1]) for p in (DEMO / "rl-steps").iterdir()))
    assert series_of(runs, rl) == [f"rl-step-{n}" for n in steps] + ["rl"]
    assert contrast_candidates(runs, rl) == ["sft"]
    sft = next(r for r in runs if r.name == "sft")
    assert series_of(runs, sft) == []


def test_cli_export_writes_the_bundle(demo_cache, tmp_path):
    import shutil
    import zipfile

    from core.cli.main import main

    if not shutil.which("chromium"):
        pytest.skip("figure export needs Chromium")
    assert main(["export", "rl", "--out", str(tmp_path), "--cache", str(demo_cache),
                 "--formats", "png,svg"]) == 0
    names = zipfile.ZipFile(tmp_path / "rl-figures.zip").namelist()
    assert ("rl_evolution.png" in names and "rl_vs_sft_contrast.svg" in names
            and "rl_js_hist.json" in names)


def test_export_of_a_copied_run_folder(demo_cache, tmp_path):
    """cp -r rl rl-copy: both manifests say "rl"; export names runs by folder, as the app."""
    import json
    import shutil
    import zipfile

    from core.cli.main import main

    cache = tmp_path / "cache"
    shutil.copytree(demo_cache / "rl", cache / "rl")
    shutil.copytree(demo_cache / "rl", cache / "rl-copy")
    assert main(["export", "rl-copy", "--cache", str(cache), "--contrast-with", "rl",
                 "--out", str(tmp_path / "out"), "--formats", "html"]) == 0
    z = zipfile.ZipFile(tmp_path / "out" / "rl-copy-figures.zip")
    rec = json.loads(z.read("rl-copy_vs_rl_contrast.json"))
    assert (rec["params"]["run_a"], rec["params"]["run_b"]) == ("rl-copy", "rl")


def test_cross_sample_cli_on_the_demo_pair(demo_cache, capsys):
    from core.cli.main import main
    from core.experiments.cross_sampling import get_sweep, read_summary

    assert main(["cross-sample", "rl", "--cache", str(demo_cache), "--prompts", "3",
                 "--eps", "0.02,0.1", "--top-p", "1.0", "--bootstrap", "50", "--control",
                 "random", "--target-budget", "0"]) == 0
    s = read_summary(demo_cache / "rl")
    got = {(d, bool(c)) for d, c in zip(s.direction, s.control)}
    assert got == {("base", False), ("tuned", False), ("forward", False), ("forward", True),
                   ("reverse", False), ("reverse", True)}
    assert ((s.ci_lo <= s.accuracy) & (s.accuracy <= s.ci_hi)).all()
    samples = pd.read_parquet(get_sweep(demo_cache / "rl").samples)
    fwd = samples[(samples.direction == "forward") & ~samples.control]
    ctl = samples[(samples.direction == "forward") & samples.control]
    assert len(fwd) == len(ctl) == 3 * 2
    assert (fwd.n_switched.to_numpy() >= 0).all() and "forward" in capsys.readouterr().out


@pytest.mark.unit
@pytest.mark.parametrize("uri, want", [
    ("s3://AKIA:pw@bucket/p?region=eu-west-1", "s3://***@bucket/p?region=eu-west-1"),
    ("s3://bucket/p?endpoint_override=h:9000&secret_key=abc&scheme=http",
     "s3://bucket/p?endpoint_override=h:9000&secret_key=***&scheme=http"),
    ("gs://bucket/prefix", "gs://bucket/prefix"),
    ("/mnt/shared/parts", "/mnt/shared/parts"),
    ("", ""),
])
def test_manifest_masks_credentials_in_uris(uri, want):
    from core.precompute.ray import _join_uri
    from core.store.manifest import redact_uri

    assert redact_uri(uri) == want
    if "://" in uri:  # the run's own prefix goes into the path, not the query string
        joined = _join_uri(uri, "run-abc")
        assert "/p/run-abc?" in joined or joined.endswith("/prefix/run-abc")
