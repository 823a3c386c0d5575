"""What every figure builder shares: the FigureSpec, which traces a figure uses (the
sampled_from choice of core.queries.sampler, named in every caption) and grouping by the model
that sampled them, the js axis, line styles that stay apart without colour, value axes fitted
to the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.figures.style import (
    MODEL_COLOURS,
    NEUTRAL,
    RUN_COLOURS,
    SOURCE_ORDER,
    esc,
    source_label,
    styled,
)
from core.queries import sampler

LN2 = math.log(2)
JS_AXIS = "JS divergence (nats; max ln 2 = 0.693)"


@dataclass
class FigureSpec:
    id: str                 # slug, used as the file name of every export
    title: str
    caption: str            # one line: what it shows and its key number (plain text)
    figure: go.Figure
    data: pd.DataFrame      # the table behind the figure
    query: str              # the core.queries function that produced `data`
    params: dict            # the parameters passed to it (JSON-able)
    summary: dict = field(default_factory=dict)  # the numbers quoted in the caption
    run: str = ""           # the run the figure is about: export file names and PDF metadata


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v


def _run_of(params: dict) -> str:
    """The run a figure is about, read off its query parameters (overview() sets it too)."""
    runs = params.get("runs") or params.get("series_runs", [])[-1:] or [params.get("run_a", "")]
    return str(runs[0])


def _spec(id, title, caption, fig, df, query, params, summary=None,
          traces: str = "") -> FigureSpec:
    """`traces`: which traces the figure used, in words (sampler.describe): it ends the
    caption and is kept in the summary."""
    params = {k: _jsonable(v) for k, v in params.items()}
    summary = dict(summary or {})
    if traces:
        caption = f"{caption}; {traces}"
        summary["traces"] = traces
    return FigureSpec(id, title, caption, styled(fig, title), df.reset_index(drop=True),
                      query, params, summary, _run_of(params))


def _sources(con, run, sampled_from=None, by=None) -> tuple[str, str | None, str]:
    """(choice, by, traces) of a figure of one run: the sampled_from choice resolved for the
    run (None: tuned when it has tuned-sampled traces, core.queries.sampler), the grouping it
    implies ("split": by sampled_from) and the traces it uses, in words. by="sampled_from"
    with the default is "split"."""
    if sampled_from is None and by == "sampled_from":
        sampled_from = sampler.SPLIT
    choice = sampler.resolve(con, [run], sampled_from)[str(run)]
    return (choice, "sampled_from" if choice == sampler.SPLIT else by,
            sampler.describe(con, [run], choice))


def _keys(df: pd.DataFrame, by: str | None) -> list:
    """Group keys in display order (tuned-sampled first); [None] when not grouped."""
    if not by:
        return [None]
    present = df[by].dropna().unique().tolist() if by in df else []
    keys = [k for k in SOURCE_ORDER if k in present] + sorted(k for k in present
                                                            if k not in SOURCE_ORDER)
    return keys or [None]  # no rows at all: one empty panel, not zero columns


def _part(df, by, key):
    return df if key is None else df[df[by] == key]


def _colour(key, i=0):
    return MODEL_COLOURS.get(key, RUN_COLOURS[i % 2]) if key is not None else NEUTRAL


def _gk(key) -> str:
    """A group key as a summary key: 'all' when not grouped."""
    return "all" if key is None else str(key)


def _name(key, default="all tokens"):
    return default if key is None else source_label(key)


def _per_group(values: dict, fmt) -> str:
    """'87.1%' or '87.1% (tuned-sampled) / 80.2% (base-sampled)'."""
    if list(values) == [None]:
        return fmt(values[None])
    return " / ".join(f"{fmt(v)} ({k}-sampled)" for k, v in values.items())


def _facets(keys, **kw):
    """One column per group (or a single plot), group names as subplot titles."""
    if keys == [None]:
        return make_subplots(rows=1, cols=1)
    return make_subplots(rows=1, cols=len(keys), subplot_titles=[source_label(k) for k in keys],
                         horizontal_spacing=0.08, **kw)


def _thresholds(fig, near_zero, high, log=False):
    """Dotted lines at the two cut-offs (labelled by hand: Plotly misplaces vline labels on
    log axes). The labels sit one line apart in height: side by side they overlapped in a
    narrow figure (0.01 and 0.1 are close on a 1,000 px page)."""
    for x, label, y in [(near_zero, f"near-zero {near_zero:g}", 1.0),
                        (high, f"high {high:g}", 0.93)]:
        fig.add_vline(x=x, line=dict(color="#888888", dash="dot", width=1))
        fig.add_annotation(x=math.log10(x) if log else x, y=y, yref="paper", text=esc(label),
                           showarrow=False, xanchor="left", yanchor="top", font_size=11)


LOG_JS_TICKS = dict(tickvals=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, LN2],
                    ticktext=["1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "ln 2"])


DASHES = ("solid", "dash", "dot", "dashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up")  # white, outlined in the line colour


def _line_style(i: int, n_points: int, every: int = 8) -> dict:
    """Line i of several on one axis, told apart without colour: its own dash and marker
    symbol, markers on every `every`-th point (shifted per line, so they do not sit on each
    other); the first line is drawn wider, so it shows around a dashed one on top of it."""
    sizes = [9 if (j + i * every // 2) % every == every - 1 else 0 for j in range(n_points)]
    return dict(mode="lines+markers", line=dict(dash=DASHES[i % 4], width=3.5 if i == 0 else 2),
                marker=dict(symbol=SYMBOLS[i % 4], size=sizes, color="white",
                            line=dict(width=2)))


def _coloured(style: dict, colour: str) -> dict:
    """A _line_style in one colour: the line and the outline of its (white) markers."""
    style["line"]["color"] = style["marker"]["line"]["color"] = colour
    return style


def _profile_lines(fig: go.Figure, d: pd.DataFrame, key, i: int, hover, customdata=None):
    """A position profile's mean (solid) and p90 (dashed) js lines for one group `key` of
    `d` (bins with bin_left, bin_right); `hover(stat)` gives each line's hovertemplate."""
    mid = (d.bin_left + d.bin_right) / 2
    for stat, dash in [("mean", "solid"), ("p90", "dash")]:
        fig.add_scatter(x=mid, y=d[stat], mode="lines+markers", name=f"{stat} js"
                        + ("" if key is None else f", {source_label(key)}"),
                        line=dict(color=_colour(key, i), dash=dash, width=2), marker_size=5,
                        customdata=customdata, hovertemplate=hover(stat))


def _bar_range(values, pad: float = 1.15) -> list[float]:
    """A value axis from 0 to `pad` x the largest value: small shares fill the panel instead
    of sitting at the bottom of a 0-100% axis (room above for the value labels)."""
    top = max([float(v) for v in values if v == v] or [0.0])
    return [0.0, pad * top if top > 0 else 1.0]


def pct_small(x) -> str:
    """A share that may be well below 1%, as a bar label: 0.00492 -> '0.49%'."""
    return "n/a" if x is None or x != x else f"{100 * float(x):.2f}%"


def with_ci(fmt, x, lo, hi) -> str:
    """A value with its prompt-clustered 95% interval, as captions quote it:
    '0.44% [0.30%, 0.61%]' (the interval left out when there is none)."""
    if lo is None or hi is None or lo != lo or hi != hi:
        return fmt(x)
    return f"{fmt(x)} [{fmt(lo)}, {fmt(hi)}]"


def _ci(row, col, fmt) -> str:
    """row[col] with its interval columns col_lo / col_hi (a frame's first row or a row)."""
    if isinstance(row, pd.DataFrame):
        if not len(row):
            return fmt(None)
        row = row.iloc[0]
    return with_ci(fmt, row.get(col), row.get(f"{col}_lo"), row.get(f"{col}_hi"))



CI_NOTE = ("brackets: 95% intervals from a bootstrap over prompts (1,000 resamples, "
           "fixed seed)")


def _summary_by(df, by, keys, cols) -> dict:
    rows = {k: _part(df, by, k) for k in keys}
    return {_gk(k): {c: _jsonable(d[c].iloc[0]) if len(d) else None
                                          for c in cols} for k, d in rows.items()}
