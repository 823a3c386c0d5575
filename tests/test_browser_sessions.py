"""Six browser sessions at once on every page of one server (issue 13): no exception on any
page, and every session sees the run its URL names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import CHROMIUM, PAGES, drive_sessions, streamlit_server

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]


def test_six_sessions_at_once_on_every_page(app_cache):
    with streamlit_server(app_cache, env={"OMP_NUM_THREADS": "1"}) as url:
        out = drive_sessions(url, n=6, rounds=1, run="demo-sft")
    assert not out["errors"], out["errors"][:5]
    assert sorted(out["ready"]) == sorted(PAGES)
    assert all(len(v) == 6 for v in out["ready"].values()), out["ready"]
