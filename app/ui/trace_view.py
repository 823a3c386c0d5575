"""The trace view component (Streamlit custom components v2: inline HTML/CSS/JS, no iframe).

`trace_view(...)` draws the divergence strip and the highlighted tokens and returns the
position of a clicked token (or None); `trace_step(key)` is the keyboard's next / previous
trace request. The JavaScript, the CSS and the data they draw come
from core.figures.trace, which the notebook widget (shiftlens) shares. Token text is set
with textContent in the browser. Once a session has picked a theme in the switch
(app.ui.theme) the payload carries it, so switching redraws the view in the new colours at
once; before that (and in the notebook widget) the browser picks them by the page's
background (--st-background-color), which knows a dark server's theme on the first paint.
"""

from __future__ import annotations

import streamlit as st

from app.ui import theme
from core.figures import trace

_js, _css = trace.assets()
_component = st.components.v2.component("shiftlens_trace_view", css=_css, js=_js)


def draw(data: dict, key: str) -> int | None:
    """Draw a payload of core.figures.trace; the position clicked in this rerun, else None."""
    if theme.chosen():  # a session's own choice; else the browser reads the page's colour
        data = dict(data, theme=theme.chosen())
    result = _component(key=key, data=data, on_clicked_change=lambda: None,
                        on_trace_step_change=lambda: None)
    clicked = getattr(result, "clicked", None)
    return None if clicked is None else int(clicked)


def trace_step(key: str) -> int:
    """+1 / -1 when the keyboard (n / p) in the trace view `key` asked for the next /
    previous trace in the rerun it caused, else 0. Read before the view is drawn."""
    try:
        step = int((st.session_state.get(key) or {}).get("trace_step") or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return step if step in (-1, 1) else 0


def trace_view(tokens: list[str], colours: list[str], strength: list[float], titles: list[str],
               special: list[bool], selected: int | None, folds: list[tuple[int, int]],
               key: str, scroll: bool = True,
               dark_colours: list[str] | None = None) -> int | None:
    """draw() of core.figures.trace.payload of these arguments (see there)."""
    return draw(trace.payload(tokens, colours, strength, titles, special, selected, folds,
                              scroll=scroll, dark_colours=dark_colours), key)
