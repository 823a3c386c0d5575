"""Helpers for browser tests: a Streamlit server on a free port and headless Chromium."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(cache: Path, timeout: float = 60.0, *, env: dict | None = None,
                     own_group: bool = False, with_process: bool = False,
                     address: str = "127.0.0.1", script: str = "app/serve.py"):
    """Run `streamlit run app/serve.py` (as scripts/app.sh does: app/main.py behind the Host
    check) against `cache`; yield its base URL, always http://127.0.0.1:PORT (and the
    process with `with_process`). `env` adds environment variables; `own_group` makes the
    server lead its own process group (a test can then kill it, and only it, with killpg);
    `address` is the address it binds (anything beyond loopback only inside a network
    namespace of the test's own: tests/test_access_browser.py); `script` another entry."""
    port = free_port()
    full_env = dict(os.environ, SHIFTLENS_CACHE=str(cache), PYTHONUNBUFFERED="1", **(env or {}))
    log = open(Path(tempfile.gettempdir()) / f"shiftlens-streamlit-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / script),
         "--server.port", str(port), "--server.address", address,
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=own_group)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:  # wait for the health endpoint, not for a fixed time
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start; see {log.name}") from None
                time.sleep(0.2)
        yield (url, proc) if with_process else url
    finally:
        stop(proc)
        log.close()


def press(page, button, done, timeout: float = 60.0, tries: int = 3) -> None:
    """Click `button` and wait for the locator `done` to show. A click that starts no script
    run (no running indicator, nothing shown, within 5 s) is made again, up to `tries`
    times: on a loaded machine Chromium sometimes drops a click on a Streamlit button and
    no message reaches the server (seen 1 run in 5-10 under two CPU-bound processes, with
    the button visible, enabled and still; a person clicks again). A button that does
    nothing still fails: `done` never shows."""
    running = page.get_by_test_id("stStatusWidget")
    for _ in range(tries):
        button.click()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if running.count() or done.first.is_visible():
                done.first.wait_for(timeout=timeout * 1000)
                return
            page.wait_for_timeout(100)
    done.first.wait_for(timeout=timeout * 1000)


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server (its whole process group when it leads one) and wait for it."""
    if proc.poll() is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
    except ProcessLookupError:
        return
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ----------------------------------------------------------------------------- many sessions

PAGES = ("traces", "overview", "search", "cross", "live", "add", "runs")
READY_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')
  && !!document.querySelector('[data-testid="stSidebar"]')"""


async def _ready(page, timeout: float) -> None:
    """Until the script run has finished (no running indicator for 0.5 s)."""
    deadline = time.monotonic() + timeout
    calm = None
    while time.monotonic() < deadline:
        if await page.evaluate(READY_JS):
            calm = calm or time.monotonic()
            if time.monotonic() - calm >= 0.5:
                return
        else:
            calm = None
        await page.wait_for_timeout(100)
    raise TimeoutError("page not ready")


async def _session(browser, url: str, i: int, pages, run: str, until: float, rounds: int,
                   out: dict) -> None:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    done = 0
    try:
        while done < rounds or time.monotonic() < until:
            for name in pages:
                t = time.monotonic()
                try:
                    # generous: 8 Chromiums on 2 cores can take tens of seconds per page
                    await page.goto(f"{url}/{name}?run={run}", timeout=180_000)
                    await _ready(page, 120)
                except Exception as e:  # noqa: BLE001 - reported as this visit's error
                    out["errors"].append(f"session {i} {name}: {type(e).__name__}: {e}")
                    continue
                out["ready"].setdefault(name, []).append(time.monotonic() - t - 0.5)
                for text in await page.locator('[data-testid="stException"]').all_inner_texts():
                    out["errors"].append(f"session {i} {name}: {text.splitlines()[0][:200]}")
                if name not in ("add", "runs") and f"run={run}" not in page.url:
                    out["errors"].append(f"session {i} {name}: shows another run ({page.url})")
            done += 1
    finally:
        await ctx.close()


def drive_sessions(url: str, n: int = 8, seconds: float = 0.0, rounds: int = 1,
                   run: str = "demo-rl", pages=PAGES) -> dict:
    """Open `n` browser sessions at once, each visiting every page of `pages` with `?run=run`
    for at least `rounds` rounds and `seconds` seconds; returns {"errors": [...], "ready":
    {page: [seconds to a finished script run]}}. An error is a visit that did not finish, a
    Streamlit exception on the page, or a page showing another run than asked."""
    import asyncio

    from playwright.async_api import async_playwright

    out: dict = {"errors": [], "ready": {}}

    async def main():
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            until = time.monotonic() + seconds
            try:
                await asyncio.gather(*(_session(browser, url, i, pages, run, until, rounds, out)
                                       for i in range(n)))
            finally:
                await browser.close()

    asyncio.run(main())
    return out
