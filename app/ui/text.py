"""Escaping user text for Streamlit labels, which are rendered as Markdown."""

from __future__ import annotations

import re

import streamlit as st

_MD = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: str) -> str:
    """Backslash-escape Markdown syntax so the text shows literally (newlines made visible)."""
    return _MD.sub(r"\\\1", str(text)).replace("\n", "↵ ")


def show_error(message: str) -> None:
    """An error box whose message shows as text, never Markdown (it may quote a user's file
    or names): every character escaped, one line per line of the message."""
    st.error("  \n".join(md_escape(line) for line in str(message).splitlines()))
