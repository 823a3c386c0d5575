"""The trace view component (Streamlit custom components v2: inline HTML/CSS/JS, no iframe).

`trace_view(...)` draws the divergence strip and the highlighted tokens and returns the
position of a clicked token (or None). Token text is set with textContent in the browser.
The browser picks the light or dark colours by the theme's background (--st-background-color),
so the first paint already matches the theme.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.ui.colours import text_colours

HERE = Path(__file__).parent
_component = st.components.v2.component(
    "shiftlens_trace_view",
    css=(HERE / "trace_view.css").read_text(encoding="utf-8"),
    js=(HERE / "trace_view.js").read_text(encoding="utf-8"),
)


def trace_view(tokens: list[str], colours: list[str], strength: list[float], titles: list[str],
               special: list[bool], selected: int | None, folds: list[tuple[int, int]],
               key: str, scroll: bool = True,
               dark_colours: list[str] | None = None) -> int | None:
    """`colours`: css colours on a light page; `dark_colours` the same highlights on a dark one
    (default: `colours`). The text colour of each token is chosen per theme for contrast."""
    dark = colours if dark_colours is None else dark_colours
    result = _component(
        key=key,
        data={"tokens": tokens, "colours": colours, "strength": strength, "titles": titles,
              "text": text_colours(colours, "light"), "colours_dark": dark,
              "text_dark": text_colours(dark, "dark"),
              "special": special, "selected": -1 if selected is None else int(selected),
              "folds": [list(f) for f in folds], "scroll": scroll},
        on_clicked_change=lambda: None,
    )
    clicked = getattr(result, "clicked", None)
    return None if clicked is None else int(clicked)
