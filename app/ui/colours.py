"""Token colours per metric, the legend, and folding of long low-divergence spans.

Pure functions (no Streamlit), so they are unit-tested. `strength` in [0, 1] is how strongly
a token is highlighted; it drives the divergence strip and folding. The metrics offered, their
labels, colour scales and full-scale values come from the metric registry (core.metrics).
"""

from __future__ import annotations

import html
import math

from core import api

RED, BLUE, AMBER, GREY = (220, 38, 38), (37, 99, 235), (217, 119, 6), (148, 163, 184)

METRICS = {  # name -> (label, kind, full-scale value), for the metrics with a colour scale
    m.name: (m.label, m.scale, m.full_scale) for m in api.METRICS.values() if m.scale}
URIAL = [("unshifted", 1, 1, None), ("marginal", 2, 3, AMBER), ("shifted", 4, None, RED)]


def _rgba(rgb, a: float) -> str:
    return f"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {max(0.0, min(1.0, a)):.3f})"


def urial_category(rank: int) -> str:
    return "unshifted" if rank <= 1 else "marginal" if rank <= 3 else "shifted"


def colour_tokens(values: list[float], metric: str, threshold: float = 0.0,
                  vmax: float | None = None) -> tuple[list[str], list[float]]:
    """(css colours, strengths) for a trace's tokens; below `threshold` (|value| for
    diverging metrics) a token stays uncoloured."""
    _, kind, full = METRICS[metric]
    full = vmax or full
    colours, strength = [], []
    for v in values:
        v = float(v) if v is not None and math.isfinite(float(v)) else 0.0
        if kind == "categorical":
            cat = urial_category(int(v))
            rgb = {"marginal": AMBER, "shifted": RED}.get(cat)
            s = {"unshifted": 0.0, "marginal": 0.5, "shifted": 1.0}[cat]
            on = rgb is not None and v >= max(threshold, 2)
            colours.append(_rgba(rgb, 0.55) if on else "transparent")
            strength.append(s if on else 0.0)
            continue
        mag = abs(v) if kind == "diverging" else v
        s = min(1.0, mag / full) if full > 0 else 0.0
        if mag < threshold or s <= 0:
            colours.append("transparent")
            strength.append(0.0)
            continue
        rgb = (RED if v > 0 else BLUE) if kind == "diverging" else RED
        colours.append(_rgba(rgb, 0.08 + 0.82 * s))
        strength.append(s)
    return colours, strength


def legend_html(metric: str, threshold: float, vmax: float | None = None) -> str:
    """A small static legend (escaped text only)."""
    label, kind, full = METRICS[metric]
    full = vmax or full
    esc = html.escape
    if kind == "categorical":
        items = [f"<span style='background:{_rgba(rgb, .55) if rgb else 'transparent'};"
                 f"border:1px solid #999;padding:0 6px'>{esc(name)}</span> rank "
                 f"{lo}{'' if hi == lo else ('-' + str(hi)) if hi else '+'}"
                 for name, lo, hi, rgb in URIAL]
        return f"<div style='font-size:.85rem'>{esc(label)}: " + " &nbsp; ".join(items) + "</div>"
    stops = (["-" + f"{full:.3g}", "0", f"+{full:.3g}"] if kind == "diverging"
             else [f"{threshold:.3g}", f"{full / 2:.3g}", f"≥ {full:.3g}"])
    grad = (f"linear-gradient(90deg, {_rgba(BLUE, .9)}, transparent, {_rgba(RED, .9)})"
            if kind == "diverging" else f"linear-gradient(90deg, transparent, {_rgba(RED, .9)})")
    note = ("blue: tuned less likely than base; red: more likely" if kind == "diverging"
            else f"uncoloured below {threshold:g}")
    return (f"<div style='font-size:.85rem'>{esc(label)} "
            f"<span style='display:inline-block;width:160px;height:10px;background:{grad};"
            f"border:1px solid #999;vertical-align:middle'></span> "
            f"{esc(' … '.join(stops))} &nbsp; ({esc(note)})</div>")


def folds(strength: list[float], min_run: int = 16, context: int = 2) -> list[tuple[int, int]]:
    """[start, end) spans of >= min_run unhighlighted tokens, minus `context` at each side."""
    out, i, n = [], 0, len(strength)
    while i < n:
        if strength[i] > 0:
            i += 1
            continue
        j = i
        while j < n and strength[j] <= 0:
            j += 1
        a, b = i + (context if i > 0 else 0), j - (context if j < n else 0)
        if b - a >= min_run:
            out.append((a, b))
        i = j
    return out
