"""One look for every figure: template, colour-blind-safe palette (Okabe-Ito), safe labels."""

from __future__ import annotations

import html
import re
import textwrap

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
THEMES = ("light", "dark")
# The dark page's figure colours: Streamlit's dark background and text (core.figures.colours
# THEMES), lighter grid and axis lines. The data colours (Okabe-Ito) read on both.
DARK = dict(paper_bgcolor="#171614", plot_bgcolor="#171614", font_color="#EDEBE8",
            legend_bgcolor="rgba(0,0,0,0)", grid="#3A3936", line="#A8A6A1")


def themed(fig: go.Figure, theme: str = "light") -> go.Figure:
    """`fig` for a page in `theme` ("light": unchanged; "dark": a copy with the dark
    background, text and grid colours set on the figure itself, so no viewer's own theme
    overrides them). Exports are always light."""
    if theme not in THEMES:
        raise ValueError(f"theme must be one of {THEMES}, got {theme!r}")
    if theme == "light":
        return fig
    fig = go.Figure(fig)
    fig.update_layout(paper_bgcolor=DARK["paper_bgcolor"], plot_bgcolor=DARK["plot_bgcolor"],
                      font_color=DARK["font_color"], legend_bgcolor=DARK["legend_bgcolor"])
    axis = dict(gridcolor=DARK["grid"], linecolor=DARK["line"], zerolinecolor=DARK["grid"])
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis)
    fig.update_layout(legend_font_color=DARK["font_color"])
    for a in fig.layout.annotations:  # text drawn dark for white (or left to the template)
        if a.font.color is None or _dark_colour(a.font.color):
            a.font.color = DARK["font_color"]
    return fig


def _dark_colour(css: str) -> bool:
    """Whether a '#RRGGBB' colour is dark (relative luminance under 0.2); other notations:
    False (left as they are)."""
    m = re.fullmatch(r"#([0-9a-fA-F]{6})", str(css).strip())
    if not m:
        return False
    r, g, b = (int(m.group(1)[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.2


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


def _wrap(text, chars: int):
    if not text or "<br>" in text:
        return text
    return "<br>".join(textwrap.wrap(text, max(chars, 8), break_on_hyphens=False)) or text


def _lines(text) -> int:
    return str(text or "").count("<br>") + 1


def _legend_items(fig: go.Figure) -> list:
    """The traces Plotly lists in the legend (one entry per legend group)."""
    if fig.layout.showlegend is False:
        return []
    shown = [t for t in fig.data if t.showlegend is not False and t.name
             and t.type not in ("heatmap", "histogram2d")]
    if fig.layout.showlegend is None and len(fig.data) == 1:
        return []  # Plotly's default: no legend for a single trace
    seen, items = set(), []
    for t in shown:
        if t.legendgroup and t.legendgroup in seen:
            continue
        seen.add(t.legendgroup)
        items.append(t)
    return items


def _width(axis) -> float:
    d = axis.domain or (0, 1)
    return float(d[1]) - float(d[0])


def _facet_titles(fig: go.Figure) -> list:
    """The facet titles of make_subplots: paper annotations just above the panels (of every
    row of a grid: each sits at the top of its row's y domain)."""
    tops = {round(float((a.domain or (0, 1))[1]), 6) for a in fig.select_yaxes()}
    return [a for a in fig.layout.annotations if a.yref == "paper" and a.yanchor == "bottom"
            and ((a.y or 0) >= 0.99 or round(float(a.y or 0), 6) in tops)]


def fit_titles(fig: go.Figure, chars: int = 60, font_size: int | None = None) -> go.Figure:
    """A copy of `fig` whose axis titles, facet titles and legend entries are wrapped to
    about `chars` characters across the full plot width (a facet's share of it for its own
    titles), so none runs off a figure drawn that narrow (~60 at 540 px wide, the overview
    at a 1,000 px window). Exports keep the full figure."""
    fig = go.Figure(fig)
    for t in _legend_items(fig):
        t.name = _wrap(t.name, chars + 6)
    font = {} if font_size is None else {"title_font_size": font_size}
    fig.for_each_xaxis(lambda a: a.update(
        title_text=_wrap(a.title.text, round(0.85 * chars * _width(a))), automargin=True,
        **font))
    fig.for_each_yaxis(lambda a: a.update(title_text=_wrap(a.title.text, chars + 10),
                                          automargin=True, **font))
    # facets side by side share the width: count columns (distinct x domains), not axes
    # (a 2 x 2 grid has four x axes but two columns)
    n_cols = max(1, len({tuple(a.domain or (0, 1)) for a in fig.select_xaxes()}))
    for a in _facet_titles(fig):
        a.update(text=_wrap(a.text, round(0.85 * chars / n_cols)))
        if font_size is not None:
            a.update(font_size=font_size)
    _clear_legend(fig, chars)
    return fig


# Plotly's drawn sizes (px, font 13 legend and 16 facet titles): a horizontal legend's box
# is 10 px of padding plus 20 per row, an item about 45 px plus 7.8 per character; a facet
# title line is 22 px high. PAGE_WIDTH: the figure width `chars` = 60 stands for (the
# overview at a 1,000 px window).
LEGEND_PAD, LEGEND_ROW, FACET_LINE, PAGE_WIDTH = 10, 20, 22, 540


def _legend_rows(fig: go.Figure, width: float) -> int:
    """How many rows a horizontal legend of `fig` takes at `width` px (an estimate that
    errs long: a spare row costs 20 px of white space, a missing one an overlap)."""
    row, rows = 0.0, 1
    for t in _legend_items(fig):
        w = 45 + 7.8 * max(len(x) for x in re.sub(r"&\w+;|&#\d+;", "x", t.name).split("<br>"))
        if row and row + w > width:
            rows, row = rows + 1, 0.0
        row += w
    return rows


def _clear_legend(fig: go.Figure, chars: int) -> None:
    """Raise the top margin of `fig` so its facet titles, which grow upwards from the panels
    as they wrap, stay below a horizontal legend placed from the top of the figure (the
    template's, at a fraction of the height): at 1,000 px the contrast's two-line titles
    ran into its legend (issue 27)."""
    lay, tpl = fig.layout, fig.layout.template.layout
    leg = lay.legend
    yref = leg.yref or tpl.legend.yref
    orient = leg.orientation or tpl.legend.orientation
    y = leg.y if leg.y is not None else tpl.legend.y
    heads = [_lines(a.text) for a in _facet_titles(fig)]
    if not heads or not _legend_items(fig) or yref != "container" or orient != "h" or y is None:
        return
    height = lay.height or 450  # Plotly's default: what the app draws without a height
    width = PAGE_WIDTH * chars / 60 - 100  # less the side margins
    need = ((1 - y) * height + LEGEND_PAD + LEGEND_ROW * _legend_rows(fig, width)
            + FACET_LINE * max(heads) + 6)
    top = lay.margin.t if lay.margin.t is not None else tpl.margin.t or 0
    if need > top:
        fig.update_layout(margin_t=round(need))


def compact(fig: go.Figure, chars: int = 28) -> go.Figure:
    """A copy of `fig` for a narrow column (two figures side by side at 1,000 px: ~260 px
    each): titles wrapped (fit_titles) in a smaller font, no title (the page shows it above
    the chart, where it wraps), legend entries one per line at the top and the top margin
    sized to hold them and the facet titles. Exports keep the full figure."""
    fig = fit_titles(fig, chars, font_size=12)
    legend_lines = sum(_lines(t.name) for t in _legend_items(fig))
    head_lines = max([_lines(a.text) for a in _facet_titles(fig)] or [0])
    top = 8 + 17 * legend_lines + 15 * head_lines + (6 if head_lines else 0)
    fig.update_layout(title=None, margin=dict(l=40, r=12, t=max(top, 16), b=40),
                      legend=dict(orientation="v", yref="container", y=1, yanchor="top", x=0,
                                  xanchor="left", font_size=11, tracegroupgap=0))
    return fig


def _values(fig: go.Figure, axis: str, letter: str) -> list[float] | None:
    """Every plotted value on the axis `axis` (e.g. "y", "y2") of bar and scatter traces,
    error bars included; None when another kind of trace draws on it (a histogram bins in
    the browser, a heatmap's axis is categorical)."""
    out = []
    for t in fig.data:
        if (getattr(t, f"{letter}axis", None) or letter) != axis:
            continue
        if t.type not in ("bar", "scatter"):
            return None
        vals = getattr(t, letter)
        if vals is None:
            continue
        for v in vals:
            if isinstance(v, (int, float)) and v == v:
                out.append(float(v))
            elif v is not None:
                return None  # categories: nothing to share
        err = getattr(t, f"error_{letter}", None)
        if err is not None and err.array is not None:
            out += [float(v) + float(e) for v, e in zip(vals, err.array) if e == e]
    return out


def share_axes(a: go.Figure, b: go.Figure) -> tuple[go.Figure, go.Figure]:
    """Copies of two figures of one kind (the same figure of two runs) whose linear value
    axes span the same range, so two runs compare at a glance (0-2.5% beside 0-8% read as
    alike). Log, date and categorical axes, and axes a histogram or heatmap draws on, are
    left to Plotly."""
    a, b = go.Figure(a), go.Figure(b)
    for name in [k for k in a.layout if k.startswith(("xaxis", "yaxis"))]:
        letter, suffix = name[0], name[5:]
        ax_a, ax_b = a.layout[name], b.layout[name] if name in b.layout else None
        if ax_b is None or ax_a.type in ("log", "date", "category") or \
                ax_b.type in ("log", "date", "category"):
            continue
        va, vb = _values(a, letter + suffix, letter), _values(b, letter + suffix, letter)
        if not va or not vb:
            continue
        lo, hi = min(0.0, *va, *vb), max(*va, *vb)
        if hi <= lo:
            continue
        pad = 0.05 * (hi - lo)
        lo, hi = lo - (pad if lo < 0 else 0), hi + pad
        # a builder's own range (e.g. 0-100% for shares) is kept, widened to the other's
        preset = [list(ax.range) for ax in (ax_a, ax_b) if ax.range]
        if preset:
            lo, hi = min(r[0] for r in preset), max(r[1] for r in preset)
            lo, hi = min(lo, *va, *vb), max(hi, *va, *vb)
        rng = [lo, hi]
        a.layout[name].range = rng
        b.layout[name].range = rng
    return a, b
