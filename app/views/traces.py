"""Trace browser: traces sorted by divergence, one trace highlighted token by token."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from app.colours import METRICS, colour_tokens, folds, legend_html
from app.components.trace_view import trace_view
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


def _topk_panel(row: pd.Series) -> None:
    """Both models' top-k side by side, the trace token marked, and the token's metrics."""
    if row.get("base_ids") is None:
        st.info("No top-k lists stored for this run.")
        return
    cols = st.columns(2)
    for col, who in zip(cols, ("base", "tuned")):
        df = pd.DataFrame({"rank": range(1, len(row[f"{who}_ids"]) + 1),
                           "token": [repr(t) for t in row[f"{who}_tokens"]],
                           "prob": row[f"{who}_probs"],
                           "in trace": ["◀" if i == row["token_id"] else ""
                                        for i in row[f"{who}_ids"]]})
        col.markdown(f"**{who} model** top-{len(df)}")
        col.dataframe(df, hide_index=True, width="stretch",
                      column_config={"prob": st.column_config.ProgressColumn(
                          "prob", min_value=0.0, max_value=1.0, format="%.3f")})
    metrics = {k: row[k] for k in ("js", "js_top_p", "kl_tb", "kl_bt", "entropy_base",
                                   "entropy_tuned", "logp_base", "logp_tuned", "dlogp",
                                   "rank_base", "rank_tuned", "top1_agree", "rel_pos")}
    st.dataframe(pd.DataFrame([metrics]), hide_index=True)


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
    shown = traces.drop(columns=["reference", "extracted_answer"])
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

    c1, c2, c3 = st.columns([2, 2, 1])
    metric_names = list(METRICS)
    metric = c1.selectbox("Highlight by", metric_names, key="metric",
                          index=metric_names.index(state.param("metric", "js"))
                          if state.param("metric", "js") in METRICS else 0,
                          format_func=lambda m: METRICS[m][0])
    default_thr = {"rank_base": 2.0, "dlogp": 0.5}.get(metric, 0.01)
    if metric == "rank_base":
        threshold = 2.0
    else:
        threshold = c2.slider("Threshold", 0.0, float(METRICS[metric][2]),
                              value=min(state.param("thr", default_thr, float),
                                        float(METRICS[metric][2])),
                              step=0.005, key=f"thr_{metric}")
    collapse = c3.toggle("Fold calm spans", value=state.param("fold", "0") == "1", key="fold")
    colours, strength = colour_tokens(toks[metric].tolist(), metric, threshold)
    special = set(run.manifest.get("tokenizer", {}).get("special_ids", []))
    pos = state.param("pos", None, int)
    pos = pos if pos is not None and 0 <= pos < len(toks) else None

    divergent = [i for i, s in enumerate(strength) if s > 0]
    b1, b2, b3 = st.columns([1, 1, 4])
    if b1.button("◀ previous divergent", disabled=not divergent, key="prev"):
        before = [i for i in divergent if pos is None or i < pos]
        pos = before[-1] if before else divergent[-1]
    if b2.button("next divergent ▶", disabled=not divergent, key="next"):
        after = [i for i in divergent if pos is None or i > pos]
        pos = after[0] if after else divergent[0]
    b3.caption(f"{len(divergent)} of {len(toks)} tokens highlighted")

    # user-supplied text goes through st.code / st.text, never markdown
    st.code(trace["prompt"], language=None, wrap_lines=True)
    ca, cb = st.columns(2)
    ca.text(f"reference answer: {trace['reference']}")
    cb.text(f"extracted answer: {trace['extracted_answer']}")
    st.markdown(f"**Verdict** {':green[correct]' if trace['correct'] else ':red[incorrect]'} · "
                f"sampled from the **{trace['sampled_from']}** model · {trace['length']} tokens")
    st.html(legend_html(metric, threshold))
    titles = [f"pos {i} · {metric} {v:.4g} · rank_base {rb}" for i, (v, rb) in
              enumerate(zip(toks[metric].tolist(), toks["rank_base"].tolist()))]
    clicked = trace_view(toks["token"].tolist(), colours, strength, titles,
                         [int(t) in special for t in toks["token_id"]], pos,
                         folds(strength) if collapse else [], key=f"tv_{run.name}_{tid}")
    if clicked is not None:
        pos = clicked
    state.set_params(trace=tid, metric=metric, pos=pos, fold="1" if collapse else None,
                     thr=None if metric == "rank_base" else f"{threshold:g}")
    if pos is not None:
        st.subheader(f"Token {pos}: {toks['token'].iloc[pos]!r}")
        _topk_panel(toks.iloc[pos])
    else:
        st.caption("Click a token (or the strip) to see both models' top-k.")
