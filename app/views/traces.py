"""Trace browser: traces sorted by divergence, one trace highlighted token by token."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import state, tokens
from app.ui.critical import critical_panel
from app.ui.fork import fork_panel
from app.ui.pair_view import pair_section
from app.ui.text import md_escape
from app.ui.trace_view import trace_step
from core import api

SORTS = {"max js": "max_js", "mean js": "mean_js", "high-js tokens": "n_high",
         "correct": "correct", "length": "length"}


PAGE = 500  # traces per page of the table


def _filters(con, run) -> dict:
    """The table's sort and filter widgets (kept in the URL) as trace_list arguments."""
    sampled_from = _sampler(con, run)
    c1, c2, c3, c4 = st.columns([2, 1.4, 1, 2])  # "descending" uncut at 1,000 px
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
    return dict(sort_by=SORTS[sort_label], descending=descending, search=search or None,
                correct=verdicts[verdict], sampled_from=sampled_from)


def _sampler(con, run) -> str:
    """Which model's samples the table lists, in the URL's `from` as on the overview: the
    run's default first (tuned-sampled traces where it has them, as the overview), then the
    other sampler, then every trace (chosen for a linked trace the default leaves out)."""
    options = [o for o in api.sampled_from_choices(con, run.name) if o != "split"]
    wanted = state.param("from")
    tid = state.param("trace", None, int)
    if wanted is None and tid is not None and api.trace_position(
            con, run.name, tid, sampled_from=options[0]) is None:
        wanted = "pooled"  # a link to a trace of the other sampler (e.g. token search's)
    choice = st.radio("Sampled by", options, key=f"trace_from_{run.name}", horizontal=True,
                      index=options.index(wanted) if wanted in options else 0,
                      format_func=lambda o: state.SAMPLED_FROM_LABELS[o])
    state.set_params(**{"from": choice if choice != options[0] else None})
    return choice


def _page_turned() -> None:
    st.query_params["page"] = str(st.session_state["trace_page"])
    st.session_state["_page_turned"] = True


def _page(con, run, f: dict) -> tuple[pd.DataFrame, int | None]:
    """The page of traces to show, and the trace to open: the URL's trace (on whatever page
    the current order puts it, so links from token search land on their trace), else the
    page's first. Turning the page opens that page's first trace."""
    total = api.trace_count(con, run.name, search=f["search"], correct=f["correct"],
                            sampled_from=f["sampled_from"])
    if total == 0:
        return pd.DataFrame(), None
    n_pages = -(-total // PAGE)
    page = min(max(state.param("page", 1, int), 1), n_pages)
    want = state.param("trace", None, int)
    if st.session_state.pop("_page_turned", False):
        want = None
    elif want is not None:
        place = api.trace_position(con, run.name, want, **f)
        if place is None:
            want = None
        else:
            page = place // PAGE + 1
    if n_pages > 1:
        st.session_state["trace_page"] = page
        c1, c2 = st.columns([1, 5])
        c1.number_input("Page", min_value=1, max_value=n_pages, step=1, key="trace_page",
                        on_change=_page_turned)
        c2.caption(f"traces {(page - 1) * PAGE + 1:,}–{min(page * PAGE, total):,} of "
                   f"{total:,} · {PAGE} a page")
    state.set_params(page=page if page > 1 else None)
    traces = api.trace_list(con, run.name, limit=PAGE, offset=(page - 1) * PAGE, **f)
    return traces, want if want is not None else int(traces.trace_id.iloc[0])


def _picked(key: str, traces: pd.DataFrame) -> int | None:
    """The trace id of the table row this session selected (None when none is)."""
    try:
        rows = list(st.session_state[key]["selection"]["rows"])
    except (KeyError, TypeError):
        return None
    rows = [r for r in rows if 0 <= r < len(traces)]
    return int(traces.trace_id.iloc[rows[0]]) if rows else None


def render() -> None:
    infos = state.runs()
    run = state.pick_run(infos)
    con = state.connection(infos)
    st.header("Trace browser")
    traces, want = _page(con, run, _filters(con, run))
    if traces.empty:
        st.warning("No trace matches these filters.")
        return
    table_key = f"trace_table_p{state.param('page', 1, int)}"  # a page's own selection
    picked = _picked(table_key, traces)  # read before drawing, so the mark is current
    if picked is not None and picked != st.session_state.get("_picked_row"):
        want = picked
        st.session_state["_picked_row"] = picked
        state.set_params(pos=None)
    tid = want
    step = trace_step(f"tv_{run.name}_{tid}")  # n / p pressed in the trace view
    ids = traces.trace_id.tolist()
    if step and tid in ids and 0 <= ids.index(tid) + step < len(ids):
        tid = int(ids[ids.index(tid) + step])
        state.set_params(pos=None)
    shown = traces.drop(columns=["reference", "extracted_answer", "verifier"])
    shown.insert(0, "open", ["▶" if t == tid else "" for t in shown.trace_id])
    st.dataframe(shown, hide_index=True, height=220, key=table_key, on_select="rerun",
                 selection_mode="single-row",
                 column_config={"open": st.column_config.TextColumn(
                                    "open", width="small", help="the trace shown below"),
                                "prompt": st.column_config.TextColumn(width="large")})
    trace = traces[traces.trace_id == tid].iloc[0]
    st.subheader(f"Trace {tid}", anchor=False)
    toks = api.trace_tokens(con, run.name, tid)

    metric, threshold, collapse = tokens.controls(values=toks)
    strength = tokens.strength_of(toks, metric, threshold)[1]
    special = run.special_ids
    pos = state.param("pos", None, int)
    pos = pos if pos is not None and 0 <= pos < len(toks) else None
    pos = tokens.navigate(strength, pos)

    # user-supplied text goes through st.code / st.text, never markdown
    st.code(trace["prompt"], language=None, wrap_lines=True)
    ca, cb = st.columns(2)
    ca.text(f"reference answer: {trace['reference']}")
    cb.text(f"extracted answer: {trace['extracted_answer']}")
    verdict = {True: ":green[correct]", False: ":red[incorrect]"}.get(
        None if pd.isna(trace["correct"]) else bool(trace["correct"]), "not verified")
    finished = trace.get("finished")
    cut = (" · :orange[cut at the length cap: no end-of-sequence token]"  # rollouts: no cap
           if finished is not None and not pd.isna(finished) and not bool(finished)
           and run.rollouts is None else "")
    st.markdown(f"**Verdict** {verdict} · sampled from the **{md_escape(trace['sampled_from'])}"
                f"** model · {trace['length']} tokens{cut}")
    lanes = st.toggle("Probability lanes", value=state.param("lanes", "0") == "1",
                      key="lanes", help="under each token, both models' probability of it "
                                        "(bar) and its rank (number): base, then tuned")
    pos = tokens.view(toks, metric, threshold, collapse, special, pos,
                      key=f"tv_{run.name}_{tid}", lanes=lanes, keys=True)
    state.set_params(trace=tid, metric=metric, pos=pos, fold="1" if collapse else None,
                     lanes="1" if lanes else None,
                     thr=None if tokens.METRICS[metric][1] in tokens.NO_SLIDER
                     else f"{threshold:g}")
    tokens.selected(toks, pos)
    pair_section(con, run, tid, metric, threshold)
    critical_panel(run, toks, tid)
    if pos is not None:
        fork_panel(run, trace, toks, pos)


if __name__ == "__main__":  # Streamlit runs the page file as __main__
    render()
