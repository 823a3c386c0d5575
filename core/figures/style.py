"""One look for every figure: template, colour-blind-safe palette (Okabe-Ito), safe labels."""

from __future__ import annotations

import html

import plotly.graph_objects as go

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#56B4E9", "#CC79A7", "#F0E442",
             "#000000"]
# Base and tuned are always these two colours, whether the model is the one that produced an
# entropy or the one that sampled the traces.
MODEL_COLOURS = {"base": "#0072B2", "tuned": "#D55E00"}
NEUTRAL = "#555555"
SUBSET_COLOURS = {"js>threshold": "#E69F00", "all": "#999999"}  # high-js subset vs all tokens
HIGH_LOW = {"high": "#E69F00", "low": "#BBBBBB"}
RUN_COLOURS = ["#009E73", "#CC79A7"]  # the two runs of a contrast
PERCENTILE_COLOURS = {"p50": "#56B4E9", "p90": "#009E73", "p95": "#E69F00", "p99": "#CC79A7"}
HEATMAP_SCALE = "Viridis"
SOURCE_ORDER = ("tuned", "base")  # sampled_from groups, the paper's default first
FONT = "DejaVu Sans, Liberation Sans, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Liberation Mono, monospace"

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font=dict(family=FONT, size=13, color="#222222"),
        title=dict(font=dict(size=16), x=0.012, xanchor="left", y=0.975, yanchor="top"),
        colorway=OKABE_ITO,
        paper_bgcolor="white", plot_bgcolor="white",
        margin=dict(l=70, r=30, t=105, b=60),
        # one row under the title, clear of subplot titles
        legend=dict(orientation="h", yref="container", y=0.905, yanchor="top", x=0.0,
                    xanchor="left", bgcolor="rgba(255,255,255,0)"),
        xaxis=dict(showgrid=True, gridcolor="#E5E5E5", zeroline=False, linecolor="#444444",
                   ticks="outside", showline=True, automargin=True),
        yaxis=dict(showgrid=True, gridcolor="#E5E5E5", zeroline=False, linecolor="#444444",
                   ticks="outside", showline=True, automargin=True),
        bargap=0.15, hoverlabel=dict(font=dict(family=FONT)),
    )
)
WIDTH, HEIGHT = 900, 520  # size of static exports (layout pixels)


def esc(text) -> str:
    """Data text made literal for Plotly, which reads a subset of HTML (<b>, <br>, <a> ...)
    and '$...$' as LaTeX in every label: escape &, <, >, quotes and '$' as entities."""
    return html.escape(str(text), quote=True).replace("$", "&#36;")


def token_label(token) -> str:
    """A token string shown literally and with its whitespace visible (as in the app)."""
    if token is None:
        return "(null)"
    if token == "":
        return "\u2205"  # empty set: an empty decoded token
    t = str(token).replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u2192")
    t = t.replace("\r", "\u240d")
    return esc(t)


def source_label(source) -> str:
    return f"sampled from {esc(source)}"


def pct(x) -> str:
    """A share as it appears in captions, e.g. 0.8712 -> '87.1%'."""
    return "n/a" if x is None or x != x else f"{100 * float(x):.1f}%"


def num(x) -> str:
    """A metric value as it appears in captions (3 significant digits)."""
    return "n/a" if x is None or x != x else f"{float(x):.3g}"


def styled(fig: go.Figure, title: str, **layout) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title=dict(text=esc(title)), **layout)
    return fig
