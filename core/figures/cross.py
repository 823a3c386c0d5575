"""The cross-sampling figure: accuracy against budget (share of tokens switched), forward,
reverse and the random-position control, with 95% bootstrap intervals and both endpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.figures.spec import FigureSpec
from core.figures.style import MODEL_COLOURS, NEUTRAL, styled

LINES = {  # (direction, control) -> (label, colour, dash)
    ("forward", False): ("forward: base, switching to tuned where js > eps", MODEL_COLOURS["tuned"],
                         "solid"),
    ("forward", True): ("forward control: same number of random switches",
                        MODEL_COLOURS["tuned"], "dot"),
    ("reverse", False): ("reverse: tuned, switching to base where js > eps", MODEL_COLOURS["base"],
                         "solid"),
    ("reverse", True): ("reverse control: same number of random switches",
                        MODEL_COLOURS["base"], "dot"),
}


def _gap_share(acc: float, base: float, tuned: float) -> float:
    return (acc - base) / (tuned - base) if tuned != base else float("nan")


def cross_sampling(summary: pd.DataFrame, run: str = "") -> FigureSpec:
    """`summary` has the columns of cross_summary.parquet (direction, eps, control, budget,
    accuracy, ci_lo, ci_hi, n, ...); partial summaries (while a sweep runs) work too."""
    fig = go.Figure()
    ends = {d: summary[summary.direction == d] for d in ("base", "tuned")}
    for d, name in (("base", "base alone"), ("tuned", "tuned alone")):
        if len(ends[d]):
            r = ends[d].iloc[0]
            fig.add_hline(y=100 * r.accuracy, line=dict(color=MODEL_COLOURS[d], width=1,
                                                         dash="dash"),
                          annotation_text=f"{name} {100 * r.accuracy:.1f}%",
                          annotation_position="top right")
    for (direction, control), (label, colour, dash) in LINES.items():
        d = summary[(summary.direction == direction) & (summary.control == control)]
        d = d.sort_values("budget")
        if d.empty:
            continue
        fig.add_scatter(
            x=100 * d.budget, y=100 * d.accuracy, mode="lines+markers", name=label,
            line=dict(color=colour, dash=dash), marker=dict(symbol="circle-open" if control
                                                           else "circle", size=8),
            error_y=dict(type="data", symmetric=False, array=100 * (d.ci_hi - d.accuracy),
                         arrayminus=100 * (d.accuracy - d.ci_lo), thickness=1),
            customdata=np.stack([d.eps, d.n], axis=-1),
            hovertemplate="eps %{customdata[0]:g}<br>budget %{x:.2f}%<br>accuracy %{y:.1f}%"
                          "<br>n %{customdata[1]}<extra></extra>")
    fig.update_layout(xaxis=dict(title="budget: tokens switched (%)", rangemode="tozero"),
                      yaxis=dict(title="accuracy (%)"), legend=dict(font=dict(color=NEUTRAL)))
    caption, summ = _caption(summary)
    title = "Cross-sampling: accuracy against the share of tokens switched"
    return FigureSpec("cross_sampling", title, caption, styled(fig, title), summary.copy(),
                      "cross_summary.parquet", {"run": run}, summ, run)


def _caption(s: pd.DataFrame) -> tuple[str, dict]:
    base = s[s.direction == "base"].accuracy
    tuned = s[s.direction == "tuned"].accuracy
    if base.empty or tuned.empty:
        return "accuracy against budget (endpoints pending)", {}
    b, t = float(base.iloc[0]), float(tuned.iloc[0])
    parts, summ = [f"base {100 * b:.1f}%, tuned {100 * t:.1f}%"], {"base": b, "tuned": t}
    for direction in ("forward", "reverse"):
        d = s[(s.direction == direction) & (~s.control) & (s.budget <= 0.10)]
        if d.empty:
            continue
        best = d.loc[(d.accuracy - b).abs().idxmax() if direction == "forward"
                     else (d.accuracy - t).abs().idxmax()]
        ctrl = s[(s.direction == direction) & s.control & (s.eps == best.eps)]
        share = _gap_share(best.accuracy, b, t)
        moved = share if direction == "forward" else 1 - share
        verb = "recovered" if direction == "forward" else "removed"
        text = (f"{direction} at {100 * best.budget:.1f}% of tokens: {100 * best.accuracy:.1f}%"
                f" ({100 * moved:.0f}% of the gap {verb}")
        if len(ctrl):
            text += f"; random control {100 * ctrl.accuracy.iloc[0]:.1f}%"
        parts.append(text + ")")
        summ[direction] = {"eps": float(best.eps), "budget": float(best.budget),
                           "accuracy": float(best.accuracy), "gap_share": float(moved),
                           "control": float(ctrl.accuracy.iloc[0]) if len(ctrl) else None}
    return "; ".join(parts), summ
