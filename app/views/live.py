"""Live scoring: type or paste any text and see it scored under both models of a run's pair."""

from __future__ import annotations

import streamlit as st

from app.ui import state, tokens
from app.ui.text import md_escape, show_error
from core.api import coverage, score_text
from core.errors import PairError, RunsError, ShiftLensError


def render() -> None:
    infos = state.runs()
    run = state.pick_run(infos)
    st.header("Live scoring")
    st.caption("Score any text under the base and tuned models of this run's pair: the "
               "response is read as the continuation of the prompt (teacher forcing).")
    with st.form("live"):
        prompt = st.text_area("Prompt (optional)", value="What is 3 + 4 * 5 ?", height=80)
        response = st.text_area(
            "Response", value=" First 4 * 5 = 20 . Then 3 + 20 = 23 . So the answer is #### 23",
            height=120)
        go = st.form_submit_button("Score", type="primary")
    if go:
        try:
            pair = state.pair(str(run.path))
        except (PairError, RunsError, FileNotFoundError) as e:
            show_error(f"Cannot load this run's pair: {e}")
            return
        flags = [f"{what}: {line}" for what, text in (("response", response),
                                                      ("prompt", prompt))
                 if text and (line := coverage(pair.tokenizer, text).line())]
        try:
            scored = score_text(pair, response, prompt)
        except ShiftLensError as e:  # a text or chat template over its limit: one line
            show_error(e)
            return
        st.session_state["live_result"] = (run.name, scored, "\n".join(flags))
        st.session_state["live_pos"] = None
    kept = st.session_state.get("live_result")
    if kept is None:
        return
    scored_run, toks, flag = kept
    if scored_run != run.name:  # scores belong to the pair they were computed with
        st.session_state.pop("live_result", None)
        st.info(f"The last scores were computed with run “{md_escape(scored_run)}”; press "
                "Score to score the text with this run's pair.")
        return
    if flag:  # the text quotes the user's characters: escaped, one line each
        st.warning("  \n".join(md_escape(x) for x in flag.splitlines()))
    if toks.empty:
        st.warning("Nothing to score: the response has no tokens.")
        return
    metric, threshold, collapse = tokens.controls(prefix="live_", url=False, values=toks)
    strength = tokens.strength_of(toks, metric, threshold)[1]
    special = run.special_ids
    pos = tokens.navigate(strength, st.session_state.get("live_pos"), prefix="live_")
    pos = tokens.view(toks, metric, threshold, collapse, special, pos,
                      key="tv_live")
    st.session_state["live_pos"] = pos
    tokens.selected(toks, pos)


if __name__ == "__main__":  # Streamlit runs the page file as __main__
    render()
