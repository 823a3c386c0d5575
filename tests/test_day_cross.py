"""The cross-sampling page's rough edges of issue 27: intervals named (95%, the method) in
the caption and every hover, an overlay's two sweeps in distinct colours, model loading said
as such, and a cancelled job shown as information, not as a red error."""

from __future__ import annotations

import math
import os

import pytest
from streamlit.testing.v1 import AppTest

from app.views.cross import progress_text
from core.figures.cross import cross_overlay, cross_sampling
from tests.conftest import MAIN
from tests.test_app_interactions import _cache_with, _job
from tests.test_cross_controls import _summary

INF = math.inf
ROWS = [("base", INF, "", 0, 0, 0.40, None), ("tuned", INF, "", 0, 0, 0.60, None),
        ("forward", 0.02, "", 0.07, 0.02, 0.55, None),
        ("forward", 0.02, "random", 0.02, 0.02, 0.45, 0.1),
        ("forward", 0.05, "", 0.03, 0.01, 0.50, None)]


@pytest.mark.unit
def test_intervals_are_explained_in_the_caption_and_every_hover():
    spec = cross_sampling(_summary(ROWS), "r", {"n_prompts": 40, "samples": 2})
    assert "95% percentile bootstrap intervals of the mean accuracy over prompts" in \
        spec.caption
    lines = [t for t in spec.figure.data if t.error_y.array is not None]
    assert lines and all("95% interval" in t.hovertemplate for t in lines)
    fwd = next(t for t in lines if t.name.startswith("forward:"))
    assert list(fwd.customdata[:, 2]) == pytest.approx([45.0, 50.0])  # ci_lo in %, by budget


@pytest.mark.unit
def test_an_overlay_draws_its_two_sweeps_in_different_colours():
    a, b = _summary(ROWS), _summary(ROWS)
    spec = cross_overlay(a, b, "sweep one", "sweep two", "r")
    colour = {t.name: t.line.color for t in spec.figure.data}
    assert colour["A: forward: base, switching to tuned where js > eps"] != \
        colour["B: forward: base, switching to tuned where js > eps"]
    assert "95%" in spec.caption and "A in orange/blue circles, B in green/pink" in spec.caption


@pytest.mark.unit
def test_progress_says_loading_models_before_the_first_batch():
    assert progress_text("j1", "running", None) == "sweep j1 running: loading models…"
    assert progress_text("j1", "running", {}) == "sweep j1 running: loading models…"
    assert progress_text("j1", "queued", None) == "sweep j1 queued: waits for the running job"
    line = progress_text("j1", "running", {"done": 3, "total": 10, "tokens": 100,
                                           "seconds": 2})
    assert line == "sweep j1 running: 3/10 samples · 50 tokens/s"


@pytest.mark.model
def test_a_cancel_is_information_and_a_starting_job_is_loading(app_cache, tmp_path,
                                                                monkeypatch):
    from core import api
    from core.jobs.process import proc_stat as _proc_stat

    cache = _cache_with(app_cache, tmp_path, "demo-rl")
    me = os.getpid()
    _job(cache, tmp_path, "20261206-000001-aaaaaa", run="demo-rl", kind="cross-sample",
         state="cancelled", error="cancelled by the user")
    _job(cache, tmp_path, "20261206-000002-bbbbbb", run="demo-rl", kind="cross-sample",
         state="running", pid=me, proc_start=_proc_stat(me)[1])
    running = next(j for j in api.list_jobs(cache) if j.state == "running")
    assert running.progress_line() == "0% · starting: loading models"
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page("views/add_pair.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "cancelled" in e.value]
    assert any("20261206-000001-aaaaaa was cancelled" in i.value.replace("\\", "")
               for i in at.info)
