"""Shared app state: the cache folder, the chosen run, a cached DuckDB connection, and the
URL (query parameters) that carries run, trace, position, metric, filters and which traces
the analyses use (`from`).

Pages get healthy runs (`runs()`); damaged ones (`damaged()`, core.store.validate) are
listed in the sidebar with their one line and never opened."""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from app.ui.text import md_escape
from core import api
from core.api import Run
from core.figures import overview

OPENED_KEY = "_opened_runs"  # the run folders this session's collection was opened on
RUN_KEY = "_run"  # this session's run (not a widget key: Streamlit drops those on page change)


def submitter() -> str:
    """Who queues a job from this page: this browser session (the queue's per-submitter cap
    and round-robin order, core.jobs.queue), as a hash: the session id itself is never
    written to disk."""
    import hashlib

    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    sid = ctx.session_id if ctx is not None else ""
    return f"session {hashlib.sha256(sid.encode()).hexdigest()[:12]}"


def cache_dir() -> Path:
    """The folder of runs: $SHIFTLENS_CACHE, else cache/ in the repository."""
    return api.default_cache()


def _all() -> list[Run]:
    return api.list_runs(cache_dir())


def runs() -> list[Run]:
    """The healthy runs of the cache, newest first (damaged ones are left out)."""
    return [r for r in _all() if not r.damaged]


def damaged() -> list[Run]:
    """The damaged runs of the cache, each with its one line (Run.line)."""
    return [r for r in _all() if r.damaged]


@st.cache_resource(show_spinner="Opening the runs…")
def _connection(paths: tuple[str, ...], names: tuple[str, ...], stamp: tuple[float, ...]):
    return api.open_runs(list(paths), names=list(names))


def connection(infos: list[Run]):
    """This session's cursor of the server's one DuckDB connection per set of runs (runs
    named by folder: the names the app shows and puts in URLs; reopened when a run folder
    changes). Sessions never share a cursor: DuckDB runs one call at a time per connection
    object, while cursors of one connection run side by side over the same data and share
    its indexes. A run whose files change (or are replaced) reopens the collection.

    Nor do two script runs of one session: with Streamlit's fast reruns (its default) a
    widget change starts the new run in a new thread while the old one may still be inside
    a DuckDB call, and one cursor shared by both is "busy". So the cursor is this session's
    for this script run's thread; a new thread gets a new cursor (cheap: nothing is copied)
    and the old thread keeps its own until it ends."""
    infos = [r for r in infos if not r.damaged]
    paths = tuple(str(r.path) for r in infos)
    stamp = tuple(r.signature() for r in infos)
    st.session_state[OPENED_KEY] = paths  # what a failed query re-validates (app/main.py)
    shared = _connection(paths, tuple(r.name for r in infos), stamp)
    mine = st.session_state.setdefault("_cursors", {})
    key = (id(shared), threading.get_ident())
    if key not in mine or mine[key][0] is not shared:
        # another collection or another run's thread: the old cursor's views may name moved
        # files, and the old thread may still be using it (it holds its own reference)
        mine.clear()
        mine[key] = (shared, api.session(shared))
    return mine[key][1]


@st.cache_data(show_spinner=False, max_entries=64)
def _overview(paths: tuple[str, ...], names: tuple[str, ...], stamp: tuple[float, ...],
              run: str, series: tuple[str, ...] | None, contrast_with: str | None,
              sampled_from: str | None):
    cur = api.session(_connection(paths, names, stamp))
    try:
        return overview(cur, run, series=list(series) if series else None,
                        contrast_with=contrast_with, sampled_from=sampled_from)
    finally:
        cur.close()


def overview_figures(infos: list[Run], run: str, *, series=None, contrast_with=None,
                     sampled_from=None):
    """core.figures.overview of `run` over the runs `infos`, computed once per server for
    the same runs (their files' signatures), run and options: about a hundred queries, a
    second or more per run, which the Overview page and the Runs page's comparison paid on
    every interaction. Each call gets its own copy (st.cache_data), so a session may change
    its figures without another seeing it."""
    infos = [r for r in infos if not r.damaged]
    return _overview(tuple(str(r.path) for r in infos), tuple(r.name for r in infos),
                     tuple(r.signature() for r in infos), str(run),
                     tuple(series) if series else None, contrast_with, sampled_from)


@st.cache_resource(show_spinner="Loading the pair…", max_entries=2)
def pair(run_dir: str):
    """The run's base/tuned pair, loaded once per server (models stay in memory)."""
    return api.pair_of_run(run_dir)


@st.cache_resource(show_spinner=False, max_entries=8)
def tokenizer(run_dir: str):
    """The run's tokenizer, loaded once per server."""
    return api.tokenizer_of_run(run_dir)


def param(name: str, default=None, cast=str):
    """A query parameter from the URL, cast, or `default` when absent or malformed."""
    raw = st.query_params.get(name)
    if raw is None:
        return default
    try:
        return cast(raw)
    except (TypeError, ValueError):
        return default


def set_params(**values) -> None:
    """Write values into the URL (None removes a key); only touches keys that changed."""
    for k, v in values.items():
        if v is None:
            if k in st.query_params:
                del st.query_params[k]
        elif st.query_params.get(k) != str(v):
            st.query_params[k] = str(v)


def _label(r: Run) -> str:
    """What the run picker lists: name, kind, prompt set and date."""
    return f"{r.name} · {r.kind or 'run'} · {r.prompt_set} · {r.created[:10]}"


def rollouts_line(run: Run) -> str | None:
    """For a run scored from a rollout file: how many of its text responses do not survive
    decode(encode(text)) (manifest `rollouts`), and for a framework's file the format it was
    read as, the verdicts' column and what is lossy (Markdown-escaped); None for a sampled
    run."""
    r = run.rollouts
    if not r:
        return None
    line = (f"scored from rollouts: {r.get('retokenization_mismatches', 0)} of "
            f"{r.get('text_responses', 0)} text responses re-tokenise differently")
    if r.get("format") not in (None, "shiftlens"):  # framework files (core.inputs.formats)
        line = (f"{line}; read as {md_escape(r.get('format_name', ''))}; verdicts from "
                f"{md_escape(r.get('verdict') or 'no column')}")
        if r.get("responses_with_length"):
            line += (f"; {r.get('length_mismatches', 0)} of {r['responses_with_length']} "
                     "responses differ from their recorded token count")
        if r.get("prompts_as_given"):
            line += f"; {r['prompts_as_given']} prompts already templated, taken as given"
        line += f". Lossy: {md_escape(r.get('lossy', ''))}"
    return line


def show_damaged() -> list[Run]:
    """List the damaged runs in the sidebar, one line each (as text); returns them."""
    bad = damaged()
    if bad:
        st.sidebar.markdown(f"**Damaged runs** ({len(bad)}, left out)")
        for r in bad:
            st.sidebar.caption(md_escape(r.line()))
    return bad


def pick_run(infos: list[Run]) -> Run:
    """Sidebar run picker, synchronised with the `run` query parameter: the URL names the run
    and wins; a choice in the picker is written to the URL at once. Moving to another page
    (which drops the URL's parameters) keeps this session's run, never the picker's first
    entry. A URL naming a run that is not here (renamed, deleted, another cache) or a damaged
    run says so and shows nothing until a run is picked."""
    bad = {r.name: r for r in show_damaged()}
    if not infos:
        st.warning(f"No runs in {cache_dir()}. Build the demo runs with "
                   "`python -m core demo-runs`, or add a pair on the 'Add a pair' page.")
        st.stop()
    names = [r.name for r in infos]
    wanted = param("run")
    if wanted is None:  # a page switch: this session's run, else the default
        wanted = st.session_state.get(RUN_KEY)
        if wanted not in names:
            wanted = "demo-rl" if "demo-rl" in names else names[0]
    if wanted not in names:
        if wanted in bad:
            st.error(md_escape(bad[wanted].line()))
        else:
            st.warning(f"There is no run named “{md_escape(wanted)}” here (renamed or "
                       "deleted?). Pick a run in the sidebar.")
        pick = st.sidebar.selectbox("Run", names, index=None, key="run_missing_picker",
                                    placeholder="pick a run",
                                    format_func=lambda n: _label(infos[names.index(n)]))
        if pick is None:
            st.stop()
        set_params(run=pick, trace=None, pos=None)
        st.session_state[RUN_KEY] = pick
        st.rerun()
    st.session_state["run_picker"] = wanted
    st.session_state[RUN_KEY] = wanted

    def chosen() -> None:
        st.session_state[RUN_KEY] = st.session_state["run_picker"]
        set_params(run=st.session_state["run_picker"], trace=None, pos=None)

    choice = st.sidebar.selectbox(
        "Run", names, key="run_picker", on_change=chosen,
        format_func=lambda n: _label(infos[names.index(n)]))
    run = infos[names.index(choice)]
    retok = rollouts_line(run)
    st.sidebar.caption(f"**pair** {md_escape(run.pair)}  \n**prompts** "
                       f"{md_escape(run.prompt_set)}  \n"
                       f"**created** {md_escape(run.created)}  \n{run.n_traces} traces, "
                       f"{run.n_tokens} tokens" + (f"  \n{retok}" if retok else ""))
    set_params(run=choice)
    return run


SAMPLED_FROM_LABELS = {"tuned": "tuned model's samples", "base": "base model's samples",
                       "pooled": "pooled (every trace)", "split": "split by sampler"}


def sampled_from(con, run: Run) -> str | None:
    """Which traces the analyses use (core.queries.sampler), a control synchronised with the
    URL's `from` (e.g. ?from=tuned): the options that select something in this run, the
    run's default first (tuned-sampled traces where it has them, the paper's setting).
    Returns None for the run's default (so runs compared with it resolve their own default,
    like with like), else the chosen value."""
    options = api.sampled_from_choices(con, run.name)
    wanted = param("from")
    choice = st.radio("Traces", options, horizontal=True, key=f"from_{run.name}",
                      index=options.index(wanted) if wanted in options else 0,
                      format_func=lambda o: SAMPLED_FROM_LABELS[o]
                      + (" (default)" if o == options[0] else ""),
                      help="Which traces the headline and figures are computed on. The paper "
                           "measures on the tuned model's own samples.")
    set_params(**{"from": choice})
    return None if choice == options[0] else choice
