"""Figures that show how much an answer moves under another reasonable choice
(core/queries/robustness.py): full against truncated js, and js by absolute position beside
the relative profile. The evolution figure's size bound and equal-size overlap are drawn in
core/figures/runs.py from the same module's evolution_overlap."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.figures.spec import (
    CI_NOTE,
    FigureSpec,
    _bar_range,
    _ci,
    _colour,
    _gk,
    _keys,
    _part,
    _profile_lines,
    _sources,
    _spec,
    pct_small,
)
from core.figures.style import NEUTRAL, esc, num, source_label
from core.queries import robustness as R

NOT_STORED = "not stored in this run"


def _metric_label(metric: str, top_p) -> str:
    if metric == "js":
        return "js (full)"
    return f"{metric} (top-p {top_p:g})" if top_p == top_p and top_p is not None else metric


def truncation(con, run, *, sampled_from=None, high=0.1) -> FigureSpec:
    """Full js against js on top-p truncated distributions, one bar group per column: the
    share of tokens above `high`, the Spearman rank correlation with full js and the Jaccard
    overlap of the high sets (thresholded, and equal-size top-N). Columns the run does not
    store are named on the axis and marked 'not stored in this run'."""
    sf, by, traces = _sources(con, run, sampled_from)
    params = dict(run=run, high=high, sampled_from=sf, by=by)
    df = R.truncation_agreement(con, **params)
    keys = _keys(df, by)
    panels = [("share_high", esc(f"share above {high:g}")),  # short: 4 panels fit 260 px
              ("spearman", "rank correlation with js"),
              ("jaccard_high", esc(f"Jaccard above {high:g}")),
              ("jaccard_top_n", "Jaccard of top-N sets")]
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.12, vertical_spacing=0.2,
                        subplot_titles=[t for _, t in panels])
    order = list(dict.fromkeys(df["metric"]))
    labels = {m: _metric_label(m, df.loc[df.metric == m, "top_p"].iloc[0]) for m in order}
    ticks = {m: ("full js" if m == "js" else labels[m].split("(")[-1].rstrip(")"))
             for m in order}
    missing = [m for m in order if not df.loc[df.metric == m, "stored"].any()]
    for c, (col, _) in enumerate(panels):
        row, cc = c // 2 + 1, c % 2 + 1
        for i, k in enumerate(keys):
            d = _part(df, by, k).set_index("metric").reindex(order)
            v = [float(x) if x == x and x is not None else None for x in d[col]]
            fig.add_bar(x=[esc(ticks[m]) for m in order], y=v,
                        marker_color=_colour(k, i) if k is not None else NEUTRAL,
                        name=esc(source_label(k)) if k is not None else "",
                        legendgroup=str(k), showlegend=c == 0 and k is not None,
                        customdata=[esc(m) for m in order],
                        text=[("" if x is None else pct_small(x) if col == "share_high"
                               else f"{x:.2f}") for x in v],
                        textposition="outside", cliponaxis=False,
                        hovertemplate="%{customdata}: %{y:.3g}<extra></extra>", row=row, col=cc)
        vals = df[col].astype(float)
        rng = (_bar_range(vals.tolist()) if col == "share_high"
               else [min(0.0, float(vals.min()) if vals.notna().any() else 0.0) * 1.15, 1.15])
        fig.update_yaxes(range=rng, tickformat=".1%" if col == "share_high" else None,
                         row=row, col=cc)
        ax = "" if c == 0 else str(c + 1)
        for m in missing:
            fig.add_annotation(x=esc(ticks[m]), y=0, text=esc(NOT_STORED), textangle=-90,
                               showarrow=False, yanchor="bottom", font_size=10,
                               xref=f"x{ax}", yref=f"y{ax}")
    fig.update_layout(barmode="group", height=680, uniformtext=dict(minsize=10, mode="show"))
    cap, summ = _caption(df, by, keys, labels, high, missing)
    spec = _spec("truncation", "Truncated js: how much the answer moves", cap, fig, df,
                 "truncation_agreement", params, summ, traces=traces)
    spec.run = str(run)
    return spec


def _caption(df, by, keys, labels, high, missing) -> tuple[str, dict]:
    parts, summ = [], {}
    for k in keys:
        d = _part(df, by, k).set_index("metric")
        if "js" not in d.index or d.loc["js", "n"] is None or not d.loc["js", "n"] == d.loc[
                "js", "n"]:
            continue
        bits = [f"js > {high:g} on {_ci(d.loc['js'], 'share_high', pct_small)} of tokens"]
        got = {}
        for m in d.index[d["stored"].astype(bool)]:
            if m == "js":
                continue
            r = d.loc[m]
            bits.append(f"{labels[m]} on {_ci(r, 'share_high', pct_small)}, rank correlation "
                        f"{num(r.spearman)}, Jaccard of high sets "
                        f"{_ci(r, 'jaccard_high', num)} "
                        f"(equal-size top-{int(r.top_n)}: {num(r.jaccard_top_n)})")
            got[m] = {c: None if r[c] != r[c] else float(r[c])
                      for c in ("share_high", "spearman", "jaccard_high", "jaccard_top_n")}
        summ[_gk(k)] = {"share_high_js": float(d.loc["js", "share_high"]), **got}
        parts.append(("" if k is None else f"{k}-sampled: ") + "; ".join(bits))
    cap = " | ".join(parts) or "no tokens"
    if parts:
        cap += f" ({CI_NOTE})"
    if missing:
        cap += f"; {', '.join(missing)} {NOT_STORED} (written before they existed)"
    return cap, summ


def position_absolute(con, run, *, sampled_from=None, high=0.1, bins=20) -> FigureSpec:
    """Mean and p90 js against the token position in the response (bins of whole tokens),
    beside the relative-position profile: late bins hold only the long traces, so each
    point's token count is in its hover and the caption names the last bin's."""
    sf, by, traces = _sources(con, run, sampled_from)
    params = dict(bins=bins, metric="js", high=high, runs=[run], sampled_from=sf, by=by)
    df = R.position_profile_abs(con, **params)
    keys, fig, parts, summ = _keys(df, by), go.Figure(), [], {}
    for i, k in enumerate(keys):
        d = _part(df, by, k)
        _profile_lines(fig, d, k, i, lambda stat: (
            f"tokens %{{customdata[0]}}-%{{customdata[1]}}: {stat} js %{{y:.3f}} "
            "(%{customdata[2]} tokens)<extra></extra>"),
            customdata=d[["bin_left", "bin_right", "n"]].to_numpy())
        if len(d):
            lo = d.loc[d["mean"].idxmin()]
            first, last = d.iloc[0], d.iloc[-1]
            s = {"first": float(first["mean"]), "min": float(lo["mean"]),
                 "min_at": int(lo.bin_left), "last": float(last["mean"]),
                 "last_at": int(last.bin_left), "last_n": int(last.n),
                 "width": int(first.bin_right - first.bin_left)}
            summ[_gk(k)] = s
            parts.append(("" if k is None else f"{k}-sampled: ")
                         + f"{num(s['first'])} in tokens 0-{s['width'] - 1}, lowest "
                         f"{num(s['min'])} from token {s['min_at']}, {num(s['last'])} from "
                         f"token {s['last_at']} ({s['last_n']} tokens)")
    fig.update_layout(xaxis=dict(title="position in the response (tokens)", rangemode="tozero"),
                      yaxis_title="js (nats)")
    cap = "Mean js by absolute position: " + "; ".join(parts or ["no tokens"])
    return _spec("position_profile_abs", "Position: js by token position", cap, fig, df,
                 "position_profile_abs", params, {"mean_js": summ}, traces=traces)
