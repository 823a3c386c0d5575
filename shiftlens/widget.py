"""TraceWidget: the app's trace view in Jupyter (an anywidget over the shared component).

Its `data` trait is a core.figures.trace payload (built by shiftlens.Trace.show()), its
`selected` trait the clicked token's position, synced both ways with a kernel. The front end
is shiftlens.front.esm(): the app's own trace_view.js and trace_view.css. Imports anywidget
(an optional install: `pip install anywidget==0.11.0`).
"""

from __future__ import annotations

import anywidget
import traitlets

from shiftlens.front import css, esm


class TraceWidget(anywidget.AnyWidget):
    _esm = esm()
    _css = css()
    data = traitlets.Dict().tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)
