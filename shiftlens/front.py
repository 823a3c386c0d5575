"""The notebook widget's front end: its ES module and CSS, and a standalone page of it.

The module is the app's trace component (core.figures.trace.assets(), the very file the
Streamlit component loads) without its default export, followed by trace_widget.js (the
anywidget render() around it). `standalone_html(payload)` puts that module, the CSS and the
data in one HTML page with a minimal in-page model (get/set/on/off/save_changes, the
anywidget front-end contract), so the widget runs in a browser with no kernel or network:
to share a trace as a file, and to test the widget in Chromium. No anywidget import here.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path

from core.figures.trace import assets

EXPORT = "export default draw;"
HERE = Path(__file__).parent


@cache
def esm() -> str:
    """The widget's ES module: the shared draw() then the anywidget glue."""
    js = assets()[0].rstrip()
    if not js.endswith(EXPORT) or js.count(EXPORT) != 1:
        raise RuntimeError(f"core/figures/trace_view.js must end with {EXPORT!r}")
    return js[:-len(EXPORT)] + "\n" + (HERE / "trace_widget.js").read_text(encoding="utf-8")


def css() -> str:
    return assets()[1]


def _script_json(value) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' left to end it early."""
    return (json.dumps(value, ensure_ascii=False, allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


BOOT = """
const state = JSON.parse(document.getElementById("shiftlens-state").textContent);
const source = document.getElementById("shiftlens-esm").textContent;
const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
const handlers = {};
const fire = (name) => (handlers[name] || []).slice().forEach((f) => f());
const model = {
  get: (key) => state[key],
  set: (key, value) => { if (state[key] !== value) { state[key] = value; fire("change:" + key); } },
  on: (name, f) => { (handlers[name] = handlers[name] || []).push(f); },
  off: (name, f) => { handlers[name] = (handlers[name] || []).filter((g) => g !== f); },
  save_changes: () => {},
  send: () => {},
};
const widget = (await import(url)).default;
const { render } = typeof widget === "function" ? await widget() : widget;
render({ model, el: document.getElementById("shiftlens-trace") });
document.body.dataset.ready = "1";
"""


def standalone_html(payload: dict, title: str = "ShiftLens trace") -> str:
    """One self-contained page that runs the widget's module on `payload` (the state of a
    TraceWidget: data, and selected from payload["selected"]). All data goes in as JSON
    and reaches the page only through textContent."""
    module = esm()
    if "</script" in module.lower() or "<!--" in module:
        raise RuntimeError("the widget module cannot be inlined: it contains '</script' or '<!--'")
    state = {"data": payload, "selected": int(payload.get("selected", -1))}
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>\n<style>\n{css()}\n"
        "body { margin: 16px; font-family: sans-serif; }\n</style></head>\n<body>\n"
        "<div id=\"shiftlens-trace\"></div>\n"
        f"<script type=\"application/json\" id=\"shiftlens-state\">{_script_json(state)}"
        "</script>\n"
        f"<script type=\"text/plain\" id=\"shiftlens-esm\">{module}</script>\n"
        f"<script type=\"module\">{BOOT}</script>\n</body></html>\n")
