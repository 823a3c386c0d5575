"""Token highlighting as HTML: every token string is escaped, whitespace kept visible."""

from __future__ import annotations

import html
import math

LN2 = math.log(2.0)


def _colour(value: float, vmax: float) -> str:
    a = 0.0 if not math.isfinite(value) else max(0.0, min(1.0, value / vmax))
    return f"rgba(220, 38, 38, {a:.3f})"


def token_html(token: str) -> str:
    """Escaped token text; newlines shown as a visible mark plus a real break."""
    text = html.escape(token, quote=True)
    return text.replace("\n", "<span class='nl'>\u21b5</span><br>").replace("\t", "\u2192   ")


def highlight(tokens: list[str], values: list[float], vmax: float = LN2 / 2,
              threshold: float = 0.0) -> str:
    spans = []
    for i, (t, v) in enumerate(zip(tokens, values)):
        style = f"background:{_colour(v, vmax)}" if v >= threshold else ""
        spans.append(f"<span class='tok' data-pos='{i}' title='pos {i}: {v:.4f}' "
                     f"style='{style}'>{token_html(t)}</span>")
    return ("<div class='trace' style='font-family:monospace;white-space:pre-wrap;"
            "line-height:1.8'>" + "".join(spans) + "</div>")
