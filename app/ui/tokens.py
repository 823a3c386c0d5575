"""The highlighted-token view shared by the trace browser and live scoring: metric controls,
previous/next divergent buttons, the trace view component and the top-k panel.

`toks` is a DataFrame with the columns of `core.queries.trace_tokens` (one row per token).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import state
from app.ui.colours import METRICS, colour_tokens, folds, legend_html
from app.ui.text import md_escape
from app.ui.trace_view import trace_view
from core import api

METRIC_COLUMNS = (*api.METRICS, "rel_pos")  # every registered metric, then the position


def controls(prefix: str = "", url: bool = True) -> tuple[str, float, bool]:
    """Metric, threshold and fold toggle; read from (and later written to) the URL if `url`."""
    get = state.param if url else (lambda name, default=None, cast=str: default)
    c1, c2, c3 = st.columns([2, 2, 1])
    names = list(METRICS)
    wanted = get("metric", "js")
    metric = c1.selectbox("Highlight by", names, key=f"{prefix}metric",
                          index=names.index(wanted) if wanted in METRICS else 0,
                          format_func=lambda m: METRICS[m][0])
    _, kind, top = METRICS[metric]
    top = float(top)
    if kind == "categorical":
        threshold = 2.0
        c2.caption("URIAL buckets: unshifted (rank 1), marginal (2-3), shifted (>3)")
    else:
        default = 0.5 if kind == "diverging" else 0.01
        threshold = c2.slider("Threshold", 0.0, top, value=min(max(get("thr", default, float),
                                                                    0.0), top),
                              step=0.005, key=f"{prefix}thr_{metric}")
    collapse = c3.toggle("Fold calm spans", value=get("fold", "0") == "1", key=f"{prefix}fold")
    return metric, threshold, collapse


def strength_of(toks: pd.DataFrame, metric: str, threshold: float):
    return colour_tokens(toks[metric].tolist(), metric, threshold)


def navigate(strength: list[float], pos: int | None, prefix: str = "") -> int | None:
    """Buttons to jump to the previous / next highlighted token."""
    divergent = [i for i, s in enumerate(strength) if s > 0]
    b1, b2, b3 = st.columns([1, 1, 4])
    if b1.button("◀ previous divergent", disabled=not divergent, key=f"{prefix}prev"):
        before = [i for i in divergent if pos is None or i < pos]
        pos = before[-1] if before else divergent[-1]
    if b2.button("next divergent ▶", disabled=not divergent, key=f"{prefix}next"):
        after = [i for i in divergent if pos is None or i > pos]
        pos = after[0] if after else divergent[0]
    b3.caption(f"{len(divergent)} of {len(strength)} tokens highlighted")
    return pos


def view(toks: pd.DataFrame, metric: str, threshold: float, collapse: bool, colours, strength,
         special: set[int], pos: int | None, key: str) -> int | None:
    """Legend + trace view; returns the selected position (clicked, else `pos`)."""
    st.html(legend_html(metric, threshold))
    titles = [f"pos {i} · {metric} {v:.4g} · rank_base {rb}" for i, (v, rb) in
              enumerate(zip(toks[metric].tolist(), toks["rank_base"].tolist()))]
    clicked = trace_view(toks["token"].tolist(), colours, strength, titles,
                         [int(t) in special for t in toks["token_id"]], pos,
                         folds(strength) if collapse else [], key=key)
    return clicked if clicked is not None else pos


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
