"""The sign-in gate, run at the top of every script run (app/main.py) before any page.

On loopback (127.0.0.1, ::1, localhost: scripts/app.sh's default) it does nothing. Bound to
any other address the server is *exposed*: without $SHIFTLENS_PASSWORD it shows one line
saying how to set it and nothing else; served without the guard of app/serve.py (e.g.
`streamlit run app/main.py`) it shows one line saying to serve through it; else a session
sees a sign-in form until it gives the password, and then stays signed in (a page reload or
a new tab is a new session and asks again).

A sign-in belongs to the session *and* the browser: the guard hands each connection the
browser's sign-in cookie token (an HttpOnly cookie a script cannot read), the first token a
session runs with owns it (core.signin.Sessions), and only that pair is signed in, so a
session id copied into another connection shows the form again. Passwords are compared in
constant time, and tries are limited per client address and in all, with growing waits and
lockouts (core.signin.Throttle; each wrong try logged with the address). Exposed, uncaught
errors show their type only (no message, no traceback; the server log has them), and "Add a
pair" accepts local model folders only under the model roots (`model_roots`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from app.ui.text import show_error
from core import api

log = logging.getLogger("shiftlens.access")
NOT_GUARDED = ("Beyond this machine ShiftLens serves only through app/serve.py "
               "(scripts/app.sh, the Docker image), whose guard keeps uploads and the "
               "server's other endpoints closed before sign-in: start it that way.")
OTHER_BROWSER = ("This session was opened by another browser: reload the page for a "
                 "session of your own.")
NO_COOKIE = ("This browser sent no valid sign-in cookie (cookies blocked, or the server "
             "restarted): allow cookies for this site and reload the page.")


def exposed() -> bool:
    """Whether the server listens beyond this machine (anything but a loopback address)."""
    return not api.is_loopback(st.get_option("server.address"))


def model_roots() -> list[Path] | None:
    """The folders "Add a pair" may read local models from; None (any folder) on loopback."""
    from app.ui import state

    return api.model_roots(state.cache_dir()) if exposed() else None


def connection() -> tuple[str, str] | None:
    """(sign-in cookie token or "", client address) of this session's connection, as the
    guard (app/guard.py) handed them over; None when no guard stands in front of the app
    (then the X-ShiftLens-* headers could be anyone's)."""
    from app import guard

    if not guard.active():
        return None
    headers = st.context.headers
    return headers.get(guard.TOKEN_HEADER, ""), headers.get(guard.ADDRESS_HEADER) or "unknown"


def session_id() -> str:
    """This script run's Streamlit session id."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return get_script_run_ctx().session_id


def gate(pages: list) -> None:
    """Return when this session may see the app; else show the refusal or the sign-in form
    and stop the script run. `pages` (the app's st.Page list) are registered, hidden and not
    run, so the page the address asks for is the one that opens after sign-in."""
    if not exposed():
        return
    if st.get_option("client.showErrorDetails") != "type":
        st.set_option("client.showErrorDetails", "type")
    secret = api.password()
    conn = connection()
    sessions, sid = api.sessions(), session_id()
    if secret is not None and conn is not None and sessions.signed_in(sid, conn[0]):
        return
    st.navigation(pages, position="hidden")
    if secret is None or conn is None:
        line = NOT_GUARDED if secret is not None else \
            api.refusal(st.get_option("server.address"))
        log.error(line)
        show_error(line)
        st.stop()
    token, address = conn
    if not sessions.bind(sid, token):  # the guard drops a session id resumed by another
        st.error(OTHER_BROWSER if token else NO_COOKIE)
        st.stop()
    st.title("ShiftLens")
    with st.form("sign_in", clear_on_submit=True):
        given = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        refused = api.throttle().attempt(given, secret, address)
        if refused is None and sessions.sign_in(sid, token):
            st.rerun()
        st.error(refused or NO_COOKIE)  # fixed lines of ours, no user text
    st.stop()
