"""Figures across runs: the evolution over a checkpoint series and the side-by-side contrast
of two runs (e.g. the RL pair against the SFT pair)."""

from __future__ import annotations

from plotly.subplots import make_subplots

from core import queries as Q
from core.figures.spec import (
    JS_AXIS,
    LN2,
    LOG_JS_TICKS,
    FigureSpec,
    _bar_range,
    _coloured,
    _jsonable,
    _line_style,
    _spec,
    pct_small,
)
from core.figures.style import NEUTRAL, PERCENTILE_COLOURS, RUN_COLOURS, esc, num, pct


def evolution(con, series, *, high=0.1) -> FigureSpec:
    params = dict(series_runs=list(series), high=high)
    df = Q.evolution(con, **params)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.62, 0.38])
    for p_, colour in PERCENTILE_COLOURS.items():
        fig.add_scatter(x=df.step, y=df[p_], mode="lines+markers", name=p_ + " js",
                        line=dict(color=colour, width=2), customdata=[esc(r) for r in df.run],
                        hovertemplate="%{customdata} (step %{x}): %{y:.3f}", row=1, col=1)
    fig.add_scatter(x=df.step, y=df.jaccard_final, mode="lines+markers", name="Jaccard with final",
                    line=dict(color=NEUTRAL, width=2), row=2, col=1)
    fig.update_yaxes(title_text="js (nats)", row=1, col=1)
    fig.update_yaxes(title_text=esc(f"Jaccard, js > {high:g}"), range=[0, 1.05], row=2, col=1)
    fig.update_xaxes(title_text="checkpoint (series step)", row=2, col=1)
    fig.update_layout(height=600)
    if df.empty:  # none of the series runs is opened: overview leaves it out
        return _spec("evolution", "Evolution across checkpoints", "no data", fig, df,
                     "evolution", params)
    a, b = df.iloc[0], df.iloc[-1]
    cap = (f"Across {len(df)} checkpoints p95 js goes from {num(a.p95)} (step {a.step}) to "
           f"{num(b.p95)} (step {b.step}); Jaccard of step {a.step}'s high-js positions with "
           f"the final's: {num(a.jaccard_final)}" + _own_accuracy(df))
    summ = {"p95_first": a.p95, "p95_last": b.p95, "jaccard_first": a.jaccard_final}
    return _spec("evolution", "Evolution across checkpoints", cap, fig, df, "evolution", params,
                 {k: _jsonable(v) for k, v in summ.items()})


def _own_accuracy(df) -> str:
    """The caption's clause on each checkpoint's own accuracy and where each comes from
    (Q.evolution's accuracy, accuracy_source): never the accuracy of another model's traces."""
    rows = df.drop_duplicates("run")
    if "accuracy" not in rows or rows.empty:
        return ""
    vals = ", ".join(f"step {s} {pct(a) if a == a and a is not None else 'not measured'}"
                     for s, a in zip(rows.step, rows.accuracy, strict=True))
    by: dict = {}
    for s, src in zip(rows.step, rows.accuracy_source, strict=True):
        by.setdefault(src, []).append(str(s))
    srcs = "; ".join(f"{src}: step{'s' if len(st) > 1 else ''} {', '.join(st)}"
                     for src, st in by.items())
    return f". Each checkpoint's own accuracy: {vals} ({srcs})"


def contrast(con, run, other, *, near_zero=0.01, high=0.1, bins=60) -> FigureSpec:
    params = dict(run_a=run, run_b=other, near_zero=near_zero, high=high)
    df = Q.contrast(con, **params)
    cdf = Q.histogram(con, bins=bins, lo=1e-6, hi=LN2, log=True, runs=[run, other], by="run")
    shares = [("share_near_zero", f"js < {near_zero:g}"), ("share_high", f"js > {high:g}")]
    # the two shares in panels of their own: 0.5% vs 1.7% on the 0-100% axis of the 90%
    # bars would be two invisible slivers
    fig = make_subplots(rows=1, cols=3, column_widths=[0.5, 0.25, 0.25], horizontal_spacing=0.1,
                        subplot_titles=["cumulative share by js",
                                        *[esc(f"share with {t}") for _, t in shares]])
    for i, r in enumerate([run, other]):
        d = cdf[cdf.run == r]
        style = _coloured(_line_style(i, len(d)), RUN_COLOURS[i])
        fig.add_scatter(x=d.bin_right, y=d.cdf, name=esc(r), legendgroup=str(i), line_shape="hv",
                        **style,
                        hovertemplate="js < %{x:.2g}: %{y:.1%}", row=1, col=1)
    names = [esc(r) for r in df.run]
    for col, (field, label) in enumerate(shares, start=2):
        v = df[field].astype(float).tolist()
        fig.add_bar(x=names, y=v, marker_color=RUN_COLOURS[:len(v)], showlegend=False,
                    text=[pct_small(x) for x in v], textposition="outside", cliponaxis=False,
                    hovertemplate=f"%{{x}}: %{{y:.2%}} of tokens with {esc(label)}<extra></extra>",
                    row=1, col=col)
        fig.update_yaxes(range=_bar_range(v), tickformat=".1%" if max(v) < 0.1 else ".0%",
                         row=1, col=col)
    fig.update_xaxes(type="log", title_text=JS_AXIS + ", log scale", row=1, col=1,
                     **LOG_JS_TICKS)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], row=1, col=1)
    fig.update_layout(legend_itemsizing="constant")
    a, b = df.iloc[0], df.iloc[1]
    cap = (f"Share of tokens with js < {near_zero:g}: {pct(a.share_near_zero)} ({run}) vs "
           f"{pct(b.share_near_zero)} ({other}); js > {high:g}: {pct(a.share_high)} vs "
           f"{pct(b.share_high)}")
    return _spec("contrast", f"Contrast: {run} vs {other}", cap, fig, df, "contrast", params,
                 {"share_near_zero": [_jsonable(a.share_near_zero), _jsonable(b.share_near_zero)],
                  "share_high": [_jsonable(a.share_high), _jsonable(b.share_high)]})
