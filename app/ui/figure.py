"""A figure with its caption and export buttons (PNG, SVG, PDF, HTML, CSV, Parquet).

Files are produced only when a button is clicked (deferred download data), by api.figure_bytes.
"""

from __future__ import annotations

import streamlit as st

from app.ui.text import md_escape
from core import api
from core.figures.style import compact, fit_titles

FORMATS = [("PNG", "png", "image/png"), ("SVG", "svg", "image/svg+xml"),
           ("PDF", "pdf", "application/pdf"), ("HTML", "html", "text/html"),
           ("CSV", "csv", "text/csv"), ("Parquet", "parquet", "application/octet-stream")]


def drawn(spec, narrow: bool = False):
    """The figure as the page draws it: without its in-plot title (the heading above it
    says it; repeated inside the plot it read twice), long axis titles wrapped (a 1,000 px
    window leaves the page ~540 px for a figure), compact in a column. Exports keep the
    full figure, title included."""
    if narrow:
        return compact(spec.figure)
    return fit_titles(spec.figure).update_layout(title=None)


def show_figure(spec, key: str, narrow: bool = False) -> None:
    """`narrow`: the figure sits in a column (e.g. one of two side by side): drawn compact
    (core.figures.style.compact: no in-plot title, titles wrapped shorter); exports are
    the full figure."""
    st.subheader(md_escape(spec.title))  # titles and captions may quote runs and tokens
    st.caption(md_escape(spec.caption))
    st.plotly_chart(drawn(spec, narrow), key=f"chart_{key}", config={"displaylogo": False})
    with st.popover("Export", icon=":material/download:"):
        for label, fmt, mime in FORMATS:
            st.download_button(
                label, data=lambda f=fmt: api.figure_bytes(spec, f),
                file_name=api.export_name(spec, fmt), mime=mime, key=f"dl_{key}_{fmt}",
                on_click="ignore")
