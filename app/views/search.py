"""Token search: find tokens across a run (or all runs) by conditions; open one in context."""

from __future__ import annotations

import streamlit as st

from app.ui import state
from core import api


def render() -> None:
    infos = state.runs()
    run = state.pick_run(infos)
    st.header("Token search")
    with st.form("token_search"):
        c1, c2, c3 = st.columns(3)
        js_min = c1.number_input("js at least", 0.0, 0.7, value=0.05, step=0.01, format="%.3f")
        rank_min = c2.number_input("rank_base at least (0 = any)", 0, 100000, value=0)
        use_dlogp = c3.checkbox("dlogp at most …", value=False)
        dlogp_max = c3.number_input("dlogp at most", -50.0, 50.0, value=-1.0, step=0.5,
                                    label_visibility="collapsed")
        c4, c5, c6 = st.columns(3)
        text = c4.text_input("token text contains")
        rel = c5.slider("relative position", 0.0, 1.0, (0.0, 1.0), step=0.05)
        correct_only = c6.checkbox("correct traces only")
        every_run = c6.checkbox("search every run", value=False)
        submitted = st.form_submit_button("Search", type="primary")
    if submitted or "search_results" not in st.session_state:
        con = state.connection(infos)
        st.session_state["search_results"] = api.token_search(
            con, js_min=js_min or None, rank_base_min=rank_min or None,
            dlogp_max=dlogp_max if use_dlogp else None, text_contains=text or None,
            rel_pos_range=None if rel == (0.0, 1.0) else rel, correct_only=correct_only,
            runs=None if every_run else [run.name], limit=500)
    res = st.session_state["search_results"]
    st.caption(f"{len(res)} tokens (highest js first, at most 500). Select a row to open the "
               "trace at that token.")
    view = res[["run", "trace_id", "pos", "token", "js", "rank_base", "dlogp", "rel_pos",
                "before", "after"]].copy()
    view["token"] = view["token"].map(repr)
    event = st.dataframe(view, hide_index=True, on_select="rerun", selection_mode="single-row",
                         key="search_table")
    rows = event.selection.rows if event and event.selection else []
    if rows:
        hit = res.iloc[rows[0]]
        st.switch_page(st.session_state["_pages"]["traces"], query_params={
            "run": hit["run"], "trace": str(int(hit["trace_id"])), "pos": str(int(hit["pos"])),
            "metric": "js"})


if __name__ == "__main__":  # Streamlit runs the page file as __main__
    render()
