"""The highlighted-token view shared by the trace browser and live scoring: metric controls,
previous/next divergent buttons, the trace view component and the top-k panel.

`toks` is a DataFrame with the columns of `core.queries.trace_tokens` (one row per token).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from app.ui import state
from app.ui.text import md_escape
from app.ui.trace_view import draw
from core import api
from core.figures import trace
from core.figures.colours import METRICS, NO_SLIDER, colour_tokens, legend_html
from core.figures.trace import DEFAULT_THRESHOLD, METRIC_COLUMNS


def threshold_scale(metric: str, values=None) -> tuple[float, float]:
    """(top, step) of metric's threshold slider: the registry's upper bound where the metric
    has one (js: ln 2), else the larger of its full colour scale and the largest |value| on
    screen, so every value of the metric can be thresholded."""
    m = api.METRICS[metric]
    if m.hi is not None and m.hi > 0:
        top = float(m.hi)
    else:
        seen = pd.to_numeric(pd.Series(values if values is not None else []),
                             errors="coerce").abs()
        seen = seen[np.isfinite(seen)]
        top = max(float(m.full_scale or 1.0), float(seen.max()) if len(seen) else 0.0)
    step = 10 ** math.floor(math.log10(top / 200)) if top > 0 else 0.001
    return math.ceil(top / step) * step, step


def controls(prefix: str = "", url: bool = True, values=None) -> tuple[str, float, bool]:
    """Metric, threshold and fold toggle; read from (and later written to) the URL if `url`.

    Each metric keeps its own threshold (its own slider): a threshold in the URL applies only
    to the metric it was written with, so switching metric never carries js 0.05 over as
    0.05 nats of entropy. `values`: a DataFrame (or mapping) with the metrics' columns, used
    to size the sliders of unbounded metrics."""
    get = state.param if url else (lambda name, default=None, cast=str: default)
    c1, c2, c3 = st.columns([2, 2, 1.5])  # the toggle label needs ~150 px at 1,000 px
    # every registered metric the trace stores (core.metrics' registry), not a list of ours
    names = api.metric_choices(values) if values is not None else list(METRICS)
    wanted = get("metric", "js")
    metric = c1.selectbox("Highlight by", names, key=f"{prefix}metric",
                          index=names.index(wanted) if wanted in names else 0,
                          format_func=lambda m: METRICS[m][0])
    kind = METRICS[metric][1]
    if kind in NO_SLIDER:
        threshold = DEFAULT_THRESHOLD[kind]
        c2.caption(md_escape(f"{METRICS[metric][0]}: highlighted where it does not hold"
                             if kind == "flag" else f"URIAL buckets of {metric}: unshifted "
                             "(rank 1), marginal (2-3), shifted (>3)"))
    else:
        col = None if values is None or metric not in values else values[metric]
        top, step = threshold_scale(metric, col)
        key = f"{prefix}thr_{metric}"
        default = DEFAULT_THRESHOLD[kind]
        if metric == wanted:  # the URL's threshold belongs to the URL's metric only
            default = get("thr", default, float)
        # this session's own choice for this metric (not the widget's key: Streamlit drops
        # a widget's state in a run that does not draw it, i.e. when another metric is shown)
        kept = st.session_state.setdefault("_thresholds", {})
        default = st.session_state.get(key, kept.get(key, default))
        value = min(max(float(default), 0.0), top) if math.isfinite(float(default)) else 0.0
        st.session_state[key] = value
        threshold = c2.slider("Threshold", 0.0, top, step=step, key=key,
                              help="tokens below it stay uncoloured; the slider spans the "
                                   "metric's whole range")
        kept[key] = threshold
    collapse = c3.toggle("Fold calm spans", value=get("fold", "0") == "1", key=f"{prefix}fold")
    return metric, threshold, collapse


def strength_of(toks: pd.DataFrame, metric: str, threshold: float):
    return colour_tokens(toks[metric].tolist(), metric, threshold)


def navigate(strength: list[float], pos: int | None, prefix: str = "") -> int | None:
    """Buttons to jump to the previous / next highlighted token."""
    divergent = [i for i, s in enumerate(strength) if s > 0]
    # a row sized by its content (wraps when narrow): fixed column shares cut the labels
    row = st.container(horizontal=True, vertical_alignment="center")
    if row.button("◀ previous divergent", disabled=not divergent, key=f"{prefix}prev"):
        before = [i for i in divergent if pos is None or i < pos]
        pos = before[-1] if before else divergent[-1]
    if row.button("next divergent ▶", disabled=not divergent, key=f"{prefix}next"):
        after = [i for i in divergent if pos is None or i > pos]
        pos = after[0] if after else divergent[0]
    row.caption(f"{len(divergent)} of {len(strength)} tokens highlighted")
    return pos


def view(toks: pd.DataFrame, metric: str, threshold: float, collapse: bool,
         special: set[int], pos: int | None, key: str, lanes: bool = False,
         keys: bool = False) -> int | None:
    """Legend + trace view; returns the selected position (clicked, else `pos`). `lanes`:
    both models' probability and rank lanes under the tokens (core.figures.trace.lanes);
    `keys`: the view answers j/k, Enter, n/p (one view per page; n/p: app.ui.trace_view).

    A click reaches Python as the component's trigger value in the rerun it causes; it is
    read before the component is drawn, so the outline and the top-k panel below show the
    same token in that rerun (drawing first outlined the previous click)."""
    st.html(legend_html(metric, threshold))
    clicked = _clicked(key, len(toks))
    pos = clicked if clicked is not None else pos
    draw(trace.trace_payload(toks, metric, threshold, collapse=collapse, special_ids=special,
                             selected=pos, with_lanes=lanes, keys=keys), key=key)
    return pos



def _clicked(key: str, n: int) -> int | None:
    """The position clicked in the trace view `key` that caused this rerun, else None."""
    try:
        value = (st.session_state.get(key) or {}).get("clicked")
        value = None if value is None else int(value)
    except (AttributeError, TypeError, ValueError):
        return None
    return value if value is not None and 0 <= value < n else None


def topk_panel(row: pd.Series) -> None:
    """Both models' top-k side by side, the trace token marked, and the token's metrics."""
    if row.get("base_ids") is None:
        st.info("No top-k lists stored for this run.")
        return
    cols = st.columns(2)
    for col, who in zip(cols, ("base", "tuned")):
        df = pd.DataFrame({"rank": range(1, len(row[f"{who}_ids"]) + 1),
                           "token": [repr(t) for t in row[f"{who}_tokens"]],
                           "prob": row[f"{who}_probs"],
                           "in trace": ["◀" if i == row["token_id"] else ""
                                        for i in row[f"{who}_ids"]]})
        col.markdown(f"**{who} model** top-{len(df)}")
        col.dataframe(df, hide_index=True, width="stretch",
                      column_config={"prob": st.column_config.ProgressColumn(
                          "prob", min_value=0.0, max_value=1.0, format="%.3f")})
    st.dataframe(pd.DataFrame([{k: row[k] for k in METRIC_COLUMNS if k in row}]),
                 hide_index=True)


def selected(toks: pd.DataFrame, pos: int | None) -> None:
    if pos is not None:
        st.subheader(f"Token {pos}: {md_escape(repr(toks['token'].iloc[pos]))}")
        topk_panel(toks.iloc[pos])
    else:
        st.caption("Click a token (or the strip) to see both models' top-k.")
