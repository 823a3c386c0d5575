"""Headless smoke tests of every page with streamlit.testing.v1.AppTest.

They run the real app script against a cache built by the production path; only our own
seam (the cache location) is configured, nothing of Streamlit is patched."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import MAIN

pytestmark = pytest.mark.model


def test_traces_page_opens_on_the_demo_run(app):
    at = app()
    assert at.sidebar.selectbox(key="run_picker").value == "demo-rl"
    assert any("Trace browser" in h.value for h in at.header)
    assert at.query_params["run"] == "demo-rl"
    assert "trace" in at.query_params


def test_url_reopens_a_view(app):
    at = app(run="demo-sft", trace=1, pos=3, metric="dlogp")
    assert at.sidebar.selectbox(key="run_picker").value == "demo-sft"
    assert at.selectbox(key="metric").value == "dlogp"
    assert any(s.value.startswith("Token 3:") for s in at.subheader)


def test_search_page(app):
    at = app("views/search.py")
    assert any("Token search" in h.value for h in at.header)
    assert len(at.dataframe) >= 1


def test_bad_url_values_fall_back_to_defaults(app):
    at = app(run="demo-rl", trace="x", pos="-5", metric="<script>")
    assert at.sidebar.selectbox(key="run_picker").value == "demo-rl"
    assert at.selectbox(key="metric").value == "js"


@pytest.mark.parametrize("page", [None, "views/overview.py", "views/search.py",
                                  "views/cross.py", "views/live.py", "views/runs.py"])
def test_a_url_naming_a_missing_run_says_so_and_shows_no_other_run(app, page):
    """A renamed or deleted run's link must not open another run (issue 13): the page names
    the missing run, shows none of another run's data, and offers the picker."""
    at = app(run="gone-*run*", trace=3)
    if page:
        at.query_params["run"] = "gone-*run*"
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page == "views/runs.py":  # the Runs page lists every run; it picks none
        return
    assert any("no run named" in w.value and "gone" in w.value for w in at.warning)
    assert not at.header and not at.get("plotly_chart") and not at.dataframe
    picker = at.sidebar.selectbox(key="run_missing_picker")
    assert picker.value is None
    picker.set_value("demo-sft").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["run"] == "demo-sft"
    assert at.sidebar.selectbox(key="run_picker").value == "demo-sft"


def test_a_page_switch_keeps_the_sessions_run(app):
    """Navigation drops the URL's parameters: the session's run stays (not the first run)."""
    at = app(run="demo-sft")
    at.query_params.clear()
    at.switch_page("views/search.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="run_picker").value == "demo-sft"
    assert at.query_params["run"] == "demo-sft"


def test_overview_page_has_every_figure(app):
    import json

    at = app("views/overview.py")
    charts = at.get("plotly_chart")
    # each figure's title is the heading above it (not repeated inside the plot)
    assert all("text" not in (json.loads(c.proto.spec)["layout"].get("title") or {})
               for c in charts)
    titles = [h.value for h in at.subheader]
    assert len(charts) >= 10, titles
    assert any("volution" in t for t in titles)  # the series exists in the app cache
    assert any("SFT" in t or "ontrast" in t for t in titles)
    assert any("%" in c.value for c in at.caption)  # captions carry their key numbers
    # the headline under both metrics, side by side, with intervals
    two = [c.value.replace("\\", "") for c in at.caption]  # md_escape's backslashes
    two = [c for c in two if "with full-vocabulary js" in c]
    assert two and "truncated distributions (the paper's measure)" in two[0], two
    assert two[0].count("[") >= 2


def test_live_scoring_page(app):
    at = app("views/live.py")
    at.text_area[1].set_value(" 3+4=7. #### 7")
    at.button[0].click()
    at.run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    assert any("tokens highlighted" in c.value for c in at.caption)


def test_cross_sampling_page(app):
    at = app("views/cross.py")
    assert any("Cross-sampling" in h.value for h in at.header)
    assert any("Runs on" in i.value for i in at.info)


def test_add_pair_and_runs_pages(app):
    at = app("views/add_pair.py")
    assert any("Add a pair" in h.value for h in at.header)
    at = app("views/runs.py")
    assert any("Runs" in h.value for h in at.header)
    assert len(at.get("plotly_chart")) >= 10  # the side-by-side comparison


def test_cross_sampling_target_budget_picks_eps_from_the_run(app_cache, tmp_path,
                                                            monkeypatch):
    # the sweep it starts writes into its run: a copy, not the cache other modules' servers
    # read (under xdist a browser test saw this sweep appear mid-page)
    from tests.conftest import open_app
    from tests.test_app_interactions import _cache_with

    at = open_app(monkeypatch, _cache_with(app_cache, tmp_path, "demo-rl"), "views/cross.py",
                  run="demo-rl")
    sweep_over = next(r for r in at.radio if "target budgets (% of tokens)" in r.options)
    sweep_over.set_value("target budgets (% of tokens)")
    at.text_input[0].set_value("5")
    at.number_input[0].set_value(1)  # one prompt: the sweep it starts is tiny
    at.button[0].click()
    at.run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    assert any("target budgets → eps from the stored js (the stored value whose realised "
               "share is closest): 5% →" in c.value and "of stored tokens exceed it" in c.value
               for c in at.caption)
    # the sweep samples with the run's decoding by default, and the page says so
    assert any("Sampling with the run's decoding (top-p 1" in c.value for c in at.caption)


def test_a_copied_run_folder_opens_under_its_folder_name(app_cache, tmp_path, monkeypatch):
    """cp -r cache/demo-sft cache/sft-copy: both manifests say demo-sft; the app names runs
    by folder, so both open and the copy's traces show."""
    import shutil

    cache = tmp_path / "cache"
    for name in ("demo-sft", "demo-rl"):
        shutil.copytree(app_cache / name, cache / name)
    shutil.copytree(app_cache / "demo-sft", cache / "sft-copy")
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["run"] = "sft-copy"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="run_picker").value == "sft-copy"
    assert not [w.value for w in at.warning if "No trace" in w.value]
    assert "trace" in at.query_params


def test_trace_pages_and_a_link_to_a_later_page(tmp_path, monkeypatch):
    """A run with more traces than a page: a link to a trace on page 2 opens page 2 on that
    trace; turning back to page 1 opens page 1's first trace."""
    from app.views.traces import PAGE
    from core import queries as Q
    from core.demo.synthetic import write_synthetic_run

    cache = tmp_path / "cache"
    write_synthetic_run(cache / "big", n_tokens=40_000, mean_length=30, seed=2)
    con = Q.open_runs([cache / "big"], names=["big"])
    # the table lists the run's default sampler's traces (tuned-sampled), as the overview
    default = Q.sampled_from_choices(con, "big")[0]
    assert Q.trace_count(con, "big", sampled_from=default) > PAGE + 10
    target = int(Q.trace_list(con, "big", limit=1, offset=PAGE + 7,
                              sampled_from=default)["trace_id"].iloc[0])
    first = int(Q.trace_list(con, "big", limit=1, sampled_from=default)["trace_id"].iloc[0])
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["run"] = "big"
    at.query_params["trace"] = str(target)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="trace_page").value == 2
    assert at.query_params["page"] == "2" and at.query_params["trace"] == str(target)
    at.number_input(key="trace_page").set_value(1).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "page" not in at.query_params and at.query_params["trace"] == str(first)


def test_jobs_panel_marks_a_finished_jobs_run_that_is_gone(app_cache, tmp_path, monkeypatch):
    """A done job whose run was renamed or deleted offers no link (which would open another
    run); one whose run is here links to it."""
    import json
    import time

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "demo-rl").symlink_to(app_cache / "demo-rl")
    for i, run in enumerate(["demo-rl", "renamed-away"]):
        d = cache / ".jobs" / f"20261202-00000{i}-abcdef"
        d.mkdir(parents=True)
        (d / "log.txt").write_text("")
        (d / "job.json").write_text(json.dumps({
            "id": d.name, "run": run, "state": "done", "config": {}, "cwd": str(tmp_path),
            "created": time.time() - 60, "kind": "precompute", "finished": time.time()}))
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page("views/add_pair.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    gone = [c for c in at.caption if "renamed or deleted" in c.value]
    assert len(gone) == 1
    links = at.get("page_link")
    assert len(links) == 1 and "demo-rl" in str(links[0].proto)
