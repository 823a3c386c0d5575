"""The same prompt, both samplers (issue 27): on the trace page, the open trace beside a
trace of its prompt sampled from the other model, each with its verdict, highlighted by the
page's metric, the first token where they part outlined in both. The data is
core.queries.pairs (through core.api); model text is drawn by the trace view component
(textContent) or st.text, never as Markdown."""

from __future__ import annotations

import streamlit as st

from app.ui import state
from app.ui.trace_view import draw
from core import api
from core.figures import trace

COLOURS = {"correct": "green", "incorrect": "red", "unknown": "gray"}


def pair_section(con, run, tid: int, metric: str, threshold: float) -> None:
    """A toggle (kept in the URL as pair=1) and, when on, the two traces side by side."""
    if not st.toggle("Same prompt, both samplers", value=state.param("pair", "0") == "1",
                     key="pair", help="this trace beside a trace of the same prompt sampled "
                                      "from the other model, and where the two part"):
        state.set_params(pair=None, vs=None)
        return
    state.set_params(pair="1")
    others = api.pair_choices(con, run.name, tid)
    if not others:
        st.info("This prompt has no trace sampled from the other model.")
        return
    wanted = state.param("vs", None, int)
    vs = st.selectbox("Other sampler's trace", others, key=f"pair_vs_{tid}",
                      index=others.index(wanted) if wanted in others else 0,
                      format_func=lambda t: f"trace {t}")
    state.set_params(vs=vs if vs != others[0] else None)
    pair = api.sampler_pair(con, run.name, tid, other=vs)
    part = pair["part"]
    if part is None:
        st.caption("The two responses are the same token for token.")
    else:
        said = {who: (repr(pair[who]["tokens"]["token"].iloc[part])
                      if part < pair[who]["length"] else "(ended)") for who in ("base", "tuned")}
        st.text(f"They part at token {part}: base-sampled {said['base']} · "
                f"tuned-sampled {said['tuned']}")
    cols = st.columns(2)
    for col, who in zip(cols, ("base", "tuned")):
        side = pair[who]
        with col:
            st.markdown(f"**{who}-sampled** · trace {side['trace_id']} · "
                        f":{COLOURS[side['verdict']]}[{side['verdict']}] · "
                        f"{side['length']} tokens")
            draw(trace.trace_payload(side["tokens"], metric, threshold,
                                     special_ids=run.special_ids, part=part, scroll=False),
                 key=f"pair_{who}_{run.name}_{side['trace_id']}")
