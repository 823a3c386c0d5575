"""Messages that survive the rerun their action causes.

A button's handler that changes what is on disk (rename, delete, cancel, resume) usually
reruns the page or the fragment at once, and anything it drew vanishes with that rerun. It
records the message here instead; the page shows it on its next run. Page messages show once;
the jobs panel, which reruns itself every two seconds, keeps its last few with their times.
Messages are this session's only and are shown as text (they quote run names and errors)."""

from __future__ import annotations

import time

import streamlit as st

from app.ui.text import md_escape

KEEP = 3  # messages the jobs panel keeps


def flash(text: str, kind: str = "success", where: str = "page") -> None:
    """Record a message for `where` ("page": shown once on the next run; "jobs": kept)."""
    box = st.session_state.setdefault(f"_flash_{where}", [])
    box.append((time.time(), kind, str(text)))
    del box[:-KEEP]


def show(where: str = "page") -> None:
    """Draw `where`'s messages, newest first ("page" messages are then forgotten)."""
    box = st.session_state.get(f"_flash_{where}", [])
    if where == "page":
        st.session_state[f"_flash_{where}"] = []
    for at, kind, text in reversed(box):
        stamp = time.strftime("%H:%M:%S", time.localtime(at)) + " · " if where != "page" else ""
        getattr(st, kind)(stamp + "  \n".join(md_escape(x) for x in text.splitlines()))
