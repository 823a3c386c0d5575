"""A minimal Streamlit client over the WebSocket protocol, for tests that act as an outsider
would without a browser: connect (sending a cookie, or a session id to resume), run the
script, fill in and submit a form, and read back what the app drew. Only what
tests/netns_access.py needs; it talks to 127.0.0.1 only."""

from __future__ import annotations

import time

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect


class StClient:
    """One WebSocket connection to a Streamlit server at `url` (http://127.0.0.1:PORT).
    `cookie` is sent as the Cookie header, `resume` as the session id to reconnect to,
    `headers` as further headers (e.g. X-Forwarded-For)."""

    def __init__(self, url: str, cookie: str | None = None, resume: str | None = None,
                 headers: dict | None = None) -> None:
        headers = dict(headers or {}, **({"Cookie": cookie} if cookie else {}))
        protocols = ["streamlit", "xsrf"] + ([resume] if resume else [])
        self.ws = connect(url.replace("http://", "ws://") + "/_stcore/stream",
                          subprotocols=protocols, additional_headers=headers,
                          open_timeout=30, max_size=None)
        self.session_id: str | None = None
        self.elements: list = []  # Element protos of the last script run

    def close(self) -> None:
        self.ws.close()

    def run(self, widgets: dict | None = None, timeout: float = 60.0) -> list:
        """Run the script (with `widgets`: {widget id: WidgetState field values}) and wait
        for it to finish; the elements it drew."""
        msg = BackMsg()
        for wid, values in (widgets or {}).items():
            state = msg.rerun_script.widget_states.widgets.add(id=wid)
            for field, value in values.items():
                setattr(state, field, value)
        msg.rerun_script.query_string = ""
        self.ws.send(msg.SerializeToString())
        self.elements = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fm = ForwardMsg()
            fm.ParseFromString(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            kind = fm.WhichOneof("type")
            if kind == "new_session":
                self.session_id = fm.new_session.initialize.session_id
            elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                self.elements.append(fm.delta.new_element)
            elif kind == "script_finished":
                if fm.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:  # st.rerun()
                    self.elements = []
                    continue
                return self.elements
        raise TimeoutError("the script run did not finish")

    def text(self) -> str:
        """What the last run drew, as the elements' protobuf text."""
        return "\n".join(str(e) for e in self.elements)

    def widget(self, kind: str, label: str | None = None):
        """The first element of `kind` (e.g. "text_input", "button") drawn, by label."""
        for e in self.elements:
            if e.WhichOneof("type") == kind:
                w = getattr(e, kind)
                if label is None or w.label == label:
                    return w
        raise LookupError(f"no {kind} {label or ''} in:\n{self.text()[:2000]}")

    def sign_in(self, password: str) -> str:
        """Fill the sign-in form with `password` and submit it; the text drawn after."""
        box, button = self.widget("text_input", "Password"), self.widget("button", "Sign in")
        self.run({box.id: {"string_value": password}, button.id: {"trigger_value": True}})
        return self.text()
