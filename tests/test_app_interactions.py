"""AppTest checks of the interaction defects a shared-server review found (issue 13 item 3):
thresholds per metric over the metric's whole range, the open trace named and its row marked,
presets that fill the form, messages that survive the rerun, live scoring that flags
unrepresentable text and forgets another run's scores. The browser tier covers what needs
clicks in the custom component (tests/test_browser_interactions.py)."""

from __future__ import annotations

import math

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

pytestmark = pytest.mark.model
MAIN = str(ROOT / "app" / "main.py")


@pytest.fixture
def app(app_cache, monkeypatch):
    monkeypatch.setenv("SHIFTLENS_CACHE", str(app_cache))

    def make(page: str | None = None, **params) -> AppTest:
        at = AppTest.from_file(MAIN, default_timeout=60)
        for k, v in params.items():
            at.query_params[k] = str(v)
        at.run()
        if page:
            at.switch_page(page)
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return make


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
