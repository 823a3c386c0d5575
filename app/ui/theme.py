"""The theme switch: light or dark pages for this browser session only.

Streamlit's theme is a server setting (every session shares it) and its own settings menu
keeps a choice in the browser without telling the server. This switch is a sidebar control
whose choice lives in the session's state: it restyles the page with a fixed style sheet
(no user text in it) and hands the choice to core.figures.style.themed, which colours the
figures, and to the trace view (through the page colour it reads). Default: the server's
theme (st.context.theme), so a dark server starts dark. Nothing is stored on disk, and no
other session sees the choice."""

from __future__ import annotations

import streamlit as st

from core.figures.style import DARK, THEMES

KEY = "_theme"  # this session's choice (not a widget key: Streamlit drops those on page change)
LABELS = {"light": "☀ Light", "dark": "☾ Dark"}
LIGHT = dict(bg="#FFFFFF", side="#F0F2F6", text="#31333F", field="#F0F2F6", edge="#D5D7DE")
DARK_PAGE = dict(bg=DARK["paper_bgcolor"], side="#262730", text=DARK["font_color"],
                 field="#262730", edge="#4A4B55")
_CSS = """<style>
.stApp, [data-testid="stHeader"], [data-testid="stBottomBlockContainer"] {{
  background-color: {bg} !important; color: {text}; color-scheme: {scheme}; }}
.stApp, [data-testid="stBidiComponentIsolated"] {{ --st-background-color: {bg} !important; }}
[data-testid="stSidebar"], [data-testid="stSidebarContent"] {{
  background-color: {side} !important; }}
.stApp h1, .stApp h2, .stApp h3, .stApp h4, .stApp p, .stApp label, .stApp li,
.stApp [data-testid="stCaptionContainer"], .stApp [data-testid="stMetricValue"],
.stApp [data-testid="stMetricLabel"] {{ color: {text}; }}
.stApp button, .stApp input, .stApp textarea, .stApp [data-baseweb="select"] > div,
.stApp [data-baseweb="input"], .stApp [data-testid="stNumberInputContainer"] {{
  background-color: {field}; color: {text}; border-color: {edge}; }}
.stApp button p, .stApp button span {{ color: {text}; }}
</style>"""


def base() -> str:
    """The server's (Streamlit's) theme: "light" or "dark" ("light" when not known)."""
    try:
        kind = st.context.theme.type
    except Exception:  # noqa: BLE001 - outside a browser session (tests, bare mode)
        kind = None
    return kind if kind in THEMES else "light"


def current() -> str:
    """This session's theme: its choice in the switch, else the server's."""
    return chosen() or base()


def chosen() -> str | None:
    """The theme this session picked in the switch, None while it has picked none (then the
    page follows the server's theme, which the browser knows before the server does)."""
    choice = st.session_state.get(KEY)
    return choice if choice in THEMES else None


def switch() -> str:
    """Draw the sidebar switch, restyle the page when the choice differs from the server's
    theme, and return the theme in force."""
    st.session_state["theme_switch"] = current()

    def picked() -> None:
        st.session_state[KEY] = st.session_state["theme_switch"] or current()

    st.sidebar.segmented_control("Theme", list(THEMES), key="theme_switch", on_change=picked,
                                 format_func=LABELS.get, help="Light or dark pages and figures "
                                 "for this browser tab only.")
    theme = current()
    if theme != base():
        st.html(_CSS.format(scheme=theme, **(DARK_PAGE if theme == "dark" else LIGHT)))
    return theme
