"""app/guard.py, the ASGI guard in front of Streamlit, on a stand-in app that records what
reaches it: endpoints closed before sign-in, uploads refused before their body is read,
upload budgets, the sign-in cookie, the identity headers, and no session resumed without
the cookie that owns it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import guard
from core import signin

MIB = 1024**2
ROOT = Path(__file__).resolve().parent.parent


class Inner:
    """A stand-in for Streamlit: records each scope and answers 204."""

    def __init__(self) -> None:
        self.scopes = []

    async def __call__(self, scope, receive, send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "http":
            await receive()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


def call(g, path, method="GET", headers=(), kind="http", client=("10.0.0.9", 5000)):
    """Run one request through the guard: (status, response headers, body reads)."""
    sent, reads = [], []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"x" * 10, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": kind, "path": path, "method": method, "client": client,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
    asyncio.run(g(scope, receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), {})
    return start.get("status"), dict(start.get("headers", [])), len(reads)


@pytest.fixture
def fresh(monkeypatch):
    for var in ("SHIFTLENS_UPLOAD_SESSION_MIB", "SHIFTLENS_UPLOAD_TOTAL_MIB",
                "SHIFTLENS_TRUSTED_PROXIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(guard, "_active", False)  # a Guard made here marks the process
    signin.reset()
    yield
    signin.reset()


def make(exposed=True, held=(0, 0), **kw):
    inner = Inner()
    g = guard.Guard(inner, exposed=exposed, base="", max_upload=200 * MIB, secure=False,
                    held=lambda sid: held, **kw)
    return g, inner


def signed_in_browser(session="s1"):
    token = signin.tokens().issue()
    signin.sessions().bind(session, token)
    assert signin.sessions().sign_in(session, token)
    return token, ("cookie", f"{guard.COOKIE}={token}")


@pytest.mark.unit
def test_closed_before_sign_in(fresh):
    g, inner = make()
    for path in ("/_stcore/metrics", "/_stcore/metrics?families=x", "/media/abc.png",
                 "/component/x/index.html", "/_stcore/bidi-components/x", "/app/static/a",
                 "/_stcore/agent/interact", "/_stcore/script-health-check", "/auth/login"):
        assert call(g, path)[0] == 403, path
    assert not inner.scopes  # nothing reached Streamlit
    for path in ("/", "/runs", "/static/js/main.js", "/_stcore/health", "/_stcore/host-config"):
        assert call(g, path)[0] == 204, path
    # an unsigned cookie, or one whose sessions are not signed in, opens nothing
    token = signin.tokens().issue()
    signin.sessions().bind("s0", token)
    assert call(g, "/_stcore/metrics", headers=[("cookie", f"{guard.COOKIE}={token}")])[0] == 403
    _, cookie = signed_in_browser()
    assert call(g, "/_stcore/metrics", headers=[cookie])[0] == 204


@pytest.mark.unit
def test_open_on_loopback(fresh):
    g, inner = make(exposed=False)
    assert call(g, "/_stcore/metrics")[0] == 204
    status, headers, _ = call(g, "/")
    assert status == 204 and b"set-cookie" not in headers  # no sign-in, no cookie


@pytest.mark.unit
def test_upload_before_sign_in_refused_unread(fresh):
    g, inner = make()
    token = signin.tokens().issue()
    signin.sessions().bind("s1", token)  # the browser's own session, not signed in yet
    for headers in ([], [("cookie", f"{guard.COOKIE}={token}")]):
        status, _, reads = call(g, "/_stcore/upload_file/s1/f1", "PUT",
                                headers=headers + [("content-length", str(100 * MIB))])
        assert (status, reads) == (403, 0)  # the body was never read
        assert call(g, "/_stcore/upload_file/s1/f1", "DELETE", headers=headers)[0] == 403
    assert not inner.scopes


@pytest.mark.unit
def test_upload_only_into_the_signed_in_session(fresh):
    g, inner = make()
    token, cookie = signed_in_browser("s1")
    other = signin.tokens().issue()
    signin.sessions().bind("s2", other)
    put = "/_stcore/upload_file/{}/f1"
    length = ("content-length", str(MIB))
    assert call(g, put.format("s1"), "PUT", headers=[cookie, length])[0] == 204
    assert call(g, put.format("s2"), "PUT", headers=[cookie, length])[0] == 403  # not its own
    assert call(g, put.format("s1"), "DELETE", headers=[cookie])[0] == 204
    assert len(inner.scopes) == 2
    assert call(g, put.format("s1"), "OPTIONS")[0] == 204  # CORS preflight carries no cookie


@pytest.mark.unit
def test_upload_budgets(fresh, monkeypatch):
    monkeypatch.setenv("SHIFTLENS_UPLOAD_SESSION_MIB", "100")
    monkeypatch.setenv("SHIFTLENS_UPLOAD_TOTAL_MIB", "150")
    _, cookie = signed_in_browser("s1")
    put = "/_stcore/upload_file/s1/f1"
    g, inner = make(held=(90 * MIB, 90 * MIB))
    status, _, reads = call(g, put, "PUT", headers=[cookie, ("content-length", str(20 * MIB))])
    assert (status, reads) == (413, 0) and not inner.scopes  # 90 held + 20 > 100 per session
    g, inner = make(held=(0, 140 * MIB))
    assert call(g, put, "PUT", headers=[cookie, ("content-length", str(20 * MIB))])[0] == 413
    g, inner = make(held=(0, 0))
    # no Content-Length (chunked): reserved as the largest upload (200 MiB + slack) > 100
    assert call(g, put, "PUT", headers=[cookie])[0] == 413
    assert call(g, put, "PUT", headers=[cookie, ("content-length", str(20 * MIB))])[0] == 204
    assert g.budget.pending() == 0  # released once the upload is over
    g, inner = make(exposed=False, held=(95 * MIB, 95 * MIB))  # budgets hold on loopback too
    assert call(g, put, "PUT", headers=[("content-length", str(20 * MIB))])[0] == 413


@pytest.mark.unit
def test_cookie_issued_once_and_locked_down(fresh):
    g, _ = make()
    status, headers, _ = call(g, "/")
    cookie = headers[b"set-cookie"].decode()
    value = cookie.split(";")[0].split("=", 1)[1]
    assert signin.tokens().verify(value) == value
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    _, headers, _ = call(g, "/", headers=[("cookie", f"{guard.COOKIE}={value}")])
    assert b"set-cookie" not in headers  # a valid one is kept, not replaced
    _, headers, _ = call(g, "/", headers=[("cookie", f"{guard.COOKIE}=forged.00")])
    assert b"set-cookie" in headers


def ws(g, inner, headers):
    call(g, "/_stcore/stream", kind="websocket", headers=headers)
    return dict((k.decode(), v.decode()) for k, v in inner.scopes[-1]["headers"])


@pytest.mark.unit
def test_identity_headers_are_the_guards(fresh):
    g, inner = make()
    token, cookie = signed_in_browser()
    seen = ws(g, inner, [cookie, (guard.TOKEN_HEADER, "forged"), (guard.ADDRESS_HEADER, "1.1.1.1")])
    assert seen[guard.TOKEN_HEADER] == token and seen[guard.ADDRESS_HEADER] == "10.0.0.9"
    seen = ws(g, inner, [(guard.TOKEN_HEADER, token)])  # a token as a header is no cookie
    assert seen[guard.TOKEN_HEADER] == ""


@pytest.mark.unit
def test_forwarded_address_only_when_trusted(fresh, monkeypatch):
    g, inner = make()
    assert ws(g, inner, [("x-forwarded-for", "1.2.3.4")])[guard.ADDRESS_HEADER] == "10.0.0.9"
    monkeypatch.setenv("SHIFTLENS_TRUSTED_PROXIES", "1")
    g, inner = make()
    assert ws(g, inner, [("x-forwarded-for", "1.2.3.4")])[guard.ADDRESS_HEADER] == "1.2.3.4"


@pytest.mark.unit
def test_session_resumed_only_with_its_cookie(fresh, caplog):
    g, inner = make()
    token, cookie = signed_in_browser("victim-session")
    proto = "streamlit, xsrf, victim-session"
    header = "sec-websocket-protocol"
    assert ws(g, inner, [cookie, (header, proto)])[header] == proto  # its own browser
    stranger = f"{guard.COOKIE}={signin.tokens().issue()}"
    for headers in ([], [("cookie", stranger)]):
        assert ws(g, inner, headers + [(header, proto)])[header] == "streamlit, xsrf,"
    assert "refused to resume session victim-s… for 10.0.0.9" in caplog.text
    assert ws(g, inner, [(header, "streamlit, xsrf")])[header] == "streamlit, xsrf"
    g, inner = make(exposed=False)  # on loopback there is no sign-in to protect
    assert ws(g, inner, [(header, proto)])[header] == proto


def _netns_ok() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.model
@pytest.mark.skipif(not _netns_ok(), reason="needs `unshare -n` (root or user namespaces)")
def test_exposed_server_guard():
    """tests/netns_guard.py inside a network namespace of its own: a real server on 0.0.0.0
    there (reachable through that namespace's loopback only), attacked over HTTP and
    Streamlit's WebSocket protocol: uploads and metrics before sign-in, a session id reused
    on a new connection, guessing from many sessions, connections before sign-in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFTLENS_")}
    env["SHIFTLENS_IN_NETNS"] = "1"
    inner = (f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider "
             "tests/netns_guard.py")
    proc = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "4 passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


@pytest.mark.unit
def test_connections_before_sign_in_capped(fresh, monkeypatch):
    monkeypatch.setenv("SHIFTLENS_SIGNIN_CONNECTIONS", "2")
    g, inner = make()
    sent = []

    async def send(message):
        sent.append(message)

    def connect(headers=()):
        scope = {"type": "websocket", "path": "/_stcore/stream", "client": ("10.0.0.9", 1),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
        asyncio.run(g(scope, None, send))

    connect()  # counted while open, released when it ends
    assert len(inner.scopes) == 1 and g.connections._open == {}
    g.connections.open("10.0.0.9")
    g.connections.open("10.0.0.9")  # two still open from this address
    connect()
    assert sent == [{"type": "websocket.close", "code": 1008}] and len(inner.scopes) == 1
    _, cookie = signed_in_browser()
    connect([cookie])  # a signed-in browser is not capped
    assert len(inner.scopes) == 2
