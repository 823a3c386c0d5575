"""Trace browser: traces sorted by divergence, one trace highlighted token by token."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from app.widgets import tokens
from app.widgets.fork import fork_panel
from core import queries

SORTS = {"max js": "max_js", "mean js": "mean_js", "high-js tokens": "n_high",
         "correct": "correct", "length": "length"}


def _trace_table(con, run) -> pd.DataFrame:
    c1, c2, c3, c4 = st.columns([2, 1, 1, 2])
    sort_label = c1.selectbox("Sort traces by", list(SORTS), key="sort",
                              index=list(SORTS.values()).index(state.param("sort", "max_js"))
                              if state.param("sort", "max_js") in SORTS.values() else 0)
    descending = c2.toggle("descending", value=state.param("desc", "1") == "1", key="desc")
    verdicts = {"all": None, "correct": True, "incorrect": False}
    verdict = c3.selectbox("Verdict", list(verdicts), key="verdict",
                           index=list(verdicts).index(state.param("verdict", "all"))
                           if state.param("verdict", "all") in verdicts else 0)
    search = c4.text_input("Search prompts", value=state.param("q", ""), key="search")
    state.set_params(sort=SORTS[sort_label], desc="1" if descending else "0",
                     verdict=None if verdict == "all" else verdict, q=search or None)
    return queries.trace_list(con, run.name, sort_by=SORTS[sort_label], descending=descending,
                              search=search or None, correct=verdicts[verdict], limit=500)


def render() -> None:
    infos = state.runs()
    run = state.pick_run(infos)
    con = state.connection(infos)
    st.header("Trace browser")
    traces = _trace_table(con, run)
    if traces.empty:
        st.warning("No trace matches these filters.")
        return
    want = state.param("trace", None, int)
    if want not in set(traces.trace_id):
        want = int(traces.trace_id.iloc[0])
    shown = traces.drop(columns=["reference", "extracted_answer", "verifier"])
    event = st.dataframe(shown, hide_index=True, height=220, key="trace_table",
                         on_select="rerun", selection_mode="single-row",
                         column_config={"prompt": st.column_config.TextColumn(width="large")})
    rows = event.selection.rows if event and event.selection else []
    if rows and int(traces.trace_id.iloc[rows[0]]) != st.session_state.get("_picked_row"):
        want = int(traces.trace_id.iloc[rows[0]])
        st.session_state["_picked_row"] = want
        state.set_params(pos=None)
    tid = want
    trace = traces[traces.trace_id == tid].iloc[0]
    toks = queries.trace_tokens(con, run.name, tid)

    metric, threshold, collapse = tokens.controls()
    colours, strength = tokens.strength_of(toks, metric, threshold)
    special = set(run.manifest.get("tokenizer", {}).get("special_ids", []))
    pos = state.param("pos", None, int)
    pos = pos if pos is not None and 0 <= pos < len(toks) else None
    pos = tokens.navigate(strength, pos)

    # user-supplied text goes through st.code / st.text, never markdown
    st.code(trace["prompt"], language=None, wrap_lines=True)
    ca, cb = st.columns(2)
    ca.text(f"reference answer: {trace['reference']}")
    cb.text(f"extracted answer: {trace['extracted_answer']}")
    st.markdown(f"**Verdict** {':green[correct]' if trace['correct'] else ':red[incorrect]'} · "
                f"sampled from the **{trace['sampled_from']}** model · {trace['length']} tokens")
    pos = tokens.view(toks, metric, threshold, collapse, colours, strength, special, pos,
                      key=f"tv_{run.name}_{tid}")
    state.set_params(trace=tid, metric=metric, pos=pos, fold="1" if collapse else None,
                     thr=None if metric == "rank_base" else f"{threshold:g}")
    tokens.selected(toks, pos)
    if pos is not None:
        fork_panel(run, trace, toks, pos)
