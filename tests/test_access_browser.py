"""Access control of the served app (issue 13, item 5), in a real server and Chromium.

- The Host check of app/serve.py: plain HTTP and the WebSocket upgrade (/_stcore/stream)
  with a foreign Host header are refused; 127.0.0.1, localhost and SHIFTLENS_ALLOWED_HOSTS
  names are served.
- Text from jobs is text: a Markdown image (and an HTML <img>) in a job's error creates no
  <img> and no request.
- Bound to 0.0.0.0 (tests/netns_access.py, run inside a network namespace of its own so
  nothing outside this machine can reach it): without SHIFTLENS_PASSWORD the app refuses to
  serve; with it, no run data and no destructive control before sign-in.
"""

from __future__ import annotations

import http.client
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.api import Job
from tests.browser import CHROMIUM, ROOT, free_port, streamlit_server

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]
WS_HEADERS = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


class Pixel:
    """A tiny HTTP server on 127.0.0.1 that records every path asked of it."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pixel():
    p = Pixel()
    yield p
    p.close()


def failed_job(cache: Path, error: str) -> None:
    """A failed job in the cache's queue whose recorded error is `error` (the job.json a job
    process writes on failure, core.jobs.queue)."""
    folder = cache / ".jobs" / "j-hostile"
    folder.mkdir(parents=True)
    now = time.time()
    job = Job(id="j-hostile", run="hostile-job", state="failed", config={}, cwd=str(ROOT),
              created=now, started=now, finished=now, returncode=1, error=error)
    import json

    (folder / "job.json").write_text(json.dumps(job.to_json()), encoding="utf-8")
    (folder / "log.txt").write_text("", encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory, pixel):
    """A loopback server (app/serve.py) on a cache with no runs and one failed job whose
    error carries a Markdown image and an HTML <img> pointing at the pixel server."""
    cache = tmp_path_factory.mktemp("access_cache")
    failed_job(cache, f"ValueError: ![x]({pixel.url}/pixel) <img src=\"{pixel.url}/img\"> "
                      "**bold** <b>html</b>")
    with streamlit_server(cache, env={"SHIFTLENS_ALLOWED_HOSTS": "shiftlens.lab"}) as url:
        yield url


def status(url: str, path: str, host: str, headers: dict | None = None) -> int:
    port = int(url.rsplit(":", 1)[1])
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        con.putrequest("GET", path, skip_host=True)
        con.putheader("Host", host)
        for k, v in (headers or {}).items():
            con.putheader(k, v)
        con.endheaders()
        return con.getresponse().status
    finally:
        con.close()


def test_foreign_host_refused(server):
    port = server.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", ""):
        assert status(server, "/", host) == 400, host
        assert status(server, "/_stcore/health", host) == 400, host
        assert status(server, "/_stcore/stream", host, WS_HEADERS) == 403, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "shiftlens.lab"):
        assert status(server, "/", host) == 200, host
        assert status(server, "/_stcore/stream", host, WS_HEADERS) == 101, host


def test_markdown_image_in_job_error_is_text(server, browser, pixel):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    try:
        page.goto(f"{server}/add")
        page.get_by_text("hostile-job").first.wait_for(timeout=60_000)  # the jobs panel
        page.wait_for_timeout(2500)  # it refreshes every 2 s: one more round
        assert page.locator("img[src*='/pixel'], img[src*='/img']").count() == 0
        assert not [u for u in asked if u.startswith(pixel.url)], asked
        assert pixel.hits == []
        assert page.locator("[data-testid=stMain] b").filter(has_text="html").count() == 0
        text = page.get_by_text(f"![x]({pixel.url}/pixel)", exact=False).first.inner_text()
        assert f'<img src="{pixel.url}/img">' in text and "**bold** <b>html</b>" in text, text
    finally:
        ctx.close()


def _netns_ok() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _netns_ok(), reason="needs `unshare -n` (root or user namespaces)")
def test_exposed_server(app_cache):
    """tests/netns_access.py inside a network namespace of its own: a server on 0.0.0.0
    there is reachable through that namespace's loopback only."""
    env = {k: v for k, v in os.environ.items() if k != "SHIFTLENS_PASSWORD"}
    env["SHIFTLENS_TEST_CACHE"] = str(app_cache)
    inner = (f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider "
             "tests/netns_access.py")
    proc = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
