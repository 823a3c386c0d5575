"""ShiftLens app: pick a run, read its headline numbers, browse traces highlighted by js."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.highlight import highlight  # noqa: E402
from core import queries  # noqa: E402
from core.runs import list_runs  # noqa: E402

CACHE = ROOT / "cache"

st.set_page_config(page_title="ShiftLens", layout="wide")
st.title("ShiftLens")
st.caption("What did RL fine-tuning change in my model? Token-level divergence between a base "
           "model and its fine-tuned version.")

runs = list_runs(CACHE)
if not runs:
    st.warning("No runs in cache/. Build the demo runs with `python -m core.demo_runs ensure`.")
    st.stop()
names = [r.name for r in runs]
default = names.index("demo-rl") if "demo-rl" in names else 0
choice = st.sidebar.selectbox("Run", names, index=default,
                              format_func=lambda n: f"{n}")
run = runs[names.index(choice)]
st.sidebar.caption(f"{run.pair}\n\nprompts: {run.prompt_set}\n\ncreated: {run.created}")


@st.cache_resource
def connection(path: str):
    return queries.open_runs([path])


con = connection(str(run.path))
st.subheader("Headline")
st.dataframe(queries.headline(con), hide_index=True)

st.subheader("Traces, most divergent first")
traces = queries.trace_list(con, run.name, sort_by="max_js", limit=200)
st.dataframe(traces, hide_index=True)
if len(traces):
    tid = st.selectbox("Trace", traces["trace_id"].tolist())
    toks = queries.trace_tokens(con, run.name, int(tid))
    row = traces[traces["trace_id"] == tid].iloc[0]
    st.markdown(f"**Prompt:** `{row['prompt']}` — **correct:** {bool(row['correct'])}")
    st.html(highlight(toks["token"].tolist(), toks["js"].tolist()))
