"""ShiftLens app entry point: `streamlit run app/main.py`. One file per page in app/views/
(each defines `render()` and runs it when Streamlit executes the file); shared widgets and
state live in app/ui/."""

from __future__ import annotations

import streamlit as st

from app.ui import state, theme
from app.ui.access import gate
from app.ui.text import md_escape
from core import api

st.set_page_config(page_title="ShiftLens", page_icon="🔎", layout="wide")

PAGES = (  # key, file under app/, title, url path
    ("traces", "views/traces.py", "Traces", "trace-browser"),  # served at / (the default)
    ("overview", "views/overview.py", "Overview", "overview"),
    ("search", "views/search.py", "Token search", "search"),
    ("cross", "views/cross.py", "Cross-sampling", "cross"),
    ("live", "views/live.py", "Live scoring", "live"),
    ("add", "views/add_pair.py", "Add a pair", "add"),
    ("runs", "views/runs.py", "Runs", "runs"),
)


def _to_traces() -> None:
    st.switch_page(st.session_state["_pages"]["traces"], query_params=st.query_params.to_dict())


def main() -> None:
    pages = {key: st.Page(file, title=title, url_path=path, default=key == "traces")
             for key, file, title, path in PAGES}
    # /traces, the page's name as a path, opens the trace browser (it said "Page not found")
    alias = st.Page(_to_traces, title="Traces", url_path="traces", visibility="hidden")
    gate([*pages.values(), alias])  # beyond loopback: sign in first (refused without a password)
    st.sidebar.title("ShiftLens")
    st.sidebar.caption("What did fine-tuning change? Token-level divergence between a base "
                       "model and its tuned version.")
    theme.switch()  # this session's light or dark pages and figures
    st.session_state["_pages"] = pages
    try:
        st.navigation([*pages.values(), alias]).run()
    except Exception as e:  # noqa: BLE001 - only a run that vanished or broke mid-page
        if api.run_gone(e):
            st.warning("A run changed on disk while this page was drawing: another session "
                       "renamed or deleted it. Pick a run in the sidebar or reload the page.")
            return
        # a file replaced under the server: re-validated now, quarantined from the next draw
        line = api.damaged_since(e, st.session_state.get(state.OPENED_KEY, ()))
        if line is None:
            raise
        st.error(md_escape(line))


main()
