"""The notebook API (shiftlens): the trace view's shared payload and front end, a run opened
from Python, its refusals, and docs/notebook.ipynb run headless with nbclient."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from core.errors import InputError, RunsError
from core.figures.colours import colour_tokens, folds, text_colours
from core.figures.trace import assets, payload, topk_rows, trace_payload

HOSTILE = "</script><img src=x onerror=alert(1)>"


def _toks(n: int = 40, topk: bool = True) -> pd.DataFrame:
    js = [0.3 if i in (3, 30) else 0.0 for i in range(n)]
    df = pd.DataFrame({"pos": range(n), "token": ["a"] * (n - 1) + [HOSTILE],
                       "token_id": [5] * (n - 1) + [2], "js": js,
                       "rank_base": [1] * n, "rel_pos": [i / n for i in range(n)]})
    if topk:
        df["base_ids"] = [[5, 7]] * n
        df["base_tokens"] = [["a", "b"]] * n
        df["base_probs"] = [[0.75, 0.25]] * n
        df["tuned_ids"] = [[7, 5]] * n
        df["tuned_tokens"] = [["b", "a"]] * n
        df["tuned_probs"] = [[0.5, 0.5]] * n
    return df


@pytest.mark.unit
def test_the_payload_is_the_trace_browsers_highlighting():
    toks = _toks()
    data = trace_payload(toks, "js", 0.1, collapse=True, special_ids=[2], selected=3)
    colours, strength = colour_tokens(toks["js"].tolist(), "js", 0.1)
    dark = colour_tokens(toks["js"].tolist(), "js", 0.1, theme="dark")[0]
    assert data["colours"] == colours and data["strength"] == strength
    assert data["colours_dark"] == dark and data["text_dark"] == text_colours(dark, "dark")
    assert data["text"] == text_colours(colours, "light")
    assert data["folds"] == [list(f) for f in folds(strength)] and data["folds"]
    assert data["special"] == [False] * 39 + [True] and data["selected"] == 3
    assert data["titles"][3] == "pos 3 · js 0.3 · rank_base 1"
    assert "topk" not in data  # the app draws its own panel in Python
    assert data == payload(toks["token"].tolist(), colours, strength, data["titles"],
                           data["special"], 3, folds(strength), dark_colours=dark)


@pytest.mark.unit
def test_top_k_rows_mark_the_traces_token_and_keep_text_as_repr():
    rows = topk_rows(_toks())
    assert rows[0]["base"] == [["'a'", 0.75, True], ["'b'", 0.25, False]]
    assert rows[0]["tuned"] == [["'b'", 0.5, False], ["'a'", 0.5, True]]
    assert rows[-1]["token"] == repr(HOSTILE)
    assert ["js", "0"] in rows[0]["metrics"] and ["rel_pos", "0"] in rows[0]["metrics"]
    assert topk_rows(_toks(topk=False)) is None
    with pytest.raises(InputError, match="unknown metric 'nope'"):
        trace_payload(_toks(), "nope")


@pytest.mark.unit
def test_the_widget_runs_the_apps_own_component_and_a_page_keeps_text_as_data():
    from shiftlens.front import EXPORT, esm, standalone_html

    js, css = assets()
    module = esm()
    assert module.startswith(js.rstrip()[:-len(EXPORT)])  # the app's file, not a copy
    assert len(re.findall(r"^export default", module, re.M)) == 1  # the widget's render
    assert "function render({ model, el })" in module
    data = trace_payload(_toks(), "js", with_topk=True)
    page = standalone_html(data, title=HOSTILE)
    assert HOSTILE not in page and "<img" not in page  # only escaped, inside JSON / title
    state = re.search(r'id="shiftlens-state">(.*?)</script>', page, re.S).group(1)
    assert json.loads(state)["data"]["tokens"][-1] == HOSTILE
    assert css in page


@pytest.mark.unit
def test_the_widget_class_carries_the_shared_module():
    pytest.importorskip("anywidget")
    from shiftlens.front import esm
    from shiftlens.widget import TraceWidget

    w = TraceWidget(data={"tokens": ["a"]}, selected=0)
    assert TraceWidget._esm == esm() and TraceWidget._css == assets()[1]
    assert w.selected == 0 and w.data == {"tokens": ["a"]}


# ----------------------------------------------------------------------------- on a real run


@pytest.fixture(scope="module")
def run(app_cache):
    import shiftlens

    return shiftlens.open("demo-rl", cache=app_cache)


@pytest.mark.model
def test_a_run_opens_with_its_traces_trace_view_and_figures(run):
    pytest.importorskip("anywidget")
    import plotly.graph_objects as go

    from core import api
    from core.figures import overview

    traces = run.traces()
    assert len(traces) == run.info.n_traces and traces.max_js.is_monotonic_decreasing
    tid = int(traces.trace_id.iloc[0])
    view = run.trace(tid).show(pos=2)
    toks = api.trace_tokens(run.con, "demo-rl", tid)
    assert view.data == trace_payload(toks, "js", special_ids=run.special_ids, selected=2,
                                      with_topk=True)
    assert view.selected == 2 and len(view.data["topk"]) == len(toks)
    fig = run.figure("js_hist")
    assert isinstance(fig, go.Figure)
    want = {s.id: s for s in overview(run.con, "demo-rl", series=run.series or None,
                                      contrast_with=run.contrast_with)}
    assert fig.to_json() == want["js_hist"].figure.to_json()
    assert [s.id for s in run.overview()] == list(want)


@pytest.mark.model
def test_bad_lookups_are_refused_in_one_line_and_write_nothing(run, app_cache):
    import shiftlens

    before = sorted(p.relative_to(app_cache) for p in app_cache.rglob("*"))
    trace = run.trace(int(run.traces().trace_id.iloc[0]))
    cases = [(lambda: shiftlens.open("no-such-run", cache=app_cache), "no run named"),
             (lambda: run.trace(10**6), "has no trace 1000000"),
             (lambda: run.trace("x"), "a trace id is an integer"),
             (lambda: run.figure("pie"), "unknown figure 'pie'; one of: js_hist"),
             (lambda: trace.show(pos=10**6), "pos must be a token position"),
             (lambda: trace.to_html(metric="nope"), "unknown metric 'nope'")]
    for call, message in cases:
        with pytest.raises((RunsError, InputError)) as e:
            call()
        assert message in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.relative_to(app_cache) for p in app_cache.rglob("*")) == before


@pytest.mark.model
def test_the_docs_notebook_runs_headless(app_cache, tmp_path, monkeypatch):
    pytest.importorskip("anywidget")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from tests.conftest import ROOT

    monkeypatch.setenv("SHIFTLENS_CACHE", str(app_cache))  # the kernel inherits it
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    nb = nbformat.read(ROOT / "docs" / "notebook.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.get("output_type") != "error" for c in code for o in c.outputs)
    mimes = [set(o.get("data", {})) for c in code for o in c.outputs]
    assert any("application/vnd.jupyter.widget-view+json" in m for m in mimes)  # the trace
    assert any("application/vnd.plotly.v1+json" in m for m in mimes)  # the figure
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    views = [s["state"] for s in states.values() if "data" in s["state"]]
    assert len(views) == 1 and views[0]["data"]["tokens"] and views[0]["data"]["topk"]
