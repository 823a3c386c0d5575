"""Token search: find tokens across a run (or all runs) by conditions (js, rank, dlogp,
substring, regular expression, n-gram, position, correct traces), a page at a time; open one
in context; download every hit as CSV or Parquet.

The filters and the page live in the URL (query parameters below), so a copied link opens
the same search on the same page. The search itself is core's (api.token_search*): this page
reads the URL, draws the form and the table, and says a refusal (an invalid regular
expression, a bad n-gram) in one line of text. It computes nothing itself."""

from __future__ import annotations

import math

import streamlit as st

from app.ui import state
from app.ui.text import md_escape
from core import api
from core.errors import SearchError

PAGE_ROWS = 100
EXPORT_MAX = 2_000_000  # hits the page offers to download; beyond, the CLI writes them
# URL key: (default, cast). Defaults are left out of the URL.
FIELDS = {"js": (0.05, float), "rank": (0, int), "dlogp": (None, float), "text": ("", str),
          "re": ("", str), "ngram": ("", str), "rel": ("0,1", str), "correct": (0, int),
          "every": (0, int)}

WIDGETS = ("s_js", "s_rank", "s_use_dl", "s_dlogp", "s_text", "s_re", "s_ngram", "s_rel",
           "s_correct", "s_every")


def _rel(raw: str) -> tuple[float, float]:
    try:
        lo, hi = (min(max(float(v), 0.0), 1.0) for v in raw.split(","))
    except ValueError:
        return 0.0, 1.0
    return (lo, hi) if lo <= hi else (0.0, 1.0)


def from_url() -> dict:
    """The search fields as the URL gives them (malformed or out-of-range values: defaults)."""
    f = {k: state.param(k, d, cast) for k, (d, cast) in FIELDS.items()}
    if not 0.0 <= f["js"] <= 0.7:
        f["js"] = FIELDS["js"][0]
    if not 0 <= f["rank"] <= 100_000:
        f["rank"] = 0
    if f["dlogp"] is not None and not -50.0 <= f["dlogp"] <= 50.0:
        f["dlogp"] = None
    f["rel"] = _rel(f["rel"])
    f["correct"], f["every"] = bool(f["correct"]), bool(f["every"])
    return f


def to_url(f: dict) -> None:
    """Write the search fields into the URL (defaults removed) and go back to page 1."""
    raw = {**f, "rel": f"{f['rel'][0]:g},{f['rel'][1]:g}", "correct": int(f["correct"]),
           "every": int(f["every"])}
    state.set_params(page=None, **{k: None if raw[k] == (FIELDS[k][0] if k != "rel" else "0,1")
                                   or raw[k] in ("", None) else raw[k] for k in FIELDS})


def _form(f: dict) -> dict | None:
    """The form, filled from `f`; the submitted fields, or None when not submitted."""
    with st.form("token_search"):
        c1, c2, c3 = st.columns(3)
        js_min = c1.number_input("js at least", 0.0, 0.7, value=f["js"], step=0.01,
                                 format="%.3f", key="s_js")
        rank_min = c2.number_input("rank_base at least (0 = any)", 0, 100000, value=f["rank"],
                                   key="s_rank")
        use_dlogp = c3.checkbox("dlogp at most …", value=f["dlogp"] is not None, key="s_use_dl")
        dlogp_max = c3.number_input("dlogp at most", -50.0, 50.0, step=0.5, key="s_dlogp",
                                    value=f["dlogp"] if f["dlogp"] is not None else -1.0,
                                    label_visibility="collapsed")
        c4, c5, c6 = st.columns(3)
        text = c4.text_input("token text contains", value=f["text"], key="s_text")
        regex = c5.text_input("token text matches (regular expression)", value=f["re"],
                              key="s_re", help="RE2 syntax, anywhere in the token: anchor "
                              "with ^ and $; (?i) ignores case. No look-arounds or "
                              "back-references (matching stays linear in the text).")
        ngram = c6.text_input("n-gram (consecutive tokens, separated by |)", value=f["ngram"],
                              key="s_ngram", help="Spaces are kept: 'the| answer' is the token "
                              "'the' then ' answer'. Escapes: \\| \\n \\t \\\\. Each row is the "
                              "n-gram's first token.")
        c7, c8 = st.columns([2, 1])
        rel = c7.slider("relative position", 0.0, 1.0, f["rel"], step=0.05, key="s_rel")
        correct_only = c8.checkbox("correct traces only", value=f["correct"], key="s_correct")
        every_run = c8.checkbox("search every run", value=f["every"], key="s_every")
        if not st.form_submit_button("Search", type="primary"):
            return None
    return {"js": js_min, "rank": rank_min, "dlogp": dlogp_max if use_dlogp else None,
            "text": text, "re": regex, "ngram": ngram, "rel": tuple(rel),
            "correct": correct_only, "every": every_run}


def filters(f: dict, run: str) -> dict:
    """core's token_search keyword arguments for the fields `f` (SearchError: a bad n-gram)."""
    return dict(js_min=f["js"] or None, rank_base_min=f["rank"] or None, dlogp_max=f["dlogp"],
                text_contains=f["text"] or None, regex=f["re"] or None,
                ngram=api.parse_ngram(f["ngram"]) if f["ngram"] else None,
                rel_pos_range=None if f["rel"] == (0.0, 1.0) else f["rel"],
                correct_only=f["correct"], runs=None if f["every"] else [run])


def _exports(con, kw: dict, n: int) -> None:
    if n > EXPORT_MAX:
        st.caption(f"{n:,} hits: too many to download here; `python -m core search ... --out "
                   "hits.parquet` writes them all.")
        return
    row = st.container(horizontal=True)  # buttons as wide as their labels, wrapping
    for label, fmt, mime in (("CSV", "csv", "text/csv"),
                             ("Parquet", "parquet", "application/octet-stream")):
        row.download_button(f"All {n:,} hits as {label}", key=f"s_dl_{fmt}",
                            data=lambda fmt=fmt: api.token_search_bytes(con, fmt, **kw),
                            file_name=f"token-search.{fmt}", mime=mime, on_click="ignore",
                            icon=":material/download:")


def render() -> None:
    infos = state.runs()
    run = state.pick_run(infos)
    st.header("Token search")
    f = from_url()
    if st.session_state.get("_s_fields") != f:  # a link or back/forward: the form follows it
        for k in WIDGETS:
            st.session_state.pop(k, None)
    submitted = _form(f)
    if submitted is not None:
        to_url(submitted)
        f = submitted
    st.session_state["_s_fields"] = f
    con = state.connection(infos)
    try:
        kw = filters(f, run.name)
        n = api.token_search_count(con, **kw)
    except SearchError as e:  # refused before any query: one line, as text
        st.error(md_escape(e))
        return
    pages = max(1, math.ceil(n / PAGE_ROWS))
    page = min(max(state.param("page", 1, int), 1), pages)
    res = api.token_search(con, limit=PAGE_ROWS, offset=(page - 1) * PAGE_ROWS, **kw)
    first = (page - 1) * PAGE_ROWS + 1
    st.caption(f"Tokens {first:,}–{first + len(res) - 1:,} of {n:,} (highest js first). "
               "Select a row to open the trace at that token." if n else
               "No token matches these conditions.")
    if pages > 1:
        c1, _ = st.columns([1, 2])
        st.session_state["s_page"] = page  # the URL's page wins (a copied link, back/forward)
        c1.number_input(f"Page (of {pages:,})", 1, pages, key="s_page",
                        on_change=lambda: state.set_params(page=st.session_state["s_page"]))
    state.set_params(page=page if page > 1 else None)
    view = res[["run", "trace_id", "pos", "token", "js", "rank_base", "dlogp", "rel_pos",
                "before", "after"]].copy()
    view["token"] = view["token"].map(repr)
    event = st.dataframe(view, hide_index=True, on_select="rerun", selection_mode="single-row",
                         key=f"search_table_{page}")
    if n:
        _exports(con, kw, n)
    rows = event.selection.rows if event and event.selection else []
    if rows:
        hit = res.iloc[rows[0]]
        st.switch_page(st.session_state["_pages"]["traces"], query_params={
            "run": hit["run"], "trace": str(int(hit["trace_id"])), "pos": str(int(hit["pos"])),
            "metric": "js"})


if __name__ == "__main__":  # Streamlit runs the page file as __main__
    render()
