"""A sweep's summary as the README's Markdown table (scripts/cross_figure.py prints it).

`markdown_table(summary, ...)` turns the rows of a sweep's summary.parquet (summary.py's
COLUMNS) into one Markdown table: a row per endpoint (base alone, tuned alone) and per
cross-sample (forward / reverse at each eps, the target budget's eps marked), and per row
both budgets, the accuracy with its 95% bootstrap interval, the share of the base-tuned gap
it moves with its interval and the Holm-adjusted p-value of its paired test against the
primary alone, and for each control: cross-sample minus control in accuracy points with
its paired 95% interval, the control's Holm-adjusted p-value and same_as_ref (the share of
its samples, among those whose cross-sample changed a token, that decoded the identical
sequence), the share of tokens the control changed and its short samples. Controls of a
second sweep (e.g. one matched on decisions) join as columns of their own (`extra`).

Pure formatting of numbers the summary already holds: computes no statistic, reads and
writes nothing. Every cell is built from numbers and fixed labels (a control kind is one of
CONTROL_KINDS), so nothing in it is Markdown from the data.
"""

from __future__ import annotations

import math

import pandas as pd

ENDPOINTS = (("base", "base alone"), ("tuned", "tuned alone"))
DIRECTIONS = ("forward", "reverse")


def _pct(v, digits: int = 1) -> str:
    return "-" if v is None or pd.isna(v) else f"{100 * v:.{digits}f}%"


def _budget(v) -> str:
    """A share of tokens in %: two decimals below 1%, one above."""
    if v is None or pd.isna(v):
        return "-"
    return f"{100 * v:.2f}%" if abs(v) < 0.01 else f"{100 * v:.1f}%"


def _points(v) -> str:
    return "-" if v is None or pd.isna(v) else f"{100 * v:+.1f}"


def p_text(p) -> str:
    """A p-value in a cell: two significant digits, '< 0.001' below, '-' for none."""
    if p is None or pd.isna(p):
        return "-"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def _interval(lo, hi, fmt) -> str:
    return "" if pd.isna(lo) or pd.isna(hi) else f" [{fmt(lo)}, {fmt(hi)}]"


def _accuracy(r) -> str:
    lo, hi = r["ci_lo"], r["ci_hi"]
    ci = "" if pd.isna(lo) else f" ({100 * lo:.1f}-{100 * hi:.1f})"
    return _pct(r["accuracy"]) + ci


def _gap(r) -> str:
    g = r.get("gap_moved", math.nan)
    if pd.isna(g):
        return ""
    verb = "recovers" if r["direction"] == "forward" else "removes"
    cell = (f"{verb} {100 * g:.0f}%"
            + _interval(r.get("gap_moved_lo"), r.get("gap_moved_hi"),
                        lambda v: f"{100 * v:.0f}"))
    return cell + f"; p_holm {p_text(r.get('p_holm'))}"


def control_cell(r) -> str:
    """One control row: diff [lo, hi], p_holm, same_as_ref, the share of tokens the control
    itself changed (matched on decisions it changes fewer than its cross-sample; matched on
    changed tokens it can fall short, e.g. `untreated` where few untreated steps' draws
    differ) and, where any, how many of its samples fell short (n_short of n)."""
    if r is None:
        return ""
    cell = _points(r["diff"]) + _interval(r["diff_lo"], r["diff_hi"], _points)
    cell += f"; p_holm {p_text(r.get('p_holm'))}"
    same = r.get("same_as_ref", math.nan)
    if not pd.isna(same):
        cell += f"; same {100 * same:.0f}%"
    cell += f"; changes {_budget(r.get('budget_changed'))}"
    short, n = r.get("n_short", math.nan), r.get("n", math.nan)
    if not pd.isna(short) and short > 0:
        cell += f"; short {int(short)}/{'-' if pd.isna(n) else int(n)}"
    return cell


def _eps_label(eps: float, target_eps) -> str:
    label = f"eps {eps:g}"
    if target_eps is not None and not pd.isna(target_eps) and math.isclose(
            eps, float(target_eps), rel_tol=1e-6, abs_tol=1e-12):
        label += " (target)"
    return label


def _controls_of(summary: pd.DataFrame) -> list[str]:
    kinds = summary["control_kind"].fillna("")
    return list(dict.fromkeys(k for k in kinds if k))


def _find(summary: pd.DataFrame, direction: str, eps: float, kind: str):
    s = summary[(summary["direction"] == direction)
                & (summary["control_kind"].fillna("") == kind)]
    s = s[[math.isclose(float(e), eps, rel_tol=1e-6, abs_tol=1e-12) for e in s["eps"]]]
    return None if s.empty else s.iloc[0]


def markdown_table(summary: pd.DataFrame, target_eps: float | None = None,
                   match: str = "changed",
                   extra: list[tuple[pd.DataFrame, str]] | None = None) -> str:
    """The Markdown table of `summary` (one sweep's summary rows); `target_eps` marks the
    target budget's eps; `match` is what the sweep's controls matched (changed tokens or
    decisions); `extra`: (summary, match) of further sweeps on the same prompts and grid
    whose controls add columns (their treatment rows are not shown)."""
    groups = [(summary, match)] + list(extra or [])
    cols = [(s, m, k) for s, m in groups for k in _controls_of(s)]
    head = ["setting", "decisions", "changed", "accuracy (95% CI)",
            "gap moved (95% CI); vs the primary alone"]
    head += [f"minus {k} control, matched on {m}" for _, m, k in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    blank = [""] * len(cols)
    for d, name in ENDPOINTS:
        e = summary[summary["direction"] == d]
        if len(e):
            r = e.iloc[0]
            lines.append("| " + " | ".join([name, "0%", "0%", _accuracy(r), "", *blank])
                         + " |")
    for d in DIRECTIONS:
        t = summary[(summary["direction"] == d) & (summary["control_kind"].fillna("") == "")]
        for eps in sorted({float(e) for e in t["eps"]}, reverse=True):
            r = _find(summary, d, eps, "")
            cells = [f"{d}, {_eps_label(eps, target_eps)}", _budget(r["budget"]),
                     _budget(r["budget_changed"]), _accuracy(r), _gap(r)]
            cells += [control_cell(_find(s, d, eps, k)) for s, _, k in cols]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
