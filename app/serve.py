"""How ShiftLens is served: `streamlit run app/serve.py [--server.address ...]` (what
scripts/app.sh and the Dockerfile start). It serves app/main.py as Streamlit's own server
would, behind two ASGI middlewares:
1. Host check, in front of every HTTP request and WebSocket upgrade: the Host header must
   name this server (localhost, 127.0.0.1, ::1 or a name in $SHIFTLENS_ALLOWED_HOSTS;
   core.access.host_allowed), else the request is refused (HTTP 400; a WebSocket upgrade
   gets 403) before Streamlit sees it. That defeats DNS rebinding: a web page whose name
   points at 127.0.0.1 cannot drive the app.
2. The guard (app/guard.py): the sign-in cookie, endpoints closed before sign-in (uploads,
   metrics, media, ...), no session resumed without its owner's cookie, upload budgets.
Sign-in itself is the page gate's job (app/ui/access.py); exposed, the gate serves only
behind this guard, so `streamlit run app/main.py` beyond loopback refuses to serve.
"""

from __future__ import annotations

import logging

import streamlit as st
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

from app.guard import Guard
from core import api

log = logging.getLogger("shiftlens.serve")


class HostCheck:
    """ASGI middleware: refuse requests whose Host header is not an allowed name."""

    def __init__(self, app) -> None:
        self.app = app
        self.allowed = api.allowed_hosts()  # read once, at start-up

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = Headers(scope=scope).get("host")
            if not api.host_allowed(host, self.allowed):
                log.warning("refused a %s request for Host %r (allowed: %s; add names to "
                            "SHIFTLENS_ALLOWED_HOSTS)", scope["type"], host,
                            ", ".join(self.allowed))
                if scope["type"] == "websocket":  # closing before accept: HTTP 403
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = PlainTextResponse(
                    "This server does not answer to that host name.", status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


try:  # the guard's settings, read now: a bad value stops the start with one line
    api.trusted_proxies(), api.UploadBudget.from_settings(), api.throttle()
    api.Connections.from_settings()
except ValueError as e:
    raise SystemExit(f"error: {e}") from None

app = st.App("main.py", middleware=[Middleware(HostCheck), Middleware(Guard)])
