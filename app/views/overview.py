"""Overview: every analysis of the paper as a figure with a one-line caption and key number,
on the traces the `from` control chooses (default: the tuned model's samples, the paper's
setting); every caption names them."""

from __future__ import annotations

import streamlit as st

from app.ui import state
from app.ui.figure import show_figure
from app.ui.text import md_escape
from core import api


def _pct(rows, col: str, digits: int) -> str:
    """A headline share: one value, or one per sampler side by side (split) in caption order."""
    return " · ".join("—" if v != v else f"{100 * v:.{digits}f}%" for v in rows[col])


def _headline(con, run, sampled_from=None) -> None:
    rows = api.headline(con, runs=[run.name], sampled_from=sampled_from)
    hl = rows.iloc[0]
    # two rows: five columns at 1,000 px cut both js labels to "tokens with js..."
    c = [*st.columns(3), *st.columns(2)]
    c[0].metric("tokens with js < 0.01", _pct(rows, "share_near_zero", 1))
    c[1].metric("tokens with js > 0.1", _pct(rows, "share_high", 2))
    c[2].metric("top-1 agreement", _pct(rows, "top1_agree", 1))
    acc, source = run.checkpoint_accuracy()  # never another model's samples
    c[3].metric("accuracy (this checkpoint)", "not measured" if acc is None
                else f"{100 * acc:.1f}%", help=f"the tuned checkpoint's own accuracy: {source}")
    c[4].metric("accuracy (base samples)", "—" if hl.accuracy_base != hl.accuracy_base
                else f"{100 * hl.accuracy_base:.1f}%")
    st.caption(md_escape(_two_metrics(con, run, rows, sampled_from)))
    note = run.reused_note()
    st.caption(md_escape(f"Accuracy of this checkpoint: {source}."
                         + (f" {note}" if note else "")))


def _ci(v, lo, hi) -> str:
    if v != v:
        return "—"
    return f"{100 * v:.2f}%" + ("" if lo != lo or hi != hi
                                else f" [{100 * lo:.2f}%, {100 * hi:.2f}%]")


def _two_metrics(con, run, rows, sampled_from) -> str:
    """The headline share above 0.1 under both metrics, side by side, with intervals."""
    full = " · ".join(_ci(r.share_high, r.share_high_lo, r.share_high_hi)
                      for r in rows.itertuples())
    text = f"Share of tokens with js > 0.1: {full} with full-vocabulary js (the analyses' metric)"
    nucleus = run.js_top_p
    try:
        tp = api.sparsity_summary(con, high=0.1, metric="js_top_p", runs=[run.name],
                                  sampled_from=sampled_from)
    except ValueError:  # a run written before js_top_p existed
        return text + "; truncated js is not stored in this run."
    trunc = " · ".join(_ci(r.share_high, r.share_high_lo, r.share_high_hi)
                       for r in tp.itertuples())
    paper = " (the paper's measure)" if nucleus == 0.7 else ""
    return (text + f"; {trunc} with js on top-p {nucleus if nucleus is not None else '?'} "
            f"truncated distributions{paper}. Brackets: 95% intervals from a bootstrap over "
            "prompts.")


def _most_divergent(con, run, shown: str) -> None:
    """The interesting first: the most divergent traces and tokens, one click away, among
    the traces the analyses use (`shown`: a sampled_from choice; pooled and split: all)."""
    left, right = st.columns(2)
    which = md_escape(state.SAMPLED_FROM_LABELS[shown])
    left.markdown(f"**Most divergent traces** · {which}")
    for t in api.trace_list(con, run.name, sort_by="max_js", limit=5,
                            sampled_from=shown).itertuples():
        left.page_link(st.session_state["_pages"]["traces"],
                       label=md_escape(f"trace {t.trace_id} · max js {t.max_js:.3f} · {t.prompt}"),
                       query_params={"run": run.name, "trace": str(t.trace_id)})
    right.markdown(f"**Most divergent tokens** · {which}")
    for t in api.token_search(con, js_min=0.0, runs=[run.name], limit=5,
                              sampled_from=shown).itertuples():
        right.page_link(st.session_state["_pages"]["traces"],
                        label=md_escape(f"{t.token!r} · js {t.js:.3f} · trace {t.trace_id} "
                                        f"pos {t.pos}"),
                        query_params={"run": run.name, "trace": str(t.trace_id),
                                      "pos": str(t.pos)})


def render() -> None:
    infos = state.runs()
    run = state.pick_run(infos)
    con = state.connection(infos)
    st.header(f"Overview · {md_escape(run.name)}")
    sampled_from = state.sampled_from(con, run)
    _headline(con, run, sampled_from)
    st.caption(md_escape("Token shares and top-1 agreement "
                         + api.describe_traces(con, [run.name], sampled_from) + "."))
    _most_divergent(con, run, sampled_from or api.sampled_from_choices(con, run.name)[0])
    others = api.contrast_candidates(infos, run)
    contrast = st.sidebar.selectbox("Compare with", ["(none)"] + others,
                                    index=1 if others else 0, key="contrast")
    contrast = None if contrast == "(none)" else contrast
    series = api.series_of(infos, run) or None
    specs = state.overview_figures(infos, run.name, series=series, contrast_with=contrast,
                                   sampled_from=sampled_from)
    st.download_button("Figure bundle (zip)", icon=":material/folder_zip:",
                       data=lambda: api.bundle_bytes(specs, run.path),
                       file_name=api.bundle_name(run.name), mime="application/zip",
                       on_click="ignore", key="bundle")
    for spec in specs:
        show_figure(spec, key=f"{run.name}_{spec.id}")


if __name__ == "__main__":  # Streamlit runs the page file as __main__
    render()
