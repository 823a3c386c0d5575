"""ShiftLens app entry point: `streamlit run app/main.py`. Pages live in app/views/."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


st.set_page_config(page_title="ShiftLens", page_icon="🔎", layout="wide")


def main() -> None:
    st.sidebar.title("ShiftLens")
    st.sidebar.caption("What did fine-tuning change? Token-level divergence between a base "
                       "model and its tuned version.")
    pages = {
        "traces": st.Page("routes/traces.py", title="Traces", url_path="traces", default=True),
        "overview": st.Page("routes/overview.py", title="Overview", url_path="overview"),
        "search": st.Page("routes/search.py", title="Token search", url_path="search"),
        "cross": st.Page("routes/cross.py", title="Cross-sampling", url_path="cross"),
        "live": st.Page("routes/live.py", title="Live scoring", url_path="live"),
        "add": st.Page("routes/add_pair.py", title="Add a pair", url_path="add"),
        "runs": st.Page("routes/runs.py", title="Runs", url_path="runs"),
    }
    st.session_state["_pages"] = pages
    st.navigation(list(pages.values())).run()


main()
