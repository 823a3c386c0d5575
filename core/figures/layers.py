"""Figures of the layer views (core.experiments.layers, .attribution, .critical), one
FigureSpec each, exported like every other figure (core.figures.export).

  lens_figure       one token: js between the models per layer, and each model's KL from
                    its own final distribution (where they part, where each settles)
  profile_figure    the same per layer, mean over high-js against low-js tokens
  attribution_figure  layer x component heatmap of the share of js closed, beside |dW|/|W|
  critical_figure   scanned positions: |effect| against js and against entropy, with the
                    Spearman rank correlations and their intervals in the caption

Builders take the experiments' DataFrames (they compute nothing but the display). Every
data text (token strings) goes through style.esc / token_label. Never imports a UI toolkit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotly.subplots import make_subplots

from core.figures.spec import JS_AXIS, FigureSpec, _spec
from core.figures.style import HEATMAP_SCALE, HIGH_LOW, MODEL_COLOURS, NEUTRAL, esc, token_label


def _layer_ticks(n_layers: int) -> dict:
    return dict(tickvals=list(range(n_layers + 1)), range=[-0.3, n_layers + 0.3],
                ticktext=["emb"] + [str(i) for i in range(1, n_layers + 1)])


def lens_figure(df: pd.DataFrame, run: str) -> FigureSpec:
    """`layer_view` rows of one token."""
    tid, pos = int(df.trace_id.iloc[0]), int(df.pos.iloc[0])
    n = int(df.layer.max())
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=["js between the models' lenses",
                                        "KL(final || lens), each model (0 at the last)"])
    top = [f"base {token_label(b)} / tuned {token_label(t)}"
           for b, t in zip(df.base_top1_token, df.tuned_top1_token)]
    fig.add_scatter(x=df.layer, y=df.js, mode="lines+markers", name="js base vs tuned",
                    line=dict(color=NEUTRAL, width=3), customdata=top,
                    hovertemplate="layer %{x}: js %{y:.3g}<br>top-1 %{customdata}"
                                  "<extra></extra>", row=1, col=1)
    inner = df[df.layer < n]  # KL from the final is 0 at the last layer: off a log axis
    for m in ("base", "tuned"):
        fig.add_scatter(x=inner.layer, y=inner[f"{m}_kl_final"], mode="lines+markers",
                        name=f"{m}: KL from its final", line=dict(color=MODEL_COLOURS[m],
                        dash="solid" if m == "base" else "dash"), row=1, col=2)
    fig.update_xaxes(title_text="layer (residual stream after it)", **_layer_ticks(n))
    fig.update_yaxes(title_text=JS_AXIS, row=1, col=1)
    fig.update_yaxes(title_text="nats", type="log", row=1, col=2)
    part = int(df.js.idxmax())
    cap = (f"Trace {tid}, token {pos}: the logit lens of both models at every layer; js "
           f"{float(df.js.iloc[-1]):.3g} at the output (stored {float(df.stored_js.iloc[0]):.3g}), "
           f"largest at layer {int(df.layer[part])} of {n}")
    return _spec("layer_lens", f"Where the models part: trace {tid}, token {pos}", cap,
                 fig, df, "core.experiments.layers.layer_view",
                 dict(runs=[run], trace_id=tid, pos=pos),
                 dict(js_out=float(df.js.iloc[-1]), peak_layer=int(df.layer[part])))


def profile_figure(df: pd.DataFrame, run: str, *, high: float = 0.1,
                   low: float = 0.01) -> FigureSpec:
    """`layer_profile` rows."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=["mean js between the lenses",
                                        "mean KL(final || lens), tuned (0 at the last)"])
    n = int(df.layer.max()) if len(df) else 0
    for g, label in (("high", f"js >= {high:g}"), ("low", f"js < {low:g}")):
        d = df[df.group == g]
        if d.empty:
            continue
        tokens = int(d.n.iloc[0])
        fig.add_scatter(x=d.layer, y=d.js, mode="lines+markers", name=esc(f"{label} "
                        f"({tokens} tokens)"), line=dict(color=HIGH_LOW[g], width=3),
                        legendgroup=g, row=1, col=1)
        d = d[d.layer < n]  # 0 at the last layer: off the log axis
        fig.add_scatter(x=d.layer, y=d.tuned_kl_final, mode="lines+markers",
                        line=dict(color=HIGH_LOW[g], dash="dash"), legendgroup=g,
                        showlegend=False, row=1, col=2)
    fig.update_xaxes(title_text="layer (residual stream after it)", **_layer_ticks(n))
    fig.update_yaxes(title_text=JS_AXIS, row=1, col=1)
    fig.update_yaxes(title_text="nats", type="log", row=1, col=2)
    counts = {g: int(df[df.group == g].n.iloc[0]) if (df.group == g).any() else 0
              for g in ("high", "low")}
    cap = (f"Logit lens per layer, mean over {counts['high']} tokens with js >= {high:g} "
           f"and {counts['low']} with js < {low:g}")
    return _spec("layer_profile", "At which depth the models part: high- vs low-js tokens",
                 cap, fig, df, "core.experiments.layers.layer_profile",
                 dict(runs=[run], high=high, low=low), counts)


def _grid(table: pd.DataFrame, col: str):
    """(row labels, column labels, values) of a layer x component table."""
    n = int(table.layer.max()) - 1 if len(table) else 0
    ylab = ["embed"] + [f"layer {i}" for i in range(1, n + 1)] + ["readout"]
    xlab = ["attn", "mlp", "embed / readout"]
    z = np.full((len(ylab), 3), np.nan)
    for r in table.itertuples():
        x = 2 if r.component in ("embed", "readout") else xlab.index(r.component)
        z[int(r.layer), x] = getattr(r, col)
    return ylab, xlab, z


def attribution_figure(table: pd.DataFrame, run: str, *, what: str,
                       direction: str = "base<-tuned") -> FigureSpec:
    """`attribution_table` rows; `what` says which tokens (e.g. 'trace 3, token 17')."""
    ylab, xlab, share = _grid(table, "share")
    _, _, dw = _grid(table, "weight_change")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.26, column_widths=[0.5, 0.5],
                        subplot_titles=["share of js closed by patching",
                                        "relative weight change |dW|/|W|"])
    fig.add_heatmap(z=share, x=xlab, y=ylab, colorscale="RdBu", zmid=0, zmin=-1, zmax=1,
                    colorbar=dict(x=0.43, title="share"), texttemplate="%{z:.2f}",
                    hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>", row=1, col=1)
    fig.add_heatmap(z=dw, x=xlab, y=ylab, colorscale=HEATMAP_SCALE,
                    colorbar=dict(title="|dW|/|W|"), texttemplate="%{z:.3f}",
                    hovertemplate="%{y} %{x}: %{z:.4f}<extra></extra>", row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(420, 60 * len(ylab) + 160))
    best = table.loc[table.share.idxmax()] if table.share.notna().any() else None
    lead = (f"; most: {best.label} ({float(best.share):.2f})" if best is not None else "")
    recipient = direction.split("<-")[0]
    cap = (f"{what}: share of js closed when the {recipient} model takes one component's "
           f"output from the other ({direction}){lead}")
    return _spec("layer_attribution", f"Which components carry the shift ({what})",
                 cap, fig, table, "core.experiments.attribution.attribution_table",
                 dict(runs=[run], what=what, direction=direction),
                 dict(top=None if best is None else str(best.label)))


def critical_figure(pos: pd.DataFrame, corr: pd.DataFrame, run: str) -> FigureSpec:
    """`critical.positions` rows and `critical.criticality` of them."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, shared_yaxes=True,
                        subplot_titles=["|effect| against js", "|effect| against entropy"])
    colours = {"top": MODEL_COLOURS["tuned"], "random": NEUTRAL, "entropy": "#009E73"}
    first = pos.groups.str.split(",").str[0]
    for g, colour in colours.items():
        d = pos[first == g]
        for c, xcol in enumerate(("js", "entropy"), start=1):
            fig.add_scatter(x=d[xcol], y=d.effect.abs(), mode="markers", name=g,
                            marker=dict(color=colour, size=9), legendgroup=g,
                            showlegend=c == 1, customdata=np.c_[d.trace_id, d.pos],
                            hovertemplate="trace %{customdata[0]} token %{customdata[1]}: "
                                          "%{x:.3g}, |effect| %{y:.2f}<extra></extra>",
                            row=1, col=c)
    fig.update_xaxes(title_text=JS_AXIS, row=1, col=1)
    fig.update_xaxes(title_text="entropy of the sampler (nats)", row=1, col=2)
    fig.update_yaxes(title_text="|accuracy(tuned choice) - accuracy(base choice)|", row=1, col=1)
    words = "; ".join(f"Spearman with {r.predictor} {r.spearman:.2f} [{r.lo:.2f}, {r.hi:.2f}]"
                      for r in corr.itertuples())
    cap = f"{len(pos)} scanned positions of {pos.trace_id.nunique()} traces; {words}"
    return _spec("critical_scan", "Which divergent tokens decide the answer", cap, fig,
                 pos, "core.experiments.critical.positions", dict(runs=[run]),
                 {r.predictor: float(r.spearman) for r in corr.itertuples()})
