"""The background-job panel: progress of every queued and running job (precomputes and
cross-sampling sweeps), newest first, refreshed every two seconds; cancel, resume and read the
log. State lives in files (the job queue of core.api), so it survives page reloads and server
restarts and shows in every session."""

from __future__ import annotations

import time

import streamlit as st

from app.ui import state
from app.ui.text import md_escape, show_error
from core import api


@st.fragment(run_every=2.0)
def jobs_panel() -> None:
    cache = state.cache_dir()
    api.tick_jobs(cache)  # starts queued work when nothing runs (there is no daemon)
    listed = list(reversed(api.list_jobs(cache)))  # newest first
    st.subheader("Jobs")
    if not listed:
        st.caption("No jobs yet.")
        return
    present = {r.name for r in state.runs()}
    for job in listed[:20]:
        with st.container(border=True):
            c1, c2, c3 = st.columns([4, 1, 1])
            age = time.time() - job.created
            c1.markdown(f"**{md_escape(job.run)}** · " + md_escape(
                f"{job.kind} · {job.id} · {job.state} · {age / 60:.0f} min ago"))
            c1.progress(job.fraction(), text=f"{100 * job.fraction():.0f}%")
            if job.state in ("queued", "running") and c2.button("Cancel", key=f"jc_{job.id}"):
                api.cancel_job(cache, job.id)
            if job.state in ("failed", "cancelled") and c2.button("Resume",
                                                                   key=f"jr_{job.id}"):
                api.resume_job(cache, job.id)
            if job.state == "done" and job.run not in present:
                c3.caption("run renamed or deleted since")  # no link to another run
            elif job.state == "done":
                page = "traces" if job.kind == "precompute" else "cross"
                c3.page_link(st.session_state["_pages"][page], label="Open",
                             query_params={"run": job.run}, icon=":material/open_in_new:")
            if job.error:  # text from a job process (a model, a file): shown as text
                show_error(job.error)
            with st.expander("log"):
                st.code(api.read_job_log(cache, job.id, tail=40) or "(empty)", language=None)
