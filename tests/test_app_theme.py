"""The theme switch (app/ui/theme.py): a session that picks dark gets dark pages and figures
(core.figures.style.themed) on every page it moves to; another session at the same time
stays light; exports stay light. Plus the Plotly side of themed() on its own."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

from core.figures.style import DARK, TEMPLATE, themed

PAGE_BG = DARK["paper_bgcolor"]


def _backgrounds(at) -> list:
    return [json.loads(c.proto.spec)["layout"].get("paper_bgcolor")
            for c in at.get("plotly_chart")]


def _switch(at):
    (group,) = [g for g in at.sidebar.get("button_group") if g.key == "theme_switch"]
    return group


@pytest.mark.model
def test_the_switch_is_per_session_and_follows_page_changes(app):
    dark = app("views/overview.py", run="demo-rl")
    light = app("views/overview.py", run="demo-rl")
    assert _switch(dark).value == "light" and set(_backgrounds(dark)) == {None}  # template's
    assert not dark.get("html")  # no restyling while the server's theme is in force
    _switch(dark).set_value("dark").run()
    assert not dark.exception, [e.value for e in dark.exception]
    assert len(_backgrounds(dark)) >= 8 and set(_backgrounds(dark)) == {PAGE_BG}
    assert any("--st-background-color: #171614" in h.proto.body for h in dark.get("html"))
    dark.switch_page("views/runs.py")
    dark.run()
    assert _switch(dark).value == "dark" and set(_backgrounds(dark)) == {PAGE_BG}
    light.run()  # the other session, drawn again after the first one switched
    assert _switch(light).value == "light" and set(_backgrounds(light)) == {None}
    assert not light.get("html")
    _switch(dark).set_value("light").run()
    assert set(_backgrounds(dark)) == {None}


@pytest.mark.unit
def test_themed_colours_the_figure_and_leaves_the_original():
    fig = go.Figure(go.Bar(x=[1], y=[2]), layout=dict(template=TEMPLATE))
    fig.add_annotation(text="dark label", font_color="#222222")
    fig.add_annotation(text="coloured", font_color="#E69F00")
    assert themed(fig, "light") is fig
    d = themed(fig, "dark")
    assert d.layout.paper_bgcolor == d.layout.plot_bgcolor == PAGE_BG
    assert d.layout.font.color == DARK["font_color"] and d.layout.xaxis.gridcolor == DARK["grid"]
    assert [a.font.color for a in d.layout.annotations] == [DARK["font_color"], "#E69F00"]
    assert fig.layout.paper_bgcolor is None and fig.layout.annotations[0].font.color == "#222222"
    with pytest.raises(ValueError, match="theme"):
        themed(fig, "sepia")
