"""Which traces the analyses use (core.queries.sampler): the paper's setting, the tuned
model's own samples, by default; pooled, base and split on request, in core.queries, the CLI
and the overview page, and every caption says which.

The expected numbers are computed here independently, with pandas straight from the run's
Parquet files (no core.queries), on the app cache's demo-rl (traces from both models)."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import queries as Q
from core.cli.main import main
from tests.conftest import ROOT

MAIN = str(ROOT / "app" / "main.py")
NZ, HI = 0.01, 0.1


def independent(run_dir, sampled_from=None) -> dict:
    """The headline numbers over the run's traces sampled by `sampled_from` (None: all)."""
    tokens = pd.read_parquet(run_dir / "tokens.parquet")
    traces = pd.read_parquet(run_dir / "traces.parquet")
    if sampled_from is not None:
        traces = traces[traces["sampled_from"] == sampled_from]
    t = tokens[tokens["trace_id"].isin(traces["trace_id"])]
    return {"n_traces": len(traces), "n_tokens": len(t),
            "share_near_zero": float((t.js < NZ).mean()),
            "share_high": float((t.js > HI).mean()), "mean_js": float(t.js.astype(float).mean()),
            "p95_js": float(t.js.astype(float).quantile(0.95)),
            "top1_agree": float(t.top1_agree.mean()),
            "mean_length": float(traces["length"].mean())}


@pytest.fixture(scope="module")
def demo_rl(app_cache):
    run = app_cache / "demo-rl"
    labels = set(pd.read_parquet(run / "traces.parquet")["sampled_from"])
    assert labels == {"tuned", "base"}  # the check below needs both samplers
    return run


def _check(row, want: dict) -> None:
    for k, v in want.items():
        assert float(row[k]) == pytest.approx(v, rel=1e-6, abs=1e-9), k


@pytest.mark.model
@pytest.mark.parametrize("materialize", [False, True], ids=["views", "materialised"])
def test_summary_defaults_to_tuned_and_pooled_reproduces_the_old_numbers(demo_rl, materialize):
    con = Q.open_runs([demo_rl], materialize=materialize)
    tuned, pooled = independent(demo_rl, "tuned"), independent(demo_rl)
    assert tuned["mean_js"] != pytest.approx(pooled["mean_js"])  # the choice matters here
    row = Q.headline(con, near_zero=NZ, high=HI).iloc[0]  # what `summary demo-rl` prints
    assert row["sampled_from"] == "tuned"
    _check(row, tuned)
    row = Q.headline(con, near_zero=NZ, high=HI, sampled_from="pooled").iloc[0]
    assert row["sampled_from"] == "pooled"
    _check(row, pooled)
    split = Q.headline(con, near_zero=NZ, high=HI, sampled_from="split")
    assert split["sampled_from"].tolist() == ["tuned", "base"]
    _check(split.iloc[1], independent(demo_rl, "base"))
    # the analyses take the same default: sparsity_summary on the tuned-sampled rows
    s = Q.sparsity_summary(con, near_zero=NZ, high=HI).iloc[0]
    assert s["mean"] == pytest.approx(tuned["mean_js"]) and s["n_tokens"] == tuned["n_tokens"]
    assert Q.describe_traces(con, ["demo-rl"]) == f"on {tuned['n_traces']} tuned-sampled traces"


@pytest.mark.model
def test_cli_summary_sampled_from(demo_rl, capsys):
    cache = str(demo_rl.parent)
    assert main(["summary", "demo-rl", "--cache", cache, "--transpose"]) == 0
    default = capsys.readouterr().out
    assert main(["summary", "demo-rl", "--cache", cache, "--transpose",
                 "--sampled-from", "pooled"]) == 0
    pooled = capsys.readouterr().out

    def value(out: str, key: str) -> str:
        return next(line.split()[1] for line in out.splitlines() if line.split()[0] == key)

    assert value(default, "sampled_from") == "tuned"
    assert value(pooled, "sampled_from") == "pooled"
    for out, want in [(default, independent(demo_rl, "tuned")), (pooled, independent(demo_rl))]:
        assert int(value(out, "n_tokens")) == want["n_tokens"]
        assert float(value(out, "mean_js")) == pytest.approx(want["mean_js"], abs=1e-6)
    with pytest.raises(SystemExit) as e:  # argparse refuses an unknown choice
        main(["summary", "demo-rl", "--cache", cache, "--sampled-from", "tunned"])
    assert e.value.code == 2


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _captions(at) -> list[str]:
    """The captions as shown (the page backslash-escapes Markdown in them)."""
    return [c.value.replace("\\", "") for c in at.caption]


@pytest.mark.model
def test_overview_control_changes_headline_and_captions_and_is_kept_in_the_url(
        demo_rl, monkeypatch):
    monkeypatch.setenv("SHIFTLENS_CACHE", str(demo_rl.parent))
    tuned, pooled = independent(demo_rl, "tuned"), independent(demo_rl)
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["run"] = "demo-rl"
    at.run()
    at.switch_page("views/overview.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    control = at.radio(key="from_demo-rl")
    assert control.value == "tuned" and at.query_params["from"] == "tuned"
    assert _metric(at, "tokens with js < 0.01") == f"{100 * tuned['share_near_zero']:.1f}%"
    n = tuned["n_traces"]
    assert sum(c.endswith(f"on {n} tuned-sampled traces") for c in _captions(at)) >= 9
    # the most divergent traces listed are tuned-sampled ones too
    traces = pd.read_parquet(demo_rl / "traces.parquet").set_index("trace_id")["sampled_from"]
    listed = [int(link.label.split()[1]) for link in at.get("page_link")
              if link.label.startswith("trace ")]
    assert listed and {traces[t] for t in listed} == {"tuned"}

    control.set_value("pooled").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["from"] == "pooled"
    assert _metric(at, "tokens with js < 0.01") == f"{100 * pooled['share_near_zero']:.1f}%"
    said = _captions(at)
    assert sum(c.endswith("pooled over " + f"{n} tuned- and "
                          f"{pooled['n_traces'] - n} base-sampled traces") for c in said) >= 9
    assert not any(c.endswith(f"; on {n} tuned-sampled traces") for c in said)
    assert f"Token shares and top-1 agreement pooled over {n} tuned- and" in " ".join(said)

    # a link with ?from= reopens that choice
    again = AppTest.from_file(MAIN, default_timeout=120)
    again.query_params["run"] = "demo-rl"
    again.run()
    again.query_params["from"] = "base"
    again.switch_page("views/overview.py")
    again.run()
    assert not again.exception, [e.value for e in again.exception]
    assert again.radio(key="from_demo-rl").value == "base"
    base = independent(demo_rl, "base")
    assert _metric(again, "tokens with js < 0.01") == f"{100 * base['share_near_zero']:.1f}%"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Runs whose traces carry different labels: both samplers, base only, a rollout file's
    own label, and a series run that re-scored the first run's traces ("reused")."""
    from tests.test_queries import make_tables, write_run

    root = tmp_path_factory.mktemp("labelled")
    labels = {"both": None, "base-only": "base", "rollouts": "policy-v2", "step": None}
    dirs = []
    for i, (name, label) in enumerate(labels.items()):
        traces, tokens, topk = make_tables(i)
        if label:
            traces["sampled_from"] = label
        if name == "step":
            traces["sampled_from"] = traces["sampled_from"].replace({"tuned": "reused"})
        dirs.append(write_run(root / name, (traces, tokens, topk), {"name": name}))
    return Q.open_runs(dirs)


@pytest.mark.unit
def test_the_default_is_resolved_per_run(labelled):
    con = labelled
    assert Q.resolve_sampled_from(con) == {"both": "tuned", "base-only": "base",
                                           "rollouts": "pooled", "step": "tuned"}
    assert Q.sampled_from_choices(con, "both") == ["tuned", "base", "pooled", "split"]
    assert Q.sampled_from_choices(con, "base-only") == ["base", "pooled"]
    assert Q.sampled_from_choices(con, "rollouts") == ["pooled"]
    h = Q.headline(con).set_index("run")
    assert h["sampled_from"].to_dict() == {"both": "tuned", "base-only": "base",
                                           "rollouts": "pooled", "step": "reused"}
    assert h.loc["both", "n_traces"] == 10 and h.loc["rollouts", "n_traces"] == 14
    assert h.loc["step", "n_traces"] == 10  # the tuned model's traces it re-scored
    assert Q.describe_traces(con, ["rollouts"]) == "on 14 policy-v2-sampled traces"
    assert Q.describe_traces(con, ["step"]) == ("on 10 traces reused from another run (its "
                                                "tuned model's samples)")
    assert Q.describe_traces(con, ["base-only"], "tuned") == (
        "on no tuned-sampled traces (the run has none)")
    # an explicit choice is used as given: a run without such traces gives no rows
    assert Q.sparsity_summary(con, runs=["base-only"], sampled_from="tuned")["n_tokens"][0] == 0


@pytest.mark.unit
def test_bad_choices_are_refused(labelled):
    with pytest.raises(ValueError, match="sampled_from must be one of"):
        Q.sparsity_summary(labelled, sampled_from="tunned")
    with pytest.raises(ValueError, match="with by='run'"):
        Q.sparsity_summary(labelled, sampled_from="split", by="run")
    with pytest.raises(ValueError, match="not split"):
        Q.eps_for_budget(labelled, [0.05], sampled_from="split")
