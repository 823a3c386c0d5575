"""'Fork here': continue a trace at one token with two chosen next tokens (by default each
model's top-1) and compare the branches; saved forks of the trace are listed and reopen."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import state
from app.ui.text import md_escape, show_error
from core.api import (
    branch_options,
    fork,
    list_forks,
    load_fork,
    paper_decoding,
    run_decoding,
    save_fork,
)
from core.errors import PairError, RunsError, ShiftLensError


def _options(run, row: pd.Series):
    """Branch choices from the stored top-k lists at this position (None without them)."""
    if row.get("base_ids") is None or row.get("tuned_ids") is None:
        return None
    tok = state.tokenizer(str(run.path))
    return branch_options(list(row["base_ids"]), list(row["base_probs"]),
                          list(row["tuned_ids"]), list(row["tuned_probs"]),
                          lambda i: tok.decode([int(i)]))


def _show(rollouts: pd.DataFrame, who: str) -> None:
    cols = st.columns(2)
    for col, (branch, g) in zip(cols, rollouts.groupby("branch", sort=False)):
        col.metric(f"{branch} → continued by {who}", f"{100 * g.correct.mean():.0f}% correct",
                   help=f"{len(g)} rollouts")
        col.dataframe(g[["rollout", "correct", "answer", "text"]], hide_index=True)


def fork_panel(run, trace: pd.Series, toks: pd.DataFrame, pos: int) -> None:
    with st.expander(f"Fork here (at token {pos})", icon=":material/call_split:"):
        opts = _options(run, toks.iloc[pos])
        chosen = None
        if opts is not None:
            if opts.same_top1:
                st.warning(md_escape(
                    f"Both models' most likely token here is {opts.labels[opts.base_top1]}: "
                    "the two top-1 branches would be the same branch. The second branch is "
                    "set to the most likely token that differs; pick any other below."))
            b1, b2 = st.columns(2)
            pick = dict(options=opts.tokens, format_func=lambda i: opts.labels[i])
            first = b1.selectbox("First branch starts with", index=opts.tokens.index(
                opts.default[0]), key=f"fork_a_{pos}", **pick)
            second = b2.selectbox("Second branch starts with", index=opts.tokens.index(
                opts.default[1]), key=f"fork_b_{pos}", **pick)
            chosen = (int(first), int(second))
        c1, c2, c3 = st.columns(3)
        who = c1.radio("Continue with", ["tuned", "base"], horizontal=True, key="fork_who")
        k = c2.slider("Rollouts per branch", 1, 32, 8, key="fork_k")
        own, paper = run_decoding(run), paper_decoding()
        dec = {own.label(): own, paper.label(): paper}
        picked = dec[c3.radio("Decoding", list(dec), key="fork_dec",
                              help="default: what the run's traces were sampled with")]
        temperature = picked.temperature
        same = chosen is not None and chosen[0] == chosen[1]
        if same:
            st.caption("Pick two different tokens to compare.")
        if st.button("Fork", type="primary", key="fork_go", disabled=same):
            _run_fork(run, trace, toks, pos, who, k, temperature, chosen, picked.top_p)
        _saved(run, int(trace["trace_id"]))


def _run_fork(run, trace, toks, pos, who, k, temperature, chosen, top_p=1.0) -> None:
    try:
        pair = state.pair(str(run.path))
    except (PairError, RunsError, FileNotFoundError) as e:
        show_error(f"Cannot load this run's pair: {e}")
        return
    with st.spinner("Rolling out both branches…"):
        try:
            rollouts, fork_id = _fork_and_save(run, trace, toks, pos, who, k, temperature,
                                               chosen, pair, top_p)
        except ShiftLensError as e:  # the run renamed meanwhile, a template over its limit
            show_error(e)
            return
    _show(rollouts, who)
    st.caption(md_escape(f"Saved as {fork_id} in {run.name}/{run.forks_file.name}"))


def _fork_and_save(run, trace, toks, pos, who, k, temperature, chosen, pair, top_p=1.0):
    rollouts = fork(pair, trace["prompt"], toks["token_id"].astype(int).tolist(), pos,
                    str(trace["reference"]), verifier=trace["verifier"], continue_with=who,
                    k=k, temperature=temperature, top_p=top_p,
                    max_new_tokens=run.max_new_tokens, chat_template=run.chat_template,
                    tokens=chosen)
    return rollouts, save_fork(run, int(trace["trace_id"]), pos, rollouts)


def _saved(run, trace_id: int) -> None:
    """This trace's saved forks, newest first; choosing one shows its rollouts again."""
    saved = list_forks(run, trace_id)
    if saved.empty:
        return
    st.markdown(f"**Saved forks of trace {trace_id}** ({len(saved)})")
    st.dataframe(saved, hide_index=True, key="fork_list")
    ids = saved.fork_id.tolist()
    wanted = state.param("fork")  # the URL names the reopened fork, so a link reopens it
    fid = st.selectbox("Reopen a saved fork", ids, key=f"fork_reopen_{trace_id}",
                       index=ids.index(wanted) if wanted in ids else None,
                       placeholder="pick a fork",
                       format_func=lambda f: f"{f} · token {saved.pos[ids.index(f)]} · "
                                             f"{saved.branches[ids.index(f)]}")
    state.set_params(fork=fid)
    if fid is not None:
        try:
            rollouts = load_fork(run, fid)
        except KeyError as e:
            show_error(str(e))
            return
        _show(rollouts, rollouts.continued_by.iloc[0])
