"""The cross-sampling figures: accuracy against budget for forward, reverse and their
controls, with 95% bootstrap intervals (named in every caption and hover) and both endpoints
(`cross_sampling`), and two stored sweeps of one run overlaid in distinct colours
(`cross_overlay`).

The budget axis is the share of tokens the switches actually changed (`budget_changed`) by
default, or of switch decisions (`budget="decisions"`; a legacy sweep has only that).
The caption reports the setting chosen before the sweep (the sweep's target budget and its
eps, core.experiments.cross_sampling.budget), never one picked afterwards for its effect;
with no target it singles out nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.figures.spec import FigureSpec
from core.figures.style import MODEL_COLOURS, NEUTRAL, styled

DIRECTIONS = {"forward": ("base, switching to tuned where js > eps", MODEL_COLOURS["tuned"]),
              "reverse": ("tuned, switching to base where js > eps", MODEL_COLOURS["base"])}
CONTROLS = {"": ("", "solid"), "random": ("random positions", "dot"),
            "entropy": ("positions by the primary's entropy", "dash"),
            "untreated": ("by entropy at untreated steps", "dashdot")}
AXIS = {"changed": "budget: tokens changed (%)", "decisions": "budget: switch decisions (%)"}
COLUMN = {"changed": "budget_changed", "decisions": "budget"}


def _kind(s: pd.DataFrame) -> pd.Series:
    if "control_kind" in s:
        return s["control_kind"].fillna("")
    return s["control"].map({True: "random", False: ""})


def _axis(s: pd.DataFrame, budget: str) -> str:
    """The budget actually drawn: "changed" needs the column (a legacy sweep lacks it)."""
    if budget == "changed" and ("budget_changed" not in s or s["budget_changed"].isna().all()):
        return "decisions"
    return budget


# an overlay's second sweep in its own colours, so two sweeps of one direction differ
SWEEP_B_COLOURS = {"forward": "#009E73", "reverse": "#CC79A7"}
INTERVALS = ("error bars: 95% percentile bootstrap intervals of the mean accuracy over "
             "prompts (prompts resampled with replacement)")


def _lines(fig: go.Figure, s: pd.DataFrame, budget: str, prefix: str = "",
           symbol: str = "circle", group: str = "", colours: dict | None = None) -> None:
    kinds = _kind(s)
    for direction, (what, colour) in DIRECTIONS.items():
        colour = (colours or {}).get(direction, colour)
        for kind, (where, dash) in CONTROLS.items():
            d = s[(s.direction == direction) & (kinds == kind)].sort_values(COLUMN[budget])
            if d.empty:
                continue
            label = f"{direction}: {what}" if not kind else f"{direction} control: {where}"
            fig.add_scatter(
                x=100 * d[COLUMN[budget]], y=100 * d.accuracy, mode="lines+markers",
                name=prefix + label, legendgroup=group or None,
                line=dict(color=colour, dash=dash),
                marker=dict(symbol=symbol if not kind else f"{symbol}-open", size=8),
                error_y=dict(type="data", symmetric=False, array=100 * (d.ci_hi - d.accuracy),
                             arrayminus=100 * (d.accuracy - d.ci_lo), thickness=1),
                customdata=np.stack([d.eps, d.n, 100 * d.ci_lo, 100 * d.ci_hi], axis=-1),
                hovertemplate="eps %{customdata[0]:g}<br>budget %{x:.2f}%<br>accuracy "
                              "%{y:.1f}% (95% interval %{customdata[2]:.1f}-"
                              "%{customdata[3]:.1f}%)<br>n %{customdata[1]}<extra></extra>")


def _endpoints(s: pd.DataFrame) -> tuple[float, float] | None:
    b, t = s[s.direction == "base"].accuracy, s[s.direction == "tuned"].accuracy
    return (float(b.iloc[0]), float(t.iloc[0])) if len(b) and len(t) else None


def cross_sampling(summary: pd.DataFrame, run: str = "", settings: dict | None = None,
                   budget: str = "changed", sweep: str = "") -> FigureSpec:
    """`summary` has the columns of a sweep's summary.parquet (direction, eps, control,
    control_kind, budget, budget_changed, accuracy, ci_lo, ci_hi, diff, ...; partial
    summaries while a sweep runs work too); `settings` the sweep's settings (its
    target_eps, n_prompts, samples, ...; core.store.cross.SweepInfo.settings)."""
    settings = settings or {}
    budget = _axis(summary, budget)
    fig = go.Figure()
    for d, name in (("base", "base alone"), ("tuned", "tuned alone")):
        e = summary[summary.direction == d]
        if len(e):
            acc = float(e.accuracy.iloc[0])
            fig.add_hline(y=100 * acc, line=dict(color=MODEL_COLOURS[d], width=1, dash="dash"),
                          annotation_text=f"{name} {100 * acc:.1f}%",
                          annotation_position="top right")
    _lines(fig, summary, budget)
    fig.update_layout(xaxis=dict(title=AXIS[budget], rangemode="tozero"),
                      yaxis=dict(title="accuracy (%)"), legend=dict(font=dict(color=NEUTRAL)))
    caption, summ = caption_of(summary, settings, budget)
    caption += f". {INTERVALS[0].upper()}{INTERVALS[1:]}"
    title = ("Cross-sampling: accuracy against the share of tokens "
             + ("changed" if budget == "changed" else "switched"))
    return FigureSpec("cross_sampling", title, caption, styled(fig, title), summary.copy(),
                      "read_summary", {"run": run, "sweep": sweep, "budget": budget}, summ,
                      run)


def cross_overlay(a: pd.DataFrame, b: pd.DataFrame, label_a: str, label_b: str,
                  run: str = "", budget: str = "changed") -> FigureSpec:
    """Two sweeps of one run on one chart: sweep A with filled circles, sweep B with
    squares; `label_a`/`label_b` name them (SweepInfo.label())."""
    budget = _axis(b, _axis(a, budget))
    fig = go.Figure()
    _lines(fig, a, budget, "A: ", "circle", "A")
    _lines(fig, b, budget, "B: ", "square", "B", SWEEP_B_COLOURS)
    fig.update_layout(xaxis=dict(title=AXIS[budget], rangemode="tozero"),
                      yaxis=dict(title="accuracy (%)"), legend=dict(font=dict(color=NEUTRAL)))
    parts = []
    for name, s, label in (("A", a, label_a), ("B", b, label_b)):
        ends = _endpoints(s)
        e = f"base {100 * ends[0]:.1f}%, tuned {100 * ends[1]:.1f}%" if ends else "no endpoints"
        parts.append(f"{name} = {label} ({e})")
    caption = ("Two sweeps of this run: " + "; ".join(parts)
               + f". A in orange/blue circles, B in green/pink squares; {INTERVALS}")
    title = "Cross-sampling: two sweeps overlaid"
    data = pd.concat([a.assign(sweep="A"), b.assign(sweep="B")], ignore_index=True)
    return FigureSpec("cross_sampling_overlay", title, caption, styled(fig, title), data,
                      "read_summary", {"run": run, "a": label_a, "b": label_b,
                                       "budget": budget}, {}, run)


def gap_text(direction: str, acc: float, base: float, tuned: float) -> tuple[str, float]:
    """How much of the base-tuned gap a setting moves, in words, and the fraction: forward
    recovers it (acc - base over tuned - base), reverse removes it (tuned - acc over the
    same). Beyond 100% or below 0 the text says what happened."""
    if tuned == base:
        return "no gap between the models on these prompts", math.nan
    share = (acc - base) / (tuned - base)
    moved = share if direction == "forward" else 1 - share
    verb = "recovers" if direction == "forward" else "removes"
    text = f"{verb} {100 * moved:.0f}% of the gap"
    if moved > 1:
        text += (": the mixed decode beat the tuned model on these prompts"
                 if direction == "forward"
                 else ": the mixed decode fell below the base model on these prompts")
    elif moved < 0:
        text += (": it moved accuracy away from the tuned model" if direction == "forward"
                 else ": it moved accuracy further from the base model")
    return text, moved


def _pct(v: float) -> str:
    return f"{100 * v:+.1f}"


def caption_of(s: pd.DataFrame, settings: dict, budget: str = "changed") -> tuple[str, dict]:
    ends = _endpoints(s)
    if ends is None:
        return "accuracy against budget (endpoints pending)", {}
    b, t = ends
    n_p = settings.get("n_prompts") or int(s.n_prompts.max())
    k = settings.get("samples") or ""
    traces = (f"{n_p} prompts x {k} samples decoded by the sweep" if k
              else f"{n_p} prompts decoded by the sweep")
    dec = ""
    if settings.get("top_p") is not None:
        src = {"run": ", the run's decoding", "paper": ", the paper's decoding"}.get(
            settings.get("decoding") or "", "")
        dec = (f"; decoded at top-p {settings['top_p']:g}, temperature "
               f"{settings.get('temperature', 1):g}{src}; switching on "
               + ("full-vocabulary js" if settings["top_p"] >= 1 else
                  f"js of the top-p {settings['top_p']:g} truncated distributions"))
    parts = [f"base {100 * b:.1f}%, tuned {100 * t:.1f}% ({traces}{dec})"]
    summ = {"base": b, "tuned": t}
    target = settings.get("target_eps")
    if target is None and not settings:  # a running sweep's partial summary
        return "; ".join(parts), summ
    if target is None:
        parts.append("no target budget was set before this sweep, so no setting is singled "
                     "out (every eps is in the table)")
        return "; ".join(parts), summ
    summ["target_budget"], summ["target_eps"] = settings.get("target_budget"), target
    realised = settings.get("target_realised")
    metric = settings.get("target_metric")  # absent in sweeps written before it was stored
    got = ("" if realised is None else
           f", which {100 * realised:.2f}% of the run's stored tokens exceed")
    on = f" on {metric}" if metric else ""
    parts.append(f"at the budget chosen before the sweep ({100 * settings['target_budget']:g}% "
                 f"of the run's stored tokens: eps {target:g}{on}{got})")
    summ["target_realised"] = realised
    kinds = _kind(s)
    for direction in ("forward", "reverse"):
        at = s[(s.direction == direction) & (np.isclose(s.eps, target))]
        ref = at[kinds[at.index] == ""]
        if ref.empty:
            continue
        r = ref.iloc[0]
        gap, moved = gap_text(direction, float(r.accuracy), b, t)
        text = (f"{direction} {100 * r.accuracy:.1f}% with {100 * r.budget:.1f}% of tokens "
                f"switched")
        if not pd.isna(r.get("budget_changed", math.nan)):
            text += f" and {100 * r.budget_changed:.1f}% changed"
        lo, hi = r.get("gap_moved_lo", math.nan), r.get("gap_moved_hi", math.nan)
        if not (pd.isna(lo) or pd.isna(hi)):
            gap = gap.replace(" of the gap", f" [{100 * lo:.0f}%, {100 * hi:.0f}%] of the gap",
                              1)
        text += f", {gap}{_test_text(r, 'alone')}"
        item = {"eps": float(r.eps), "budget": float(r.budget), "accuracy": float(r.accuracy),
                "gap_share": moved, "gap_share_lo": _nan_none(lo),
                "gap_share_hi": _nan_none(hi), "p_holm": _nan_none(r.get("p_holm")),
                "controls": {}}
        for _, c in at[kinds[at.index] != ""].iterrows():
            kind = kinds[c.name]
            if pd.isna(c.get("diff", math.nan)):
                text += f"; {kind} control {100 * c.accuracy:.1f}%"
            else:
                text += (f"; minus {kind} control {_pct(c['diff'])} points "
                         f"[{_pct(c.diff_lo)}, {_pct(c.diff_hi)}] (paired)"
                         f"{_test_text(c, 'control')}")
            same = c.get("same_as_ref", math.nan)
            if not pd.isna(same):
                text += (f", {100 * same:.0f}% of its rows decode the cross-sample's own "
                         f"sequence (changed steps overlap "
                         f"{100 * c.get('changed_overlap', math.nan):.0f}%)")
            item["controls"][kind] = {"accuracy": float(c.accuracy),
                                      "diff": _nan_none(c.get("diff")),
                                      "diff_lo": _nan_none(c.get("diff_lo")),
                                      "diff_hi": _nan_none(c.get("diff_hi")),
                                      "p_value": _nan_none(c.get("p_value")),
                                      "p_holm": _nan_none(c.get("p_holm")),
                                      "same_as_ref": _nan_none(c.get("same_as_ref")),
                                      "changed_overlap": _nan_none(c.get("changed_overlap"))}
        parts.append(text)
        summ[direction] = item
    return "; ".join(parts), summ


def _test_text(r, against: str) -> str:
    """', McNemar exact p 0.38 (Holm 0.75)': the row's paired test, '' without one."""
    p, test = r.get("p_value", math.nan), r.get("test", "")
    if pd.isna(p) or not isinstance(test, str) or not test:
        return ""
    what = "against the model alone" if against == "alone" else "against the control"
    return f" ({test} p {p:.2g} {what}, Holm-adjusted over the sweep {r.get('p_holm'):.2g})"


def _nan_none(v):
    return None if v is None or pd.isna(v) else float(v)
