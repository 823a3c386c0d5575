"""AppTest checks of the interaction defects a shared-server review found (issue 13 item 3):
thresholds per metric over the metric's whole range, the open trace named and its row marked,
presets that fill the form, messages that survive the rerun, live scoring that flags
unrepresentable text and forgets another run's scores. The browser tier covers what needs
clicks in the custom component (tests/test_browser_interactions.py)."""

from __future__ import annotations

import math

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import MAIN

pytestmark = pytest.mark.model


def test_each_metric_keeps_its_own_threshold_over_its_whole_range(app):
    at = app(run="demo-rl", metric="js", thr="0.05")
    js = at.slider(key="thr_js")
    assert js.value == pytest.approx(0.05)
    assert js.max >= math.log(2)  # js reaches ln 2, the slider too
    at.selectbox(key="metric").select("entropy_base").run()
    assert not at.exception
    ent = at.slider(key="thr_entropy_base")
    assert ent.value == pytest.approx(0.01)  # its own default, not js's 0.05
    assert at.query_params["thr"] == "0.01" and at.query_params["metric"] == "entropy_base"
    ent.set_value(1.5).run()
    at.selectbox(key="metric").select("js").run()
    assert at.slider(key="thr_js").value == pytest.approx(0.05)  # js kept its own
    at.selectbox(key="metric").select("dlogp").run()
    assert not at.exception
    dl = at.slider(key="thr_dlogp")
    assert dl.value == pytest.approx(0.5)


def test_unbounded_metrics_slide_to_the_largest_value_on_screen():
    from app.ui.tokens import threshold_scale

    top, step = threshold_scale("entropy_base", [0.1, 7.3, float("nan")])
    assert top >= 7.3 and step > 0
    top, _ = threshold_scale("entropy_base", [0.1])
    assert top >= 2.0  # never below the colour scale
    top, _ = threshold_scale("js", [0.01])
    assert math.log(2) <= top < 0.7


def test_the_open_trace_is_named_and_its_row_marked(app):
    at = app(run="demo-rl")
    first = int(at.query_params["trace"])
    table = at.dataframe[0].value
    other = int(table.trace_id.iloc[2])
    at2 = app(run="demo-rl", trace=other)
    assert any(s.value == f"Trace {other}" for s in at2.subheader)
    marked = at2.dataframe[0].value
    assert list(marked.trace_id[marked.open == "▶"]) == [other]
    assert first != other or len(table) < 3


def test_a_preset_fills_both_model_fields(app):
    from core.api import PRESETS

    at = app("views/add_pair.py")
    p = PRESETS[0]
    at.text_input(key="ap_base_spec").set_value("assets/demo/base").run()
    at.selectbox(key="ap_preset").select(p.key).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="ap_base_spec").value == p.base  # replaces what was typed
    assert at.text_input(key="ap_tuned_spec").value == p.tuned


def _cache_with(app_cache, tmp_path, *runs):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in runs:
        import shutil

        shutil.copytree(app_cache / name, cache / name)
    return cache


def test_rename_and_delete_messages_survive_the_rerun(app_cache, tmp_path, monkeypatch):
    cache = _cache_with(app_cache, tmp_path, "demo-rl", "demo-sft")
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page("views/runs.py")
    at.run()
    at.selectbox(key="rm_run").select("demo-sft").run()
    at.text_input(key="rm_new").set_value("sft-renamed").run()
    at.button(key="rm_rename").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert (cache / "sft-renamed").is_dir()
    assert any("renamed demo\\-sft → sft\\-renamed" in s.value for s in at.success)
    at.run()  # the next interaction: the message has been read
    assert not any("renamed" in s.value for s in at.success)
    at.selectbox(key="rm_run").select("sft-renamed").run()
    at.text_input(key="rm_confirm").set_value("sft-renamed").run()
    at.button(key="rm_delete").click().run()
    assert not (cache / "sft-renamed").exists()
    assert any("deleted sft\\-renamed" in s.value for s in at.success)


def _job(cache, tmp_path, jid, **fields):
    import json
    import time

    d = cache / ".jobs" / jid
    d.mkdir(parents=True)
    (d / "log.txt").write_text(fields.pop("log", ""))
    (d / "job.json").write_text(json.dumps({
        "id": jid, "state": "queued", "config": {}, "cwd": str(tmp_path),
        "created": time.time(), "kind": "precompute", **fields}))


def test_a_cancel_message_stays_in_the_self_refreshing_jobs_panel(app_cache, tmp_path,
                                                                   monkeypatch):
    import os

    from core.jobs.process import proc_stat as _proc_stat

    cache = _cache_with(app_cache, tmp_path, "demo-rl")
    me = os.getpid()  # a "running" job whose process is alive: this test's own
    _job(cache, tmp_path, "20261202-000001-aaaaaa", run="busy-run", state="running", pid=me,
         proc_start=_proc_stat(me)[1])
    _job(cache, tmp_path, "20261202-000002-bbbbbb", run="waiting-run",
         depends_on=["20261202-000001-aaaaaa"])
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page("views/add_pair.py")
    at.run()
    at.button(key="jc_20261202-000002-bbbbbb").click().run()
    assert not at.exception, [e.value for e in at.exception]
    said = [s.value for s in at.success]
    assert any(r"cancelled 20261202\-000002\-bbbbbb \(waiting\-run\)" in v for v in said)
    at.run()  # the panel refreshes itself: the message stays
    assert [s.value for s in at.success] == said


def test_an_exposed_server_shows_job_logs_without_tracebacks_or_paths(app_cache, tmp_path,
                                                                     monkeypatch, behind_guard):
    from streamlit import config

    cache = _cache_with(app_cache, tmp_path, "demo-rl")
    _job(cache, tmp_path, "20261202-000001-abcdef", run="x", state="failed",
         error="OSError: cannot read /srv/secret/model.bin",
         log='Traceback (most recent call last):\n  File "/srv/secret/x.py", line 1\n'
             'OSError: cannot read /srv/secret/model.bin\n')
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))

    def jobs_texts(at):
        at.run()
        at.switch_page("views/add_pair.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return [c.value for c in at.code] + [e.value for e in at.error]

    shown = jobs_texts(AppTest.from_file(MAIN, default_timeout=60))
    assert any("/srv/secret/x.py" in v for v in shown)  # on loopback the log is whole
    saved = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    monkeypatch.setenv("SHIFTLENS_PASSWORD", "pw")
    try:
        at = AppTest.from_file(MAIN, default_timeout=60)
        behind_guard(signed_in=True)
        shown = jobs_texts(at)
    finally:
        config.set_option("server.address", saved)
    assert not any("/srv/secret" in v or "Traceback" in v for v in shown), shown
    assert any("OSError: cannot read …/model.bin" in v for v in shown)


def test_live_scoring_flags_unknown_characters_and_forgets_another_runs_scores(app):
    at = app("views/live.py", run="demo-rl")
    at.text_area[1].set_value(" 3+4=7 café. #### 7")
    at.button[0].click()
    at.run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    flags = [w.value for w in at.warning if "unknown token" in w.value]
    # the demo vocabulary spells printable ASCII one character at a time: only 'é' is unknown
    assert flags and "'é'" in flags[0] and "'c'" not in flags[0]
    assert any("tokens highlighted" in c.value for c in at.caption)
    at.sidebar.selectbox(key="run_picker").select("demo-sft").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("tokens highlighted" in c.value for c in at.caption)
    assert any(r"demo\-rl" in i.value and "Score" in i.value for i in at.info)


def test_a_run_renamed_by_another_session_mid_page_is_a_message(app_cache, tmp_path,
                                                                monkeypatch):
    """Another session renames the open run after this page listed it and before it reads
    its tokens: DuckDB finds no files; the page says what happened instead of a traceback,
    and the next run of the page offers the renamed run."""
    import os

    from core import api

    cache = _cache_with(app_cache, tmp_path, "demo-rl", "demo-sft")
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    real = api.trace_tokens

    def rename_first(con, run, tid):
        if (cache / "demo-sft").exists():
            os.rename(cache / "demo-sft", cache / "sft-elsewhere")  # another session's act
        return real(con, run, tid)

    monkeypatch.setattr(api, "trace_tokens", rename_first)
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["run"] = "demo-sft"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("renamed or deleted it" in w.value for w in at.warning)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("no run named" in w.value for w in at.warning)  # and the picker is offered


def test_the_jobs_panel_lists_the_newest_job_first(app_cache, tmp_path, monkeypatch):
    import time

    cache = _cache_with(app_cache, tmp_path, "demo-rl")
    now = time.time()
    for i, run in enumerate(["oldest-run", "middle-run", "newest-run"]):
        _job(cache, tmp_path, f"20261202-00000{i}-abcdef", run=run, state="done",
             created=now - 300 + 100 * i)
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page("views/add_pair.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    order = [m.value.split("**")[1].replace("\\", "") for m in at.markdown
             if m.value.startswith("**") and "-run" in m.value]
    assert order == ["newest-run", "middle-run", "oldest-run"]
