"""One builder per analysis 1-4 of docs/paper.md: query -> Plotly figure + caption (analysis
5 and the URIAL categories: ranking.py; 6 and 7, across runs: runs.py).

Every builder takes the connection of core.queries.open_runs and a run name, and returns a
FigureSpec. `sampled_from` chooses the traces (core.queries.sampler: default tuned-sampled
when the run has them, the paper's setting; the caption ends with which traces it used);
"split" (or `by="sampled_from"`) splits the figure by the model that sampled the traces
(colour = that model, or one facet per model where colour already means something else).
Captions are plain text (not HTML): escape them where they are rendered as HTML.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core import queries as Q
from core.figures.spec import (
    CI_NOTE,
    JS_AXIS,
    LN2,
    LOG_JS_TICKS,
    FigureSpec,
    _bar_range,
    _ci,
    _colour,
    _coloured,
    _facets,
    _gk,
    _keys,
    _line_style,
    _name,
    _part,
    _per_group,
    _profile_lines,
    _sources,
    _spec,
    _summary_by,
    _thresholds,
    pct_small,
)
from core.figures.style import (
    HEATMAP_SCALE,
    HIGH_LOW,
    MODEL_COLOURS,
    MONO,
    NEUTRAL,
    esc,
    num,
    pct,
    token_label,
)

__all__ = ["FigureSpec", "entropy_by_js", "js_cdf", "js_entropy_heatmap", "js_histogram",
           "position", "token_identity"]

# ----------------------------------------------------------------------------- 1 sparsity


def js_histogram(con, run, *, sampled_from=None, by=None,
                 near_zero=0.01, high=0.1, bins=50) -> FigureSpec:
    sf, by, traces = _sources(con, run, sampled_from, by)
    params = dict(metric="js", bins=bins, runs=[run], sampled_from=sf, by=by)
    df = Q.histogram(con, **params)
    s = Q.sparsity_summary(con, near_zero=near_zero, high=high, runs=[run], sampled_from=sf, by=by)
    keys, fig = _keys(s, by), go.Figure()
    for i, k in enumerate(keys):
        d = _part(df, by, k)
        fig.add_bar(x=(d.bin_left + d.bin_right) / 2, y=d.share.where(d.share > 0),
                    width=None if by else LN2 / bins, name=_name(k), marker_color=_colour(k, i),
                    customdata=d[["bin_left", "bin_right", "count"]],
                    hovertemplate="js %{customdata[0]:.3f}-%{customdata[1]:.3f}<br>"
                                  "share %{y:.2%} (n %{customdata[2]})")
    _thresholds(fig, near_zero, high)
    fig.update_layout(barmode="group", bargap=0.05, showlegend=bool(by), xaxis_title=JS_AXIS,
                      yaxis=dict(type="log", dtick=1, tickformat=".2~%",
                                 title="share of tokens (log scale)"))
    nz = {k: _ci(_part(s, by, k), "share_near_zero", pct_small) for k in keys}
    hi = {k: _ci(_part(s, by, k), "share_high", pct_small) for k in keys}
    n = int(s.n_tokens.sum())
    cap = (f"{_per_group(nz, str)} of tokens have js < {near_zero:g}; "
           f"{_per_group(hi, str)} have js > {high:g} ({n} tokens; full-vocabulary js; "
           f"{CI_NOTE})")
    summ = _summary_by(s, by, keys, ["n_tokens", "share_near_zero", "share_near_zero_lo",
                                     "share_near_zero_hi", "share_high", "share_high_lo",
                                     "share_high_hi", "n_prompts"])
    return _spec("js_hist", "Sparsity: distribution of token-level JS divergence", cap, fig,
                 df, "histogram", params, {"source": "sparsity_summary", **summ}, traces=traces)


def js_cdf(con, run, *, sampled_from=None, by=None,
           near_zero=0.01, high=0.1, bins=60) -> FigureSpec:
    sf, by, traces = _sources(con, run, sampled_from, by)
    params = dict(metric="js", bins=bins, lo=1e-6, hi=LN2, log=True, runs=[run],
                  sampled_from=sf, by=by)
    df = Q.histogram(con, **params)
    s = Q.sparsity_summary(con, near_zero=near_zero, high=high, runs=[run], sampled_from=sf, by=by)
    keys, fig = _keys(s, by), go.Figure()
    for i, k in enumerate(keys):
        d = _part(df, by, k)
        style = _coloured(_line_style(i, len(d)), _colour(k, i))
        fig.add_scatter(x=d.bin_right, y=d.cdf, name=_name(k), line_shape="hv", **style,
                        hovertemplate="js < %{x:.2g}: %{y:.1%}")
    _thresholds(fig, near_zero, high, log=True)
    fig.update_layout(showlegend=bool(by), legend_itemsizing="constant",
                      yaxis=dict(title="share of tokens with js < x", tickformat=".0%",
                                 range=[0, 1.02]),
                      xaxis=dict(type="log", title=JS_AXIS + ", log scale", **LOG_JS_TICKS))
    q = {c: {k: _part(s, by, k)[c].iloc[0] for k in keys} for c in ("p50", "p95", "p99")}
    cap = (f"Cumulative share of tokens by js: median js {_per_group(q['p50'], num)}; 95% of "
           f"tokens below {_per_group(q['p95'], num)}, 99% below {_per_group(q['p99'], num)}")
    summ = _summary_by(s, by, keys, ["n_tokens", "p50", "p95", "p99"])
    return _spec("js_cdf", "Sparsity: cumulative distribution of JS divergence", cap, fig, df,
                 "histogram", params, {"source": "sparsity_summary", **summ}, traces=traces)


# ----------------------------------------------------------------------------- 2 entropy


def _weighted(d, col):
    n = d.n.sum()
    return float((d[col].fillna(0) * d.n).sum() / n) if n else float("nan")


def entropy_by_js(con, run, *, sampled_from=None, by=None, near_zero=0.01, high=0.1) -> FigureSpec:
    sf, by, traces = _sources(con, run, sampled_from, by)
    edges = sorted({0.0, near_zero, 0.05, high, 0.2, 0.3} - {LN2}) + [LN2 + 1e-6]
    edges = [e for e in edges if e <= LN2 + 1e-6]
    params = dict(edges=edges, runs=[run], sampled_from=sf, by=by)
    df = Q.entropy_by_js_bin(con, **params)
    keys = _keys(df, by)
    fig = _facets(keys, shared_yaxes=True)
    for c, k in enumerate(keys, start=1):
        d = _part(df, by, k)
        for model in ("base", "tuned"):
            fig.add_bar(x=d.bin, y=d[f"mean_entropy_{model}"], name=f"{model} model",
                        marker_color=MODEL_COLOURS[model], legendgroup=model, showlegend=c == 1,
                        customdata=d.n, hovertemplate="js %{x}: %{y:.2f} nats (n %{customdata})",
                        row=1, col=c)
        fig.update_xaxes(title_text="js bin", row=1, col=c)
    fig.update_layout(barmode="group", yaxis_title="mean entropy (nats)")
    low_bins, high_bins = df[df.hi <= near_zero + 1e-12], df[df.lo >= high - 1e-12]
    lo = {k: _weighted(_part(low_bins, by, k), "mean_entropy_base") for k in keys}
    hi = {k: _weighted(_part(high_bins, by, k), "mean_entropy_base") for k in keys}
    cap = (f"Mean base-model entropy per js bin: {_per_group(lo, num)} nats at js < "
           f"{near_zero:g} vs {_per_group(hi, num)} nats at js >= {high:g}")
    summ = {"entropy_base_low_js": {_gk(k): v for k, v in lo.items()},
            "entropy_base_high_js": {_gk(k): v for k, v in hi.items()}}
    return _spec("entropy_by_js", "Entropy: base and tuned entropy by js bin", cap, fig, df,
                 "entropy_by_js_bin", params, summ, traces=traces)


def js_entropy_heatmap(con, run, *, sampled_from=None, by=None,
                       js_bins=30, entropy_bins=30) -> FigureSpec:
    sf, by, traces = _sources(con, run, sampled_from, by)
    params = dict(js_bins=js_bins, entropy_bins=entropy_bins, entropy="entropy_base",
                  runs=[run], sampled_from=sf, by=by)
    df = Q.js_entropy_hist2d(con, **params)
    keys = _keys(df, by)
    fig = _facets(keys, shared_yaxes=True)
    jw = LN2 / js_bins
    ew = float(df.entropy_bin_left.max()) / max(entropy_bins - 1, 1) if len(df) else 1.0
    top = {}
    for c, k in enumerate(keys, start=1):
        d = _part(df, by, k)
        grid = d.pivot_table(index="entropy_bin_left", columns="js_bin_left", values="count",
                             aggfunc="sum")
        z = np.log10(grid.where(grid > 0).to_numpy(float))
        fig.add_heatmap(x=grid.columns + jw / 2, y=grid.index + ew / 2, z=z,
                        colorscale=HEATMAP_SCALE, coloraxis="coloraxis", customdata=grid.values,
                        hovertemplate="js %{x:.3f}, entropy %{y:.2f}: %{customdata} tokens",
                        row=1, col=c)
        fig.update_xaxes(title_text=JS_AXIS, row=1, col=c)
        m = d.loc[d["count"].idxmax()] if len(d) and d["count"].sum() else None
        top[k] = None if m is None else {"js_lo": float(m.js_bin_left),
                                         "entropy_lo": float(m.entropy_bin_left),
                                         "share": float(m["count"] / d["count"].sum())}
    ticks = list(range(0, 8))
    fig.update_layout(yaxis_title="base-model entropy (nats)",
                      coloraxis=dict(colorscale=HEATMAP_SCALE, colorbar=dict(
                          title="tokens", tickvals=ticks, ticktext=[f"{10**t:g}" for t in ticks])))
    cells = {k: (f"{pct(v['share'])} of tokens in js [{v['js_lo']:.3g}, {v['js_lo'] + jw:.3g})"
                 f" x entropy [{v['entropy_lo']:.3g}, {v['entropy_lo'] + ew:.3g})")
             if v else "n/a" for k, v in top.items()}
    cap = "Tokens by js and base entropy (log colour); densest cell: " + _per_group(cells, str)
    return _spec("js_entropy_2d", "Entropy: js vs base-model entropy", cap, fig, df,
                 "js_entropy_hist2d", params,
                 {"densest_cell": {_gk(k): v for k, v in top.items()}}, traces=traces)


# ----------------------------------------------------------------------------- 3 position


def position(con, run, *, sampled_from=None, by=None, high=0.1, bins=20) -> FigureSpec:
    sf, by, traces = _sources(con, run, sampled_from, by)
    params = dict(bins=bins, metric="js", high=high, runs=[run], sampled_from=sf, by=by)
    df = Q.position_profile(con, **params)
    keys, fig, parts, summ = _keys(df, by), go.Figure(), [], {}
    for i, k in enumerate(keys):
        d = _part(df, by, k)
        _profile_lines(fig, d, k, i, lambda stat: f"rel. pos %{{x:.2f}}: {stat} js %{{y:.3f}}")
        if len(d):
            lo, top = d.loc[d["mean"].idxmin()], d.loc[d["mean"].idxmax()]
            first, last = d.iloc[0], d.iloc[-1]
            s = {"first": float(first["mean"]), "min": float(lo["mean"]),
                 "min_at": float(lo.bin_left), "max": float(top["mean"]),
                 "max_at": float(top.bin_left), "last": float(last["mean"])}
            summ[k] = s
            parts.append(("" if k is None else f"{k}-sampled: ")
                         + f"{_ci(first, 'mean', num)} in the first bin, lowest "
                         f"{_ci(lo, 'mean', num)} at {s['min_at']:.2f}, highest "
                         f"{_ci(top, 'mean', num)} at {s['max_at']:.2f}, "
                         f"{_ci(last, 'mean', num)} in the last bin")
    fig.update_layout(xaxis=dict(title="relative position in the response (t / length)",
                                 range=[0, 1]), yaxis_title="js (nats)")
    cap = ("Mean full-vocabulary js along the response: " + "; ".join(parts or ["no tokens"])
           + f" ({CI_NOTE})")
    return _spec("position_profile", "Position: js along the response", cap, fig, df,
                 "position_profile", params, {"mean_js": {_gk(k): v for k, v in summ.items()}},
                 traces=traces)


# ----------------------------------------------------------------------------- 4 tokens


def _visible(token) -> str:
    """Plain-text form of a token for captions: quoted, whitespace visible, not HTML."""
    return repr("" if token is None else str(token))


def token_identity(con, run, *, sampled_from=None, by=None,
                   high=0.1, min_count=5, limit=20) -> FigureSpec:
    """Per token string: the share of its occurrences with js > high (a bar), against the
    share among all tokens (a dotted line). Counts would hide the point: 28 of 2,009 is a
    sliver of a bar."""
    sf, by, traces = _sources(con, run, sampled_from, by)
    params = dict(high=high, min_count=min_count, limit=limit, runs=[run], sampled_from=sf, by=by)
    df = Q.token_identity(con, **params)
    s = Q.sparsity_summary(con, high=high, runs=[run], sampled_from=sf, by=by)
    keys = _keys(df, by)
    fig = _facets(keys)
    overall = {k: float(_part(s, by, k).share_high.iloc[0]) if len(_part(s, by, k)) else None
               for k in keys}
    xrange = _bar_range([*df.share_high, *[v for v in overall.values() if v is not None]])
    parts, summ = [], {}
    for c, k in enumerate(keys, start=1):
        d = _part(df, by, k).reset_index(drop=True)
        y = list(range(len(d)))
        labels = [token_label(t) for t in d.token]
        fig.add_bar(y=y, x=d.share_high, orientation="h", marker_color=HIGH_LOW["high"],
                    name=esc(f"share of the token's occurrences with js > {high:g}"),
                    legendgroup="token", showlegend=c == 1, cliponaxis=False,
                    text=[pct_small(v) for v in d.share_high], textposition="outside",
                    customdata=np.stack([np.array(labels, dtype=object), d.n_high, d.n_total],
                                        axis=-1) if len(d) else None,
                    hovertemplate="%{customdata[0]}: %{x:.2%} "
                                  "(%{customdata[1]} of %{customdata[2]})<extra></extra>",
                    row=1, col=c)
        if overall[k] is not None:
            fig.add_scatter(x=[overall[k]] * 2, y=[-0.5, max(len(d), 1) - 0.5], mode="lines",
                            line=dict(color=NEUTRAL, dash="dot", width=2),
                            name=esc(f"all tokens (js > {high:g})"), legendgroup="all",
                            showlegend=c == 1, hovertemplate=f"all tokens: {pct_small(overall[k])}"
                            "<extra></extra>", row=1, col=c)
        fig.update_yaxes(tickvals=y, ticktext=labels, autorange="reversed",
                         tickfont=dict(family=MONO), row=1, col=c)
        fig.update_xaxes(title_text=esc(f"share of occurrences with js > {high:g}"),
                         tickformat=".1%", range=xrange, row=1, col=c)
        if len(d):
            r = d.iloc[0]
            summ[_gk(k)] = {"token": r.token, "n_high": int(r.n_high), "n_total": int(r.n_total),
                            "share_high": float(r.share_high), "share_high_all": overall[k]}
            parts.append(("" if k is None else f"{k}-sampled: ") + f"{_visible(r.token)} has "
                         f"{int(r.n_high)} of {int(r.n_total)} occurrences "
                         f"({pct(r.share_high)}) with js > {high:g}, vs "
                         f"{pct_small(overall[k])} of all tokens")
    fig.update_layout(barmode="overlay", legend_itemsizing="constant",
                      height=max(420, 22 * max(len(df), 1) // len(keys) + 160))
    cap = ("Share of each token string's occurrences with high js, for the strings with the "
           "most high-js occurrences: " + "; ".join(parts or ["none"]))
    return _spec("token_identity", "Token identity: which strings carry high divergence", cap,
                 fig, df, "token_identity", params, {"top_token": summ}, traces=traces)
