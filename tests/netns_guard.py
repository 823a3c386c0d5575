"""The guard of a real exposed server (app/serve.py on 0.0.0.0, with a password), attacked as
issue 23 did, without a browser: HTTP requests and Streamlit's own WebSocket protocol
(tests/stclient.py).

Not collected on its own (the name does not start with test_): tests/test_guard.py runs it
with pytest inside a network namespace of its own (`unshare -n`), where 0.0.0.0 is
reachable only through the namespace's loopback, and every request goes to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.browser import streamlit_server
from tests.stclient import StClient

pytestmark = pytest.mark.model
SECRET = "correct horse battery staple"
SIGNED_IN = "add a pair on the"  # the app's "no runs yet" warning (an empty cache): signed in
MIB = 1024**2
ENV = {"SHIFTLENS_PASSWORD": SECRET, "SHIFTLENS_SIGNIN_DELAY": "0",
       "SHIFTLENS_SIGNIN_FAILURES": "3", "SHIFTLENS_UPLOAD_SESSION_MIB": "2",
       "SHIFTLENS_TRUSTED_PROXIES": "1", "SHIFTLENS_SIGNIN_CONNECTIONS": "4"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not os.environ.get("SHIFTLENS_IN_NETNS"):
        pytest.skip("run by tests/test_guard.py inside a network namespace")
    cache = tmp_path_factory.mktemp("guard_cache")
    with streamlit_server(cache, address="0.0.0.0", env=ENV, with_process=True) as (url, proc):
        yield url, proc


def request(url, method, path, headers=None, body=b""):
    """(status, headers, body) of one HTTP request to 127.0.0.1."""
    con = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    try:
        con.request(method, path, body=body, headers=headers or {})
        r = con.getresponse()
        return r.status, r.headers, r.read()
    finally:
        con.close()


def browser_cookies(url) -> str:
    """The Cookie header a browser has after loading the page: the sign-in cookie (from the
    page) and Streamlit's XSRF cookie (from the health check it makes)."""
    _, headers, _ = request(url, "GET", "/")
    cookie = headers["set-cookie"].split(";")[0]
    _, headers, _ = request(url, "GET", "/_stcore/health", {"Cookie": cookie})
    xsrf = [c.split(";")[0] for c in headers.get_all("set-cookie") if "xsrf" in c]
    return "; ".join([cookie] + xsrf)


def multipart(size: int) -> tuple[bytes, str]:
    boundary = "shiftlensboundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    return head + b"\0" * size + f"\r\n--{boundary}--\r\n".encode(), boundary


def upload(url, cookies: str, session_id: str, size: int) -> int:
    """PUT a file of `size` bytes into the session as the browser does; the status. The
    status is read as soon as the headers are sent: a refusal must not wait for the body
    (then the body is pushed anyway, as an attacker would, and what is not taken is lost)."""
    body, boundary = multipart(size)
    xsrf = re.search(r"_streamlit_xsrf=([^;]+)", cookies)
    con = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    try:
        con.putrequest("PUT", f"/_stcore/upload_file/{session_id}/file-{size}")
        for k, v in {"Cookie": cookies, "X-Xsrftoken": xsrf.group(1) if xsrf else "",
                     "Content-Type": f"multipart/form-data; boundary={boundary}",
                     "Content-Length": str(len(body))}.items():
            con.putheader(k, v)
        con.endheaders()
        con.sock.settimeout(2)
        try:
            return con.getresponse().status  # answered before any body byte was sent
        except (TimeoutError, socket.timeout):
            con.sock.settimeout(30)
        con.sock.sendall(body)
        return con.getresponse().status
    finally:
        con.close()


def rss(proc) -> int:
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


def test_uploads_and_metrics_closed_before_sign_in(server):
    url, proc = server
    assert request(url, "GET", "/_stcore/metrics")[0] == 403
    cookies = browser_cookies(url)
    assert request(url, "GET", "/_stcore/metrics", {"Cookie": cookies})[0] == 403
    client = StClient(url, cookie=cookies)
    client.run()
    assert client.widget("text_input", "Password") and SIGNED_IN not in client.text()
    before = rss(proc)
    for _ in range(3):  # issue 23 stored 3 x 100 MiB here (HTTP 204) and kept it
        assert upload(url, cookies, client.session_id, 30 * MIB) == 403
    assert rss(proc) - before < 20 * MIB
    assert SIGNED_IN in client.sign_in(SECRET) and "Password" not in client.text()
    assert request(url, "GET", "/_stcore/metrics", {"Cookie": cookies})[0] == 200
    # signed in, uploads go through, up to the session's budget (2 MiB here)
    assert upload(url, cookies, client.session_id, MIB) == 204
    assert upload(url, cookies, client.session_id, MIB + MIB // 2) == 413
    client.close()


def test_session_id_alone_grants_nothing(server):
    url, _ = server
    cookies = browser_cookies(url)
    owner = StClient(url, cookie=cookies)
    owner.run()
    assert SIGNED_IN in owner.sign_in(SECRET)
    stolen = owner.session_id
    owner.close()
    for cookie in (None, browser_cookies(url)):  # no cookie; another browser's cookie
        thief = StClient(url, cookie=cookie, resume=stolen)
        thief.run()
        assert thief.session_id != stolen and SIGNED_IN not in thief.text(), thief.text()
        assert upload(url, cookie or "", stolen, MIB) == 403
        thief.close()
    back = StClient(url, cookie=cookies, resume=stolen)  # its own browser reconnecting
    back.run()
    assert back.session_id == stolen and SIGNED_IN in back.text()
    back.close()


def test_guessing_from_many_sessions_is_limited(server):
    url, _ = server
    log = Path(f"/tmp/shiftlens-streamlit-{url.rsplit(':', 1)[1]}.log")
    guesser = {"X-Forwarded-For": "203.0.113.7"}  # trusted: SHIFTLENS_TRUSTED_PROXIES=1
    for _ in range(3):  # one wrong password in each of three sessions
        c = StClient(url, cookie=browser_cookies(url), headers=guesser)
        c.run()
        c.sign_in("guess")
        assert "Wrong password." in c.text()
        c.close()
    c = StClient(url, cookie=browser_cookies(url), headers=guesser)
    c.run()
    c.sign_in(SECRET)  # the right one, refused unchecked while locked out
    assert "Too many wrong passwords from your address" in c.text()
    assert SIGNED_IN not in c.text()
    c.close()
    text = log.read_text()
    assert "wrong password from 203.0.113.7 (1 of 3" in text
    assert "wrong password from 203.0.113.7; 3 in 15 min from this address: locked out" in text
    c = StClient(url, cookie=browser_cookies(url), headers={"X-Forwarded-For": "203.0.113.8"})
    c.run()
    assert SIGNED_IN in c.sign_in(SECRET)  # another address is not locked out
    c.close()


def test_connections_before_sign_in_capped(server):
    url, _ = server
    crowd = {"X-Forwarded-For": "203.0.113.9"}
    open_ = [StClient(url, headers=crowd) for _ in range(4)]
    with pytest.raises(InvalidStatus) as e:
        StClient(url, headers=crowd)
    assert e.value.response.status_code == 403
    other = StClient(url, headers={"X-Forwarded-For": "203.0.113.10"})  # another address
    other.run()
    for c in open_ + [other]:
        c.close()
