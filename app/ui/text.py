"""Escaping user text for Streamlit labels, which are rendered as Markdown."""

from __future__ import annotations

import re

_MD = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: str) -> str:
    """Backslash-escape Markdown syntax so the text shows literally (newlines made visible)."""
    return _MD.sub(r"\\\1", str(text)).replace("\n", "↵ ")
