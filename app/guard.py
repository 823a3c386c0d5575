"""The server's guard: ASGI middleware that app/serve.py puts in front of Streamlit, so that
an exposed server (bound beyond loopback) accepts nothing before sign-in.

What it does, before Streamlit sees a request:
- Sign-in cookie. Exposed, a browser without a valid one gets `shiftlens_signin` (a token
  signed by this process, core.signin.Tokens; HttpOnly, SameSite=Lax, Secure under TLS) with
  the first page it loads.
- WebSocket (/_stcore/stream). The token (or "") and the client's address (the socket's, or
  X-Forwarded-For's with SHIFTLENS_TRUSTED_PROXIES) are handed to the app as the headers
  X-ShiftLens-Client and X-ShiftLens-Address, replacing any the client sent; the sign-in gate
  (app/ui/access.py) binds the session to that token and signs in only that pair. Exposed,
  a request to resume a session (its id, third in Sec-WebSocket-Protocol) is honoured only
  with the token that owns the session; otherwise the id is dropped and Streamlit opens a
  new session, which asks for the password. A session id alone grants nothing.
- Connections before sign-in. Exposed, WebSocket connections of browsers not signed in
  (each a Streamlit session in memory) are capped per address and in all
  (SHIFTLENS_SIGNIN_CONNECTIONS, SHIFTLENS_SIGNIN_CONNECTIONS_TOTAL); past a cap a new one is
  refused before it is accepted.
- Closed before sign-in (HTTP 403, logged with the address): every /_stcore/ path except
  health, host-config and stream (metrics, uploads, components, the agent API, ...),
  /media/, /component/, /app/static/ and /auth/. They open to a browser whose token owns a
  signed-in session; an upload (PUT or DELETE /_stcore/upload_file/<session>/<file>) only
  for that signed-in session itself.
- Upload budgets (exposed or not): before an upload's body is read, its declared size (or
  server.maxUploadSize when it declares none) plus what its session and all sessions already
  hold in memory must fit SHIFTLENS_UPLOAD_SESSION_MIB and SHIFTLENS_UPLOAD_TOTAL_MIB
  (core.upload_budget); else HTTP 413 with the line saying which. The size of one upload is
  Streamlit's own check (server.maxUploadSize), as is the XSRF token.
It does not check Host names (app/serve.py's HostCheck does, in front of it) nor passwords.
"""

from __future__ import annotations

import logging
import re

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import PlainTextResponse

from core import api

log = logging.getLogger("shiftlens.access")
COOKIE = "shiftlens_signin"
TOKEN_HEADER = "x-shiftlens-client"
ADDRESS_HEADER = "x-shiftlens-address"
OPEN_CORE = ("_stcore/health", "_stcore/host-config", "_stcore/stream")
CLOSED = ("_stcore/", "media/", "component/", "app/static/", "auth/")
UPLOAD = re.compile(r"_stcore/upload_file/([^/]+)/([^/]+)/?")
MULTIPART_SLACK = 1024**2  # what a multipart body may add to its one file
SIGN_IN_FIRST = "Sign in first."
_active = False


def active() -> bool:
    """Whether a Guard stands in front of this process's app: only then are the
    X-ShiftLens-* headers of a session's connection the guard's own."""
    return _active


def _held(session_id: str) -> tuple[int, int]:
    """Bytes of uploads Streamlit holds in memory for `session_id`, and for all sessions."""
    from streamlit import runtime

    storage = runtime.get_instance().uploaded_file_mgr.file_storage  # session -> id -> file

    def size(files) -> int:
        return sum(len(f.data) for f in list(files.values()))

    return (size(storage.get(session_id, {})),
            sum(size(files) for files in list(storage.values())))


class Guard:
    """ASGI middleware; see the module docstring. Keyword arguments replace what is read
    from Streamlit's config and the settings (for tests)."""

    def __init__(self, app, *, exposed: bool | None = None, base: str | None = None,
                 max_upload: int | None = None, secure: bool | None = None,
                 held=None) -> None:
        from streamlit import config

        global _active
        self.app = app
        self.exposed = (not api.is_loopback(config.get_option("server.address"))
                        if exposed is None else exposed)
        self.base = (config.get_option("server.baseUrlPath") if base is None else base) or ""
        self.base = self.base.strip("/")
        self.max_upload = (config.get_option("server.maxUploadSize") * 1024**2
                           if max_upload is None else max_upload) + MULTIPART_SLACK
        self.secure = bool(config.get_option("server.sslCertFile")) if secure is None else secure
        self.held = held or _held
        self.proxies = api.trusted_proxies()
        self.budget = api.UploadBudget.from_settings()
        self.connections = api.Connections.from_settings()
        api.throttle()  # reads the sign-in settings now
        _active = True

    def _relative(self, path: str) -> str:
        path = path.lstrip("/")
        if self.base and (path == self.base or path.startswith(self.base + "/")):
            path = path[len(self.base):].lstrip("/")
        return path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = api.tokens().verify(cookie_parser(headers.get("cookie", "")).get(COOKIE))
        peer = scope.get("client")[0] if scope.get("client") else None
        address = api.client_address(peer, headers.getlist("x-forwarded-for"), self.proxies)
        scope = self._with_identity(scope, token, address)
        path = self._relative(scope.get("path", ""))
        if scope["type"] == "websocket":
            await self._websocket(self._resume_check(scope, token, address), receive, send,
                                  token, address)
            return
        method = scope.get("method", "GET")
        upload = UPLOAD.fullmatch(path)
        if upload and method in ("PUT", "DELETE"):
            await self._upload(scope, receive, send, upload.group(1), token, address)
            return
        if self.exposed and path.startswith(CLOSED) and path.rstrip("/") not in OPEN_CORE \
                and method != "OPTIONS" and not api.sessions().token_signed_in(token):
            await self._refuse(scope, receive, send, 403, SIGN_IN_FIRST, address)
            return
        if self.exposed and token is None:
            send = self._setting_cookie(send)
        await self.app(scope, receive, send)

    def _with_identity(self, scope, token: str | None, address: str):
        """The scope with X-ShiftLens-Client/-Address set by the guard (any sent dropped)."""
        mine = (TOKEN_HEADER.encode(), ADDRESS_HEADER.encode())
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in mine]
        headers += [(mine[0], (token or "").encode("latin-1")),
                    (mine[1], address.encode("latin-1", "replace"))]
        return dict(scope, headers=headers)

    def _resume_check(self, scope, token: str | None, address: str):
        """Exposed: the scope without the session id to resume unless `token` owns it."""
        if not self.exposed:
            return scope
        headers = list(scope["headers"])
        for i, (k, v) in enumerate(headers):
            if k.lower() != b"sec-websocket-protocol":
                continue
            entries = v.decode("latin-1").split(",")
            session_id = entries[2].strip() if len(entries) >= 3 else ""
            if session_id and (not token or api.sessions().owner(session_id) != token):
                log.warning("refused to resume session %s… for %s: the connection lacks the "
                            "sign-in cookie that owns it; it gets a new session",
                            session_id[:8], address)
                entries[2] = ""
                headers[i] = (k, ",".join(entries).encode("latin-1"))
        return dict(scope, headers=headers)

    async def _websocket(self, scope, receive, send, token, address) -> None:
        """Exposed, a connection of a browser not signed in counts against the caps on such
        connections (each holds a Streamlit session); past them it is closed before it is
        accepted (HTTP 403)."""
        if not self.exposed or api.sessions().token_signed_in(token):
            await self.app(scope, receive, send)
            return
        refused = self.connections.open(address)
        if refused:
            log.warning("refused a WebSocket connection from %s: %s", address, refused)
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.connections.close(address)

    async def _upload(self, scope, receive, send, session_id: str, token, address) -> None:
        if self.exposed and not api.sessions().signed_in(session_id, token):
            await self._refuse(scope, receive, send, 403,
                               "Sign in first: uploads need a signed-in session.", address)
            return
        if scope["method"] == "DELETE":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        nbytes = int(declared) if declared.isdigit() else self.max_upload
        nbytes = min(nbytes, self.max_upload)  # larger ones Streamlit refuses unread (413)
        try:
            held_session, held_total = self.held(session_id)
        except Exception:  # fail closed: an upload store the guard cannot measure
            log.exception("cannot measure the uploads held in memory; refusing uploads")
            held_session = held_total = self.budget.total + 1
        refused = self.budget.reserve(session_id, nbytes, held_session, held_total)
        if refused:
            await self._refuse(scope, receive, send, 413, refused, address)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.budget.release(session_id, nbytes)

    async def _refuse(self, scope, receive, send, status: int, line: str, address: str):
        log.warning("refused %s %s from %s (HTTP %d): %s", scope.get("method"),
                    scope.get("path"), address, status, line)
        await PlainTextResponse(line, status_code=status)(scope, receive, send)

    def _setting_cookie(self, send):
        cookie = (f"{COOKIE}={api.tokens().issue()}; Path=/{self.base}; HttpOnly; "
                  f"SameSite=Lax{'; Secure' if self.secure else ''}").encode("latin-1")

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", []))
                               + [(b"set-cookie", cookie)])
            await send(message)

        return sending
