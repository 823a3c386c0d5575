"""ShiftLens from Python and notebooks: open a run, read its traces, show the trace view,
draw the overview's figures.

    import shiftlens
    run = shiftlens.open("demo-rl")        # a run of the cache ($SHIFTLENS_CACHE or cache/)
    run.traces()                           # DataFrame: the trace browser's table
    run.trace(12).show()                   # the app's trace view as a Jupyter widget
    run.figure("js_hist")                  # a Plotly figure of the overview

A thin layer over core.api and core.figures (the same queries, figure builders and trace
view the Streamlit app uses): no analysis of its own. It never imports streamlit or the
app. The widget needs anywidget (`pip install anywidget==0.11.0`), imported only by show().
"""

from __future__ import annotations

from shiftlens.run import Run, Trace, open, runs

__all__ = ["Run", "Trace", "open", "runs"]
