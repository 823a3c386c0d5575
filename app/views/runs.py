"""Runs: list, rename, delete (with confirmation), read each manifest, compare two runs on
every overview figure side by side, on shared value axes. Damaged runs are listed with their
one line; they can be deleted (or renamed), never opened."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from app.ui import flash, state
from app.ui.figure import show_figure
from app.ui.text import md_escape, show_error
from core.api import delete_run, rename_run
from core.errors import RunsError
from core.figures.style import share_axes


def _table(infos) -> None:
    st.dataframe(pd.DataFrame([{"run": r.name, "kind": r.kind, "pair": r.pair,
                                "prompts": r.prompt_set, "traces": r.n_traces,
                                "tokens": r.n_tokens, "created": r.created,
                                "re-tokenised": r.retokenized} for r in infos]),
                 column_config={"re-tokenised": st.column_config.NumberColumn(
                     help="rollout runs: text responses whose decode(encode(text)) differs "
                          "from the text (manifest rollouts.retokenization_mismatches)")},
                 hide_index=True)


def _damaged(bad) -> None:
    st.subheader(f"Damaged runs ({len(bad)})")
    st.caption("Left out of every page until their files are restored; delete them below.")
    st.dataframe(pd.DataFrame([{"run": r.name, "what is wrong": r.line()} for r in bad]),
                 hide_index=True)


def _manage(infos) -> None:
    names = [r.name for r in infos]
    name = st.selectbox("Run", names, key="rm_run")
    run = infos[names.index(name)]
    if run.damaged:
        st.error(md_escape(run.line()))
    else:
        with st.expander("Manifest (provenance)"):
            st.json(run.provenance(), expanded=1)
    c1, c2 = st.columns(2)
    new = c1.text_input("Rename to", key="rm_new")
    if c1.button("Rename", key="rm_rename", disabled=not new):
        try:
            rename_run(state.cache_dir(), name, new)
        except (RunsError, ValueError) as e:
            show_error(e)
        else:
            flash.flash(f"renamed {name} → {new}")
            st.rerun()
    # a plain label (screen readers read a widget label as given: no Markdown escapes)
    confirm = c2.text_input("Type the run's name to delete it", key="rm_confirm",
                            placeholder=name)
    if c2.button("Delete", key="rm_delete", disabled=confirm != name, type="primary"):
        try:
            delete_run(state.cache_dir(), name)
        except (RunsError, ValueError) as e:
            show_error(e)
        else:
            flash.flash(f"deleted {name}")
            st.rerun()


def _compare(infos) -> None:
    names = [r.name for r in infos]
    c1, c2 = st.columns(2)
    a = c1.selectbox("Left", names, index=names.index("demo-rl") if "demo-rl" in names else 0,
                     key="cmp_a")
    b = c2.selectbox("Right", names, index=names.index("demo-sft") if "demo-sft" in names
                     else min(1, len(names) - 1), key="cmp_b")
    left = state.overview_figures(infos, a)
    right = {s.id: s for s in state.overview_figures(infos, b)}
    for spec in left:
        col_a, col_b = st.columns(2)
        other = right.get(spec.id)
        if other is not None:  # one scale for both runs: 0-2.5% beside 0-8% misleads
            fa, fb = share_axes(spec.figure, other.figure)
            spec, other = replace(spec, figure=fa), replace(other, figure=fb)
        with col_a:
            show_figure(spec, key=f"cmp_{a}_{spec.id}", narrow=True)
        with col_b:
            if other is not None:
                show_figure(other, key=f"cmpb_{b}_{spec.id}", narrow=True)


def render() -> None:
    st.header("Runs")
    flash.show()
    infos, bad = state.runs(), state.damaged()
    if not infos and not bad:
        st.info(f"No runs in {state.cache_dir()} yet.")
        return
    if infos:
        _table(infos)
    if bad:
        _damaged(bad)
    _manage(infos + bad)
    if infos:
        st.subheader("Compare two runs")
        _compare(infos)


if __name__ == "__main__":  # Streamlit runs the page file as __main__
    render()
