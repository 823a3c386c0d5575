"""The sign-in gate, run at the top of every script run (app/main.py) before any page.

On loopback (127.0.0.1, ::1, localhost: scripts/app.sh's default) it does nothing. Bound to
any other address the server is *exposed*: without $SHIFTLENS_PASSWORD it shows one line
saying how to set it and nothing else; with it, a session sees a sign-in form until it gives
the password (compared in constant time by core), and then stays signed in (session state:
a page reload is a new session and asks again). Exposed, uncaught errors show their type
only (no message, no traceback; the server log has them), and "Add a pair" accepts local
model folders only under the model roots (`model_roots`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import streamlit as st

from app.ui.text import show_error
from core import api

log = logging.getLogger("shiftlens.access")
SIGNED_IN = "_shiftlens_signed_in"
WRONG_PASSWORD_DELAY_S = 1.0  # slows guessing; a session waits this long per wrong try


def exposed() -> bool:
    """Whether the server listens beyond this machine (anything but a loopback address)."""
    return not api.is_loopback(st.get_option("server.address"))


def model_roots() -> list[Path] | None:
    """The folders "Add a pair" may read local models from; None (any folder) on loopback."""
    from app.ui import state

    return api.model_roots(state.cache_dir()) if exposed() else None


def gate(pages: list) -> None:
    """Return when this session may see the app; else show the refusal or the sign-in form
    and stop the script run. `pages` (the app's st.Page list) are registered, hidden and not
    run, so the page the address asks for is the one that opens after sign-in."""
    if not exposed():
        return
    if st.get_option("client.showErrorDetails") != "type":
        st.set_option("client.showErrorDetails", "type")
    secret = api.password()
    if secret is not None and st.session_state.get(SIGNED_IN):
        return
    st.navigation(pages, position="hidden")
    if secret is None:
        line = api.refusal(st.get_option("server.address"))
        log.error(line)
        show_error(line)
        st.stop()
    st.title("ShiftLens")
    with st.form("sign_in", clear_on_submit=True):
        given = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if api.check_password(given, secret):
            st.session_state[SIGNED_IN] = True
            st.rerun()
        time.sleep(WRONG_PASSWORD_DELAY_S)
        log.warning("a sign-in with a wrong password")
        st.error("Wrong password.")
    st.stop()
