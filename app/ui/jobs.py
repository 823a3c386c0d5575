"""The background-job panel: progress of every queued and running precompute, refreshed
every two seconds; cancel, resume and read the log. State lives in files (core.jobs.queue), so it
survives page reloads and shows in every session."""

from __future__ import annotations

import time

import streamlit as st

from app.ui import state
from core.jobs import queue as jobs


@st.fragment(run_every=2.0)
def jobs_panel() -> None:
    cache = state.cache_dir()
    jobs.tick(cache)  # starts queued work when nothing runs (there is no daemon)
    listed = jobs.list_jobs(cache)
    st.subheader("Jobs")
    if not listed:
        st.caption("No jobs yet.")
        return
    for job in listed[:20]:
        with st.container(border=True):
            c1, c2, c3 = st.columns([4, 1, 1])
            age = time.time() - job.created
            c1.markdown(f"**{job.run}** · `{job.id}` · {job.state} · {age / 60:.0f} min ago")
            c1.progress(job.fraction(), text=f"{100 * job.fraction():.0f}%")
            if job.state in ("queued", "running") and c2.button("Cancel", key=f"jc_{job.id}"):
                jobs.cancel(cache, job.id)
            if job.state in ("failed", "cancelled") and c2.button("Resume",
                                                                   key=f"jr_{job.id}"):
                jobs.resume(cache, job.id)
            if job.state == "done":
                c3.page_link(st.session_state["_pages"]["traces"], label="Open",
                             query_params={"run": job.run}, icon=":material/open_in_new:")
            if job.error:
                st.error(job.error)
            with st.expander("log"):
                st.code(jobs.read_log(cache, job.id, tail=40) or "(empty)", language=None)
