"""Cross-sampling: queue forward / reverse / control sweeps as jobs, watch accuracy against
budget fill in (from any session, across server restarts), pick any stored sweep of the run
(or overlay two), and open any mixed trace with each switched token marked by its source
model."""

from __future__ import annotations

import streamlit as st

from app.ui import state, theme
from app.ui.figure import show_figure
from app.ui.text import md_escape, show_error
from app.ui.trace_view import trace_view
from core import api
from core.api import (
    CROSS_PRIMARY,
    CrossSampleConfig,
    list_samples,
    list_sweeps,
    pick_device,
    read_summary,
    sample_tokens,
    tokenizer_of_run,
)
from core.errors import JobError
from core.figures.cross import cross_overlay, cross_sampling
from core.figures.style import themed

SOURCE_COLOURS = {"base": "rgba(0, 114, 178, 0.45)", "tuned": "rgba(213, 94, 0, 0.55)"}


def _device_note() -> str:
    dev, dtype = pick_device()
    if dev.type == "cuda":
        import torch

        return f"Runs on GPU ({torch.cuda.get_device_name(0)}, {str(dtype)[6:]})"
    return "Runs on CPU (fp32): no GPU found"


def _eps_grid(run, how: str, text: str, top_p: float) -> str:
    """The eps grid to sweep: as typed, or from target budgets (% of tokens) via the run's
    stored js distribution (js_top_p when sweeping at the run's own nucleus)."""
    if how == "eps grid":
        return text
    budgets = [float(x) / 100 for x in text.split(",") if x.strip()]
    con = state.connection(state.runs())  # the collection every page shares
    metric, grid = api.eps_for_targets(run, budgets, top_p, con=con,
                                       run=run.name)
    st.caption("target budgets → eps from the stored " + metric + " (the stored value whose "
               "realised share is closest): " + ", ".join(
                   f"{100 * b:g}% → {e:.4f} ({100 * r:.2f}% of stored tokens exceed it)"
                   for b, e, r in zip(grid.budget, grid.eps, grid.realised, strict=True)))
    return ",".join(f"{max(e, 0.0):.6g}" for e in grid.eps)


def _settings(run) -> CrossSampleConfig | None:
    with st.form("cross_settings"):
        # the chip rows get half the width each: in a third at 1,000 px the second chip
        # ("reverse", "entropy") was hidden
        c1, c3 = st.columns(2)
        c2 = st.container()
        directions = c1.multiselect("Directions", ["forward", "reverse"],
                                    default=["forward", "reverse"])
        how = c2.radio("Sweep over", ["eps grid", "target budgets (% of tokens)"],
                       horizontal=True)
        eps = c2.text_input("eps grid (js thresholds) or budgets in %",
                            "0.005,0.01,0.02,0.05,0.1")
        controls = c3.multiselect("Controls", ["random", "entropy", "untreated"],
                                  default=["random", "entropy", "untreated"],
                                  help="random: positions drawn uniformly; entropy: in "
                                       "proportion to the primary's entropy; untreated: as "
                                       "entropy, only at steps the cross-sample did not "
                                       "switch at")
        match = c3.radio("Controls match", ["changed tokens", "switch decisions"],
                         horizontal=True, help="changed tokens: a switch that takes the token "
                                               "the primary would have drawn changes nothing")
        c4, c5, c6, c7, c8 = st.columns(5)
        prompts = c4.number_input("prompts", 1, 100_000, value=min(50, run.n_traces or 50))
        samples = c5.number_input("samples per prompt", 1, 64, value=1)
        own, paper = api.run_decoding(run), api.paper_decoding()
        choices = {own.label(): own, paper.label(): paper, "custom (below)": None}
        pick = st.radio("Decoding", list(choices), horizontal=True,
                        help="the run's: what its traces were sampled with, so the sweep "
                             "measures the gap its traces show; the paper's: top-p 0.7, "
                             "which removes the tail where a demo run's RL gain lives")
        temperature = c6.number_input("temperature (custom)", 0.0, 2.0, own.temperature, 0.1)
        top_p = c7.number_input("top-p (custom)", 0.05, 1.0, own.top_p, 0.05)
        target = c8.number_input("caption's budget (% of tokens)", 0.0, 99.0, 5.0, 0.5,
                                 help="chosen before the sweep: its eps joins the grid and the "
                                      "caption reports that setting (0: none)")
        go = st.form_submit_button("Run sweep", type="primary")
    if not go:
        return None
    chosen = choices[pick]
    if chosen is not None:
        temperature, top_p = chosen.temperature, chosen.top_p
    used = chosen or api.Decoding(float(top_p), float(temperature), "custom")
    st.caption(f"Sampling with {used.label()}; "
               "the switching rule compares the two models' distributions truncated to the "
               "same top-p (full-vocabulary js at top-p 1, the analyses' default metric)")
    if not directions:
        st.error("Pick at least one direction.")
        return None
    try:
        eps = _eps_grid(run, how, eps, float(top_p))
    except ValueError as e:
        show_error(f"Cannot read that grid: {e}")
        return None
    return CrossSampleConfig(run=str(run.path), cache=str(state.cache_dir()),
                             direction=",".join(directions), eps=eps,
                             control=",".join(controls) or "none",
                             match="changed" if match == "changed tokens" else "decisions",
                             target_budget=float(target) / 100, prompts=int(prompts),
                             samples=int(samples), temperature=float(temperature),
                             top_p=float(top_p))


def _sweep_jobs(run_name: str) -> list:
    """This run's sweep jobs, newest first (every session sees the same queue)."""
    return [j for j in reversed(api.list_jobs(state.cache_dir()))
            if j.kind == "cross-sample" and j.run == run_name]


ACTIVE_POLL_S = 1.0  # while a sweep of the run is queued or running: its progress
IDLE_POLL_S = 5.0  # otherwise: only to notice a sweep another session started


def _active(run_name: str):
    return next((j for j in _sweep_jobs(run_name) if j.state in ("queued", "running")), None)


def _live(run_name: str) -> None:
    """Progress, cancel and the filling chart of this run's active sweep, polled every
    second while there is one and every 5 s otherwise: six sessions idling on this page
    polled the queue six times a second, and on a 2-core server the pages never finished a
    script run between polls."""
    every = ACTIVE_POLL_S if _active(run_name) is not None else IDLE_POLL_S
    st.fragment(_live_body, run_every=every)(run_name, every)


def _live_body(run_name: str, every: float) -> None:
    api.tick_jobs(state.cache_dir())  # starts the queued sweep when nothing else runs
    job = _active(run_name)
    if job is None:
        if st.session_state.pop("cross_watching", None):
            st.rerun(scope="app")  # a sweep this session watched has ended: show results
        return
    st.session_state["cross_watching"] = job.id
    if every > ACTIVE_POLL_S:  # a sweep began while the page polled slowly: poll faster
        st.rerun(scope="app")
    st.progress(job.fraction(), text=progress_text(job.id, job.state, job.progress()))
    if st.button("Cancel", key=f"cancel_{job.id}"):
        api.cancel_job(state.cache_dir(), job.id)
        st.rerun(scope="app")
    partial = job.partial()
    if partial is not None and len(partial):
        spec = cross_sampling(partial, run_name)
        st.plotly_chart(themed(spec.figure, theme.current()), key=f"live_chart_{job.id}")
        st.caption(md_escape(spec.caption))


def progress_text(job_id: str, job_state: str, p: dict | None) -> str:
    """The live progress line: before the first batch the worker is loading both models
    (30-45 s on a laptop), which is said as such, not as '0/? samples · 0 tokens/s'."""
    if job_state == "queued":
        return f"sweep {job_id} queued: waits for the running job"
    if not p or not p.get("total"):
        return f"sweep {job_id} running: loading models…"
    rate = p.get("tokens", 0) / max(p.get("seconds", 0) or 0, 1e-9)
    return (f"sweep {job_id} running: {p.get('done', 0)}/{p['total']} samples · "
            f"{rate:.0f} tokens/s")


def _last_failure(run_name: str) -> None:
    job = next(iter(_sweep_jobs(run_name)), None)
    if job is not None and job.state == "failed":
        show_error(f"The last sweep ({job.id}) failed: {job.error}")


def _results(run) -> None:
    sweeps = list_sweeps(run.path)
    if not sweeps:
        st.info("No stored sweep for this run yet.")
        return
    st.subheader("Stored sweeps")
    labels = {s.key: s.label() for s in sweeps}
    # full-width pickers: a sweep's label (its settings) is long and was cut in a column
    key = st.selectbox("sweep", list(labels), format_func=labels.get, key="cs_sweep")
    other = st.selectbox("overlay with", [None, *[k for k in labels if k != key]],
                         format_func=lambda k: "(none)" if k is None else labels[k],
                         key="cs_overlay")
    budget = st.radio("budget", ["changed", "decisions"], key="cs_budget", horizontal=True,
                      help="tokens the switches changed, or switch decisions")
    info = next(s for s in sweeps if s.key == key)
    summary = read_summary(run.path, key)
    if other is None:
        show_figure(cross_sampling(summary, run.name, info.settings, budget, key),
                    key=f"cross_{run.name}_{key}")
    else:
        show_figure(cross_overlay(summary, read_summary(run.path, other), labels[key],
                                  labels[other], run.name, budget),
                    key=f"cross_{run.name}_{key}_{other}")
    _mixed_traces(run, key, summary)


def _mixed_traces(run, key: str, summary) -> None:
    st.subheader("Mixed traces")
    c1, c2, c3 = st.columns(3)
    direction = c1.selectbox("direction", ["forward", "reverse"], key="cs_dir")
    eps_values = sorted(summary[summary.direction == direction].eps.unique())
    eps = c2.selectbox("eps", eps_values, key="cs_eps")
    kinds = sorted(set(summary.control_kind.fillna("")) - {""})
    control = c3.selectbox("control", ["", *kinds], key="cs_ctl",
                           format_func=lambda k: k or "(the cross-sample itself)")
    samples = list_samples(run.path, direction, float(eps), control, sweep=key)
    if samples.empty:
        st.info("No samples for this setting.")
        return
    event = st.dataframe(samples[["prompt_id", "sample_index", "n_switched", "n_changed",
                                  "n_tokens", "budget", "correct", "answer", "text"]],
                         hide_index=True, on_select="rerun", selection_mode="single-row",
                         key="cs_table", height=220)
    rows = event.selection.rows if event and event.selection else []
    row = samples.iloc[rows[0] if rows else 0]
    toks = sample_tokens(tokenizer_of_run(run.path), row)
    changed = "" if toks["changed"].isna().all() else \
        f", {int(toks['changed'].fillna(False).sum())} of them changed the token"
    st.caption(md_escape(row["prompt_id"]) + f" · {row['n_switched']} of {row['n_tokens']} tokens "
               f"switched{changed} · {'correct' if row['correct'] else 'incorrect'}. Colour = "
               f"the model that produced the token: blue base, orange tuned.")
    primary = CROSS_PRIMARY[row["direction"]]
    notes = {True: " · changed the token", False: " · same token as the primary's draw",
             None: ""}
    trace_view(toks["token"].tolist(), [SOURCE_COLOURS[s] for s in toks["source"]],
               [float(s != primary) for s in toks["source"]],
               [f"pos {p} · from {s}" + (notes[c] if s != primary else "")
                for p, s, c in zip(toks["pos"], toks["source"], toks["changed"])],
               [False] * len(toks), None, [], key="cs_view", scroll=False)


def render() -> None:
    infos = state.runs()
    run = state.pick_run(infos)
    st.header("Cross-sampling")
    st.caption("Decode with one model and take the other model's token wherever their "
               "next-token js exceeds eps. Forward (base → tuned): are the few divergent tokens "
               "enough? Reverse (tuned → base): are they necessary? Each control changes as "
               "many tokens (or makes as many switch decisions) as its cross-sample, at random "
               "positions, at positions drawn by the primary's entropy, or (untreated) drawn "
               "by entropy among the steps the cross-sample did not switch at.")
    st.caption("How tokens change: at each step both models draw from the same prefix with "
               "the same uniform number (inverse CDF over the token ids in id order), so "
               "where their distributions are close the draws agree and a switch changes "
               "nothing. A change can only happen where the draws differ, and the "
               "cross-sample takes most such steps, so a random or entropy control forced to "
               "change as many tokens often lands on the same steps and decodes the same "
               "sequence: the summary's 'same as cross-sample' column says how often. The "
               "untreated control cannot: it tells 'the high-js tokens matter' from 'any "
               "differing draw matters'.")
    st.info(_device_note(), icon=":material/memory:")
    cfg = _settings(run)
    if cfg is not None:
        try:
            job = api.submit_cross_sample(state.cache_dir(), cfg, submitter=state.submitter())
            st.session_state["cross_watching"] = job.id
        except JobError as e:
            st.warning(md_escape(e))
    _live(run.name)
    _last_failure(run.name)
    _results(run)


if __name__ == "__main__":  # Streamlit runs the page file as __main__
    render()
