"""Critical tokens of a trace: the positions a critical-token scan (`shiftlens critical`)
stored for it, the decisive ones (effect interval excluding 0) named first. Token text is
shown in a dataframe (text, never Markdown); nothing is listed for a trace never scanned."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.api import critical_marks


def critical_panel(run, toks: pd.DataFrame, trace_id: int) -> None:
    marks = critical_marks(run.path, trace_id)
    if marks.empty:
        return
    text = toks.set_index("pos").token
    marks.insert(1, "token", [str(text.get(p, "")) for p in marks.pos])
    marks = marks.sort_values(["critical", "pos"], ascending=[False, True])
    n = int(marks.critical.sum())
    where = ", ".join(str(p) for p in marks[marks.critical].pos) or "none"
    label = f"Critical tokens: {n} of {len(marks)} scanned positions (at {where})"
    with st.expander(label, icon=":material/priority_high:", expanded=n > 0):
        st.caption("Rollouts from the prefix with each model's top-1 at the position, "
                   "continued by the model that sampled the trace; effect = accuracy with "
                   "the tuned choice minus with the base choice (95% interval). Critical: "
                   "the interval excludes 0. Open a position with ?pos= or the token view.")
        st.dataframe(marks[["pos", "token", "critical", "groups", "js", "entropy",
                            "same_choice", "k", "acc_tuned", "acc_base", "effect",
                            "effect_lo", "effect_hi"]], hide_index=True)
