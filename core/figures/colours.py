"""Token colours per metric, the legend, and folding of long low-divergence spans.

Pure functions (no UI toolkit), so they are unit-tested; the app and the notebook widget
share them (through core.figures.trace). `strength` in [0, 1] is how strongly a token is
highlighted; it drives the divergence strip and folding. The metrics offered, their
labels, colour scales and full-scale values come from the metric registry (core.metrics).
Colours come per theme ("light", "dark"): on the dark page the hues are lighter and the
faintest highlight stronger, so it stays as visible as on white; `text_colours` picks the
token text colour that reads best on each highlight.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping

from core.metrics import METRICS as REGISTRY

RED, BLUE, AMBER, GREY = (220, 38, 38), (37, 99, 235), (217, 119, 6), (148, 163, 184)
# Per Streamlit theme base: the highlight hues, the alpha of the faintest and of the strongest
# highlight, and the page and text colours of Streamlit's built-in theme (1.67). On the dark
# page a red at alpha 0.08 is 1.05:1 against the background (invisible); these reach 1.36:1,
# more than the light theme's faintest (1.13:1 on white).
THEMES = {
    "light": {"red": RED, "blue": BLUE, "amber": AMBER, "floor": 0.08, "top": 0.9,
              "page": (255, 255, 255), "text": (49, 51, 63), "other_text": (255, 255, 255)},
    "dark": {"red": (248, 113, 113), "blue": (96, 165, 250), "amber": (251, 191, 36),
             "floor": 0.2, "top": 0.9, "page": (23, 22, 20), "text": (237, 235, 232),
             "other_text": (23, 22, 20)},
}

def scale_of(m) -> str:
    """The colour scale of a registered metric: its own, else one its dtype and range imply
    (a bool: flag; no bound: diverging; only an upper bound: descending; else sequential)."""
    if m.scale:
        return m.scale
    if m.dtype == "bool":
        return "flag"
    if m.lo is None:
        return "diverging" if m.hi is None else "descending"
    return "sequential"


class _Scales(Mapping):
    """name -> (label, kind, full-scale value) of every registered metric, read from the
    registry at each look-up (a metric registered later colours traces too)."""

    def __getitem__(self, name: str):
        m = REGISTRY[name]
        return m.label, scale_of(m), float(m.full_scale or 1.0)

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


METRICS = _Scales()
NO_SLIDER = ("categorical", "flag")  # kinds coloured by fixed buckets, without a threshold
URIAL = [("unshifted", 1, 1, None), ("marginal", 2, 3, AMBER), ("shifted", 4, None, RED)]


def _rgba(rgb, a: float) -> str:
    return f"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {max(0.0, min(1.0, a)):.3f})"


def urial_category(rank: int) -> str:
    return "unshifted" if rank <= 1 else "marginal" if rank <= 3 else "shifted"


def colour_tokens(values: list[float], metric: str, threshold: float = 0.0,
                  vmax: float | None = None,
                  theme: str = "light") -> tuple[list[str], list[float]]:
    """(css colours, strengths) for a trace's tokens on the `theme` page; below `threshold`
    (|value| for diverging metrics) a token stays uncoloured."""
    _, kind, full = METRICS[metric]
    full = vmax or full
    t = THEMES[theme]
    colours, strength = [], []
    for v in values:
        if kind == "flag":  # highlighted where false; a missing value stays uncoloured
            on = v is not None and _finite(v) and not bool(v)
            colours.append(_rgba(t["amber"], 0.55) if on else "transparent")
            strength.append(1.0 if on else 0.0)
            continue
        v = float(v) if _finite(v) else 0.0
        if kind == "categorical":
            cat = urial_category(int(v))
            rgb = {"marginal": t["amber"], "shifted": t["red"]}.get(cat)
            s = {"unshifted": 0.0, "marginal": 0.5, "shifted": 1.0}[cat]
            on = rgb is not None and v >= max(threshold, 2)
            colours.append(_rgba(rgb, 0.55) if on else "transparent")
            strength.append(s if on else 0.0)
            continue
        mag = abs(v) if kind == "diverging" else -v if kind == "descending" else v
        s = min(1.0, mag / full) if full > 0 else 0.0
        if mag < threshold or s <= 0:
            colours.append("transparent")
            strength.append(0.0)
            continue
        rgb = (t["red"] if v > 0 else t["blue"]) if kind == "diverging" else t["red"]
        colours.append(_rgba(rgb, t["floor"] + (t["top"] - t["floor"]) * s))
        strength.append(s)
    return colours, strength


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def parse_rgba(css: str) -> tuple[float, float, float, float] | None:
    """'rgba(220, 38, 38, 0.500)' / 'rgb(1, 2, 3)' / '#RRGGBB' -> (r, g, b, a); None for
    'transparent' or anything else."""
    css = css.strip()
    if css.startswith("#") and len(css) == 7:
        return (*(int(css[i:i + 2], 16) for i in (1, 3, 5)), 1.0)
    if css.startswith(("rgb(", "rgba(")):
        parts = [float(x) for x in css[css.index("(") + 1:-1].split(",")]
        return (*parts[:3], parts[3] if len(parts) > 3 else 1.0)
    return None


def composite(css: str, page) -> tuple[float, float, float]:
    """The colour seen where `css` (maybe translucent) lies on the `page` colour."""
    c = parse_rgba(css)
    if c is None:
        return tuple(float(x) for x in page)
    a = c[3]
    return tuple(a * c[i] + (1 - a) * page[i] for i in range(3))


def luminance(rgb) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels)."""
    def lin(v):
        v = v / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * lin(rgb[0]) + 0.7152 * lin(rgb[1]) + 0.0722 * lin(rgb[2])


def contrast(a, b) -> float:
    """WCAG 2 contrast ratio of two colours, 1 (none) to 21."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colours(colours: list[str], theme: str = "light") -> list[str]:
    """Per highlight, the token text colour: '' (the theme's own text) unless the other
    extreme (white on light pages, the page colour on dark ones) reads better on it."""
    t = THEMES[theme]
    out = []
    for css in colours:
        seen = composite(css, t["page"])
        better = contrast(t["other_text"], seen) > contrast(t["text"], seen)
        out.append("rgb({}, {}, {})".format(*t["other_text"]) if better else "")
    return out


def legend_html(metric: str, threshold: float, vmax: float | None = None) -> str:
    """A small static legend (escaped text only)."""
    label, kind, full = METRICS[metric]
    full = vmax or full
    esc = html.escape
    if kind == "flag":
        return (f"<div style='font-size:.85rem'>{esc(label)}: <span style='background:"
                f"{_rgba(AMBER, .55)};border:1px solid #999;padding:0 6px'>highlighted</span>"
                " where it does not hold</div>")
    if kind == "categorical":
        items = [f"<span style='background:{_rgba(rgb, .55) if rgb else 'transparent'};"
                 f"border:1px solid #999;padding:0 6px'>{esc(name)}</span> rank "
                 f"{lo}{'' if hi == lo else ('-' + str(hi)) if hi else '+'}"
                 for name, lo, hi, rgb in URIAL]
        return f"<div style='font-size:.85rem'>{esc(label)}: " + " &nbsp; ".join(items) + "</div>"
    stops = (["-" + f"{full:.3g}", "0", f"+{full:.3g}"] if kind == "diverging"
             else [f"{-threshold:.3g}", f"{-full / 2:.3g}", f"≤ {-full:.3g}"]
             if kind == "descending"
             else [f"{threshold:.3g}", f"{full / 2:.3g}", f"≥ {full:.3g}"])
    grad = (f"linear-gradient(90deg, {_rgba(BLUE, .9)}, transparent, {_rgba(RED, .9)})"
            if kind == "diverging" else f"linear-gradient(90deg, transparent, {_rgba(RED, .9)})")
    note = ("blue: tuned less likely than base; red: more likely" if kind == "diverging"
            else f"uncoloured above {-threshold:g}" if kind == "descending"
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
