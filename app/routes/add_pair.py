"""Page entry for st.navigation (kept thin so AppTest can switch to it by path)."""

from app.views.add_pair import render

render()
