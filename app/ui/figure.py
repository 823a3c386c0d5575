"""A figure with its caption and export buttons (PNG, SVG, PDF, HTML, CSV, Parquet).

Files are produced only when a button is clicked (deferred download data), by api.figure_bytes.
"""

from __future__ import annotations

import streamlit as st

from app.ui import theme
from app.ui.text import md_escape
from core import api
from core.figures.style import compact, fit_titles, themed

FORMATS = [("PNG", "png", "image/png"), ("SVG", "svg", "image/svg+xml"),
           ("PDF", "pdf", "application/pdf"), ("HTML", "html", "text/html"),
           ("CSV", "csv", "text/csv"), ("Parquet", "parquet", "application/octet-stream")]


def drawn(spec, narrow: bool = False, page_theme: str = "light"):
    """The figure as the page draws it: without its in-plot title (the heading above it
    says it; repeated inside the plot it read twice), long axis titles wrapped (a 1,000 px
    window leaves the page ~540 px for a figure), compact in a column, in the page's
    theme's colours. Exports keep the full figure, title included, light."""
    if narrow:
        return themed(compact(spec.figure), page_theme)
    return themed(fit_titles(spec.figure).update_layout(title=None), page_theme)


def show_figure(spec, key: str, narrow: bool = False) -> None:
    """`narrow`: the figure sits in a column (e.g. one of two side by side): drawn compact
    (core.figures.style.compact: no in-plot title, titles wrapped shorter); exports are
    the full figure."""
    st.subheader(md_escape(spec.title))  # titles and captions may quote runs and tokens
    st.caption(md_escape(spec.caption))
    st.plotly_chart(drawn(spec, narrow, theme.current()), key=f"chart_{key}",
                    config={"displaylogo": False})
    with st.popover("Export", icon=":material/download:"):
        for label, fmt, mime in FORMATS:
            st.download_button(
                label, data=lambda f=fmt: api.figure_bytes(spec, f),
                file_name=api.export_name(spec, fmt), mime=mime, key=f"dl_{key}_{fmt}",
                on_click="ignore")
