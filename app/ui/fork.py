"""'Fork here': continue a trace at one token with each model's top-1 and compare branches."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import state
from app.ui.text import md_escape, show_error
from core.api import fork, save_fork
from core.errors import PairError, RunsError


def fork_panel(run, trace: pd.Series, toks: pd.DataFrame, pos: int) -> None:
    with st.expander(f"Fork here (at token {pos})", icon=":material/call_split:"):
        c1, c2, c3 = st.columns(3)
        who = c1.radio("Continue with", ["tuned", "base"], horizontal=True, key="fork_who")
        k = c2.slider("Rollouts per branch", 1, 32, 8, key="fork_k")
        temperature = c3.number_input("Temperature", 0.0, 2.0, 1.0, 0.1, key="fork_t")
        if not st.button("Fork", type="primary", key="fork_go"):
            return
        try:
            pair = state.pair(str(run.path))
        except (PairError, RunsError, FileNotFoundError) as e:
            show_error(f"Cannot load this run's pair: {e}")
            return
        cfg = run.manifest.get("config", {})
        with st.spinner("Rolling out both branches…"):
            rollouts = fork(pair, trace["prompt"], toks["token_id"].astype(int).tolist(), pos,
                            str(trace["reference"]), verifier=trace["verifier"],
                            continue_with=who, k=k, temperature=temperature,
                            max_new_tokens=int(cfg.get("max_new_tokens", 128)),
                            chat_template=bool(cfg.get("chat_template", True)))
            fork_id = save_fork(run.path, int(trace["trace_id"]), pos, rollouts)
        cols = st.columns(2)
        for col, (branch, g) in zip(cols, rollouts.groupby("branch", sort=True)):
            col.metric(f"{branch} → continued by {who}", f"{100 * g.correct.mean():.0f}% correct",
                       help=f"{len(g)} rollouts")
            col.dataframe(g[["rollout", "correct", "answer", "text"]], hide_index=True)
        st.caption(md_escape(f"Saved as {fork_id} in {run.name}/forks.parquet"))

