"""Browser checks of a server bound beyond loopback (--server.address 0.0.0.0).

Not collected on its own (the name does not start with test_): tests/test_access_browser.py
runs it with pytest inside a network namespace of its own (`unshare -n`), where 0.0.0.0 is
reachable only through the namespace's loopback, and every request goes to 127.0.0.1.
$SHIFTLENS_TEST_CACHE names a cache with the demo runs (the outer session's app_cache).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import streamlit_server

pytestmark = pytest.mark.browser
SECRET = "correct horse battery staple"
RUN = "demo-rl"
DESTRUCTIVE = ("Delete", "Rename", "Cancel", "Resume", "Validate and queue", "Run sweep")


@pytest.fixture(scope="module")
def cache() -> Path:
    path = os.environ.get("SHIFTLENS_TEST_CACHE")
    if not path:
        pytest.skip("run by tests/test_access_browser.py (needs SHIFTLENS_TEST_CACHE)")
    return Path(path)


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield ctx.new_page()
    ctx.close()


def settled(page, timeout: float = 60_000) -> str:
    """The page's text once its script run has finished."""
    page.locator("[data-testid=stApp]").wait_for(timeout=timeout)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')"
                           " && document.querySelector('[data-testid=stMain]')",
                           timeout=timeout)
    page.wait_for_timeout(1500)  # a rerun that stops early still draws for a moment
    return page.locator("body").inner_text()


def no_run_data(page, text: str) -> None:
    assert RUN not in text and "demo-sft" not in text, text
    assert page.locator("[data-testid=stSidebarNav]").count() == 0, "navigation is shown"
    for label in DESTRUCTIVE:
        assert page.get_by_role("button", name=label).count() == 0, f"a {label!r} button"
    assert page.locator("[data-testid=stDataFrame]").count() == 0


def test_refuses_to_serve_without_a_password(cache, page):
    env = {"SHIFTLENS_PASSWORD": ""}  # set but empty counts as unset
    with streamlit_server(cache, address="0.0.0.0", env=env) as url:
        for path in ("/", f"/?run={RUN}", f"/runs?run={RUN}", "/add"):
            page.goto(url + path)
            page.get_by_text("will not serve without a password").wait_for(timeout=60_000)
            text = settled(page)
            assert "SHIFTLENS_PASSWORD" in text, text
            no_run_data(page, text)
            assert page.get_by_label("Password", exact=True).count() == 0  # nothing to sign in to


def test_sign_in_required_and_kept(cache, page):
    with streamlit_server(cache, address="0.0.0.0", env={"SHIFTLENS_PASSWORD": SECRET}) as url:
        for path in (f"/?run={RUN}", f"/runs?run={RUN}", "/add", f"/search?run={RUN}"):
            page.goto(url + path)
            page.get_by_label("Password", exact=True).wait_for(timeout=60_000)
            no_run_data(page, settled(page))
        # a wrong password is refused and shows nothing more
        page.goto(f"{url}/runs?run={RUN}")
        page.get_by_label("Password", exact=True).fill(SECRET + "x")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Wrong password.").wait_for(timeout=30_000)
        no_run_data(page, settled(page))
        # the right one shows the app, and the session stays signed in across pages
        page.get_by_label("Password", exact=True).fill(SECRET)
        page.get_by_role("button", name="Sign in").click()
        page.locator("[data-testid=stSidebarNav]").wait_for(timeout=60_000)
        page.get_by_role("button", name="Delete").wait_for(timeout=60_000)  # the Runs page
        page.get_by_role("link", name="Overview").click()
        page.get_by_text(f"Overview · {RUN}").wait_for(timeout=60_000)
        assert page.get_by_label("Password", exact=True).count() == 0
        # a new session (another browser context) must sign in again
        other = page.context.browser.new_context().new_page()
        other.goto(f"{url}/runs?run={RUN}")
        other.get_by_label("Password", exact=True).wait_for(timeout=60_000)
        no_run_data(other, settled(other))
        other.context.close()
