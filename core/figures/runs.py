"""Figures across runs: the evolution over a checkpoint series and the side-by-side contrast
of two runs (e.g. the RL pair against the SFT pair). Like with like by default: each run on
its own tuned model's samples (a series run on the final model's samples it re-scored), as
core.queries.sampler resolves `sampled_from` per run; "split" draws one set per sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotly.subplots import make_subplots

from core import queries as Q
from core.figures.spec import (
    CI_NOTE,
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
    with_ci,
)
from core.figures.style import (
    NEUTRAL,
    PERCENTILE_COLOURS,
    RUN_COLOURS,
    esc,
    num,
    pct,
    source_label,
)
from core.queries import sampler


def evolution(con, series, *, high=0.1, sampled_from=None) -> FigureSpec:
    params = dict(series_runs=list(series), high=high, sampled_from=sampled_from)
    df = Q.evolution(con, **params)
    # beside the thresholded Jaccard: its size bound and the overlap of equal-size sets
    ov = Q.evolution_overlap(con, **params)
    on = [c for c in ("sampled_from", "run") if c in df and c in ov]
    df = df.merge(ov[on + ["n_final", "jaccard_bound", "top_n", "jaccard_top_n",
                           "jaccard_top_n_lo", "jaccard_top_n_hi"]], on=on, how="left")
    keys = (df["sampled_from"].drop_duplicates().tolist() if "sampled_from" in df else []) or [None]
    fig = make_subplots(rows=2, cols=len(keys), shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.62, 0.38], horizontal_spacing=0.08,
                        subplot_titles=None if keys == [None] else
                        [source_label(k) for k in keys] + [""] * len(keys))
    for c, k in enumerate(keys, start=1):
        d = df if k is None else df[df["sampled_from"] == k]
        for p_, colour in PERCENTILE_COLOURS.items():
            fig.add_scatter(x=d.step, y=d[p_], mode="lines+markers", name=p_ + " js",
                            line=dict(color=colour, width=2), legendgroup=p_, showlegend=c == 1,
                            customdata=[esc(r) for r in d.run],
                            hovertemplate="%{customdata} (step %{x}): %{y:.3f}", row=1, col=c)
        fig.add_scatter(x=d.step, y=d.jaccard_final, mode="lines+markers",
                        name="Jaccard with final", legendgroup="j", showlegend=c == 1,
                        line=dict(color=NEUTRAL, width=2), row=2, col=c)
        fig.add_scatter(x=d.step, y=d.jaccard_bound, mode="lines",
                        name="largest Jaccard the two set sizes allow", legendgroup="jb",
                        showlegend=c == 1, line=dict(color=NEUTRAL, width=1.5, dash="dot"),
                        row=2, col=c)
        fig.add_scatter(x=d.step, y=d.jaccard_top_n, mode="lines+markers",
                        name="Jaccard of equal-size sets (top-N by js, N = final's)",
                        legendgroup="jn", showlegend=c == 1, marker_symbol="square",
                        line=dict(color="#000000", width=2, dash="dash"), row=2, col=c)
        fig.update_yaxes(range=[0, 1.05], row=2, col=c)
        fig.update_xaxes(title_text="checkpoint (series step)", row=2, col=c)
    fig.update_yaxes(title_text="js (nats)", row=1, col=1)
    fig.update_yaxes(title_text=esc(f"Jaccard, js > {high:g}"), row=2, col=1)
    fig.update_layout(height=600)
    traces = _series_traces(con, list(series), sampled_from)
    if df.empty:  # none of the series runs is opened: overview leaves it out
        return _spec("evolution", "Evolution across checkpoints", "no data", fig, df,
                     "evolution", params)
    parts, summ = [], {}
    for k in keys:
        d = df if k is None else df[df["sampled_from"] == k]
        a, b = d.iloc[0], d.iloc[-1]
        parts.append(("" if k is None else f"{k}-sampled: ") + f"p95 js goes from "
                     f"{num(a.p95)} (step {a.step}) to {num(b.p95)} (step {b.step}); Jaccard "
                     f"of step {a.step}'s high-js positions with the final's: "
                     f"{num(a.jaccard_final)} (at most {num(a.jaccard_bound)} for "
                     f"{_count(a.n_high)} high-js tokens against the final's "
                     f"{_count(a.n_final)}); of equal-size sets, its top-{_count(a.top_n)} by "
                     f"js: {_top_n(a)}{_later_top_n(d)} (the convergence measure: set sizes "
                     f"do not bound it); share with js > {high:g} against the final's: "
                     + "; ".join(f"step {r.step} " + with_ci(_pp, r.diff_final,
                                                                 r.diff_final_lo,
                                                                 r.diff_final_hi)
                                 for r in d.iloc[:-1].itertuples()))
        summ[str(k) if k else "all"] = {"p95_first": _jsonable(a.p95),
                                        "p95_last": _jsonable(b.p95),
                                        "jaccard_first": _jsonable(a.jaccard_final),
                                        "jaccard_bound_first": _jsonable(a.jaccard_bound),
                                        "jaccard_top_n_first": _jsonable(a.jaccard_top_n)}
    n = df["run"].nunique()
    cap = (f"Across {n} checkpoints " + "; ".join(parts) + _own_accuracy(df)
           + f" (full-vocabulary js; {CI_NOTE})")
    summ = summ["all"] if keys == [None] else summ
    return _spec("evolution", "Evolution across checkpoints", cap, fig, df, "evolution", params,
                 summ, traces=traces)


def _top_n(r) -> str:
    return with_ci(num, r.jaccard_top_n, r.jaccard_top_n_lo, r.jaccard_top_n_hi)


def _later_top_n(d) -> str:
    """The equal-size overlap of the checkpoints between the first and the final."""
    mid = d.iloc[1:-1]
    if mid.empty:
        return ""
    return (f", at steps {'/'.join(str(s) for s in mid.step)}: "
            + ", ".join(_top_n(r) for r in mid.itertuples()))


def _pp(x) -> str:
    """A difference of shares in percentage points: 0.0012 -> '+0.12 pp'."""
    return "n/a" if x is None or x != x else f"{100 * float(x):+.2f} pp"


def _count(x) -> str:
    return "n/a" if x is None or x != x else f"{int(x):,}"


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


def _series_traces(con, series: list[str], sampled_from) -> str:
    """Which traces the evolution used, in words: a series' runs mostly share theirs."""
    last = series[-1:]
    if len(series) <= 2:
        return sampler.describe(con, series, sampled_from)
    first = sampler.describe(con, series[:1], sampled_from)
    rest = {sampler.describe(con, [r], sampled_from) for r in series[1:-1]}
    head = (f"{series[0]} .. {series[-2]} {first}" if rest == {first}
            else sampler.describe(con, series[:-1], sampled_from))
    return f"{head}; {last[0]} {sampler.describe(con, last, sampled_from)}"


def contrast(con, run, other, *, near_zero=0.01, high=0.1, bins=60,
             sampled_from=None) -> FigureSpec:
    """`run` against `other`, each on the traces sampled_from chooses for it (default: its own
    tuned model's samples); "split": one line and bar per run and sampler."""
    params = dict(run_a=run, run_b=other, near_zero=near_zero, high=high,
                  sampled_from=sampled_from)
    df = Q.contrast(con, **params)
    hist = dict(bins=bins, lo=1e-6, hi=LN2, log=True)
    if sampled_from == sampler.SPLIT:
        cdf = pd.concat([Q.histogram(con, runs=[r], sampled_from=sampler.SPLIT, **hist)
                         .assign(run=r) for r in (run, other)], ignore_index=True)
        series = [(r, k, f"{r}, {k}-sampled") for r, k in zip(df.run, df.sampled_from,
                                                                strict=True)]
    else:
        cdf = Q.histogram(con, runs=[run, other], by="run", sampled_from=sampled_from, **hist)
        series = [(r, None, r) for r in (run, other)]
    shares = [("share_near_zero", f"js < {near_zero:g}"), ("share_high", f"js > {high:g}")]
    # the two shares in panels of their own: 0.5% vs 1.7% on the 0-100% axis of the 90%
    # bars would be two invisible slivers
    fig = make_subplots(rows=1, cols=3, column_widths=[0.5, 0.25, 0.25], horizontal_spacing=0.1,
                        subplot_titles=["cumulative share by js",
                                        *[esc(f"share with {t}") for _, t in shares]])
    colours = [RUN_COLOURS[[run, other].index(r) % 2] for r, _, _ in series]
    for i, ((r, k, name), colour) in enumerate(zip(series, colours, strict=True)):
        d = cdf[(cdf.run == r) & ((cdf.sampled_from == k) if k is not None else True)]
        style = _coloured(_line_style(i, len(d)), colour)
        fig.add_scatter(x=d.bin_right, y=d.cdf, name=esc(name), legendgroup=str(i),
                        line_shape="hv", **style,
                        hovertemplate="js < %{x:.2g}: %{y:.1%}", row=1, col=1)
    names = [esc(name) for _, _, name in series]
    for col, (field, label) in enumerate(shares, start=2):
        v = df[field].astype(float).tolist()
        fig.add_bar(x=names, y=v, marker_color=colours, showlegend=False,
                    text=[pct_small(x) for x in v], textposition="outside", cliponaxis=False,
                    hovertemplate=f"%{{x}}: %{{y:.2%}} of tokens with {esc(label)}<extra></extra>",
                    row=1, col=col)
        fig.update_yaxes(range=_bar_range(v), tickformat=".1%" if max(v, default=0) < 0.1
                         else ".0%", row=1, col=col)
    fig.update_xaxes(type="log", title_text=JS_AXIS + ", log scale", row=1, col=1,
                     **LOG_JS_TICKS)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], row=1, col=1)
    fig.update_layout(legend_itemsizing="constant")
    nz = " vs ".join(f"{pct(a)} ({n})" for a, (_, _, n) in zip(df.share_near_zero, series,
                                                                  strict=True))
    hi = " vs ".join(with_ci(pct_small, a, lo, up) for a, lo, up in zip(
        df.share_high, df.get("share_high_lo", df.share_high * np.nan),
        df.get("share_high_hi", df.share_high * np.nan), strict=True))
    cap = f"Share of tokens with js < {near_zero:g}: {nz}; js > {high:g}: {hi}"
    ratio = {}
    if "high_ratio" in df and len(df) == 2:
        a = df.iloc[0]
        ratio = {c: _jsonable(a[c]) for c in ("high_ratio", "high_ratio_lo",
                                              "high_ratio_hi")}
        cap += (f"; ratio {run} / {other} of the share above {high:g}: "
                f"{with_ci(num, a.high_ratio, a.high_ratio_lo, a.high_ratio_hi)}"
                " (an interval that excludes 1 says the densities differ)")
    cap += f" (full-vocabulary js; {CI_NOTE})"
    return _spec("contrast", f"Contrast: {run} vs {other}", cap, fig, df, "contrast", params,
                 {"share_near_zero": [_jsonable(a) for a in df.share_near_zero],
                  "share_high": [_jsonable(a) for a in df.share_high],
                  "share_high_lo": [_jsonable(a) for a in df.get("share_high_lo", [])],
                  "share_high_hi": [_jsonable(a) for a in df.get("share_high_hi", [])],
                  **ratio},
                 traces=sampler.describe(con, [run, other], sampled_from))
