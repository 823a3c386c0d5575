"""The background-job panel: progress of every queued and running job (precomputes and
cross-sampling sweeps, each named by its kind's label and linked to its kind's page, both
from the job-kind registry through core.api's Job), newest first, refreshed every two
seconds; cancel, resume and read the log. State lives in files (the job queue of core.api),
so it survives page reloads and server restarts and shows in every session."""

from __future__ import annotations

import time

import streamlit as st
from streamlit.errors import StreamlitAPIException

from app.ui import access, state
from app.ui.flash import flash
from app.ui.flash import show as show_flashes
from app.ui.text import md_escape, show_error
from core import api
from core.errors import JobError


def _act(action, cache, job, done: str) -> None:
    """Cancel or resume a job; the outcome is kept for the panel's next runs (this fragment
    reruns every two seconds, which would wipe a message drawn here)."""
    try:
        action(cache, job.id)
    except JobError as e:
        flash(f"{job.id} ({job.run}): {e}", "error", where="jobs")
    else:
        flash(f"{done} {job.id} ({job.run})", "success", where="jobs")
    try:
        st.rerun(scope="fragment")  # redraw the panel (the click reran only the fragment)
    except StreamlitAPIException:  # the click reran the whole page
        st.rerun()


@st.fragment(run_every=2.0)
def jobs_panel() -> None:
    cache = state.cache_dir()
    api.tick_jobs(cache)  # starts queued work when nothing runs (there is no daemon)
    listed = list(reversed(api.list_jobs(cache)))  # newest first
    st.subheader("Jobs")
    show_flashes("jobs")
    if not listed:
        st.caption("No jobs yet.")
        return
    present = {r.name for r in state.runs()}
    for job in listed[:20]:
        with st.container(border=True):
            c1, c2, c3 = st.columns([4, 1, 1])
            age = time.time() - job.created
            c1.markdown(f"**{md_escape(job.run)}** · " + md_escape(
                f"{job.label} · {job.id} · {job.state} · {age / 60:.0f} min ago"))
            c1.progress(job.fraction(), text=job.progress_line())
            if job.state in ("queued", "running") and c2.button("Cancel", key=f"jc_{job.id}"):
                _act(api.cancel_job, cache, job, "cancelled")
            if job.state in ("failed", "cancelled") and c2.button("Resume",
                                                                   key=f"jr_{job.id}"):
                _act(api.resume_job, cache, job, "resumed")
            if job.state == "done" and job.run not in present:
                c3.caption("run renamed or deleted since")  # no link to another run
            elif job.state == "done" and job.opens:  # the page the job kind's results are on
                c3.page_link(st.session_state["_pages"][job.opens], label="Open",
                             query_params={"run": job.run}, icon=":material/open_in_new:")
            shown = api.public_text if access.exposed() else str  # no server paths out
            if job.state == "cancelled":  # a choice, not a failure: no red box
                st.info(f"{job.id} was cancelled; resume it to start again", icon="ℹ️")
            elif job.error:  # text from a job process (a model, a file): shown as text
                show_error(shown(job.error))
            with st.expander("log"):
                st.code(shown(api.read_job_log(cache, job.id, tail=40)) or "(empty)",
                        language=None)
