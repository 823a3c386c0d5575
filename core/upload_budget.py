"""Bounds on uploaded data held in the server's memory, per session and in all.

Streamlit keeps each file a browser uploads in the server's memory, whole, until its widget
lets go of it or the session ends. The server's guard (app/guard.py) asks `reserve` before it
lets an upload's body be read: the bytes the request declares (or, with no length, the most
one upload may be), plus what the session already holds and what its other uploads under way
have reserved, must fit the session's budget, and the same in all must fit the total. A
refused upload is answered before its body is read, so it costs no memory. This module only
counts: it neither reads requests nor knows where the files are kept.

Settings (read when the guard starts; `AccessError` for a value that is not a number):
SHIFTLENS_UPLOAD_SESSION_MIB (default 2048), SHIFTLENS_UPLOAD_TOTAL_MIB (default 4096). The
size of one upload is Streamlit's own `server.maxUploadSize` (MiB; .streamlit/config.toml).
"""

from __future__ import annotations

import threading
from collections import defaultdict

from core import settings
from core.errors import AccessError

SESSION_VAR = "SHIFTLENS_UPLOAD_SESSION_MIB"
TOTAL_VAR = "SHIFTLENS_UPLOAD_TOTAL_MIB"
DEFAULT_SESSION_MIB = 2048
DEFAULT_TOTAL_MIB = 4096
MIB = 1024**2


def _mib(var: str, default: int) -> int:
    """The setting `var` (core.settings) in bytes, a malformed value refused as an
    AccessError."""
    return settings.value(var, AccessError) * MIB


def session_budget() -> int:
    """Bytes of uploads one session may hold: $SHIFTLENS_UPLOAD_SESSION_MIB, 2048 MiB."""
    return _mib(SESSION_VAR, DEFAULT_SESSION_MIB)


def total_budget() -> int:
    """Bytes of uploads all sessions together may hold: $SHIFTLENS_UPLOAD_TOTAL_MIB,
    default 4096 MiB."""
    return _mib(TOTAL_VAR, DEFAULT_TOTAL_MIB)


def _fmt(n: int) -> str:
    return f"{n / MIB:,.1f} MiB"


class UploadBudget:
    """Reservations for uploads under way, checked against the per-session and total
    budgets together with what is already held. Thread-safe."""

    def __init__(self, per_session: int, total: int) -> None:
        self.per_session, self.total = per_session, total
        self._lock = threading.Lock()
        self._pending: dict[str, int] = defaultdict(int)

    @classmethod
    def from_settings(cls) -> UploadBudget:
        return cls(session_budget(), total_budget())

    def reserve(self, session_id: str, nbytes: int, held_session: int,
                held_total: int) -> str | None:
        """Reserve `nbytes` for an upload of `session_id`, given the bytes the session and
        all sessions already hold: None when reserved (call `release` once the upload is
        over), else the one line saying which budget it would pass."""
        with self._lock:
            session = held_session + self._pending.get(session_id, 0) + nbytes
            total = held_total + sum(self._pending.values()) + nbytes
            if session > self.per_session:
                return (f"This upload ({_fmt(nbytes)}) would make this session hold "
                        f"{_fmt(session)} of uploads, more than {_fmt(self.per_session)} "
                        f"({SESSION_VAR}): remove an uploaded file first.")
            if total > self.total:
                return (f"This upload ({_fmt(nbytes)}) would make the server hold "
                        f"{_fmt(total)} of uploads, more than {_fmt(self.total)} "
                        f"({TOTAL_VAR}): try again later.")
            self._pending[session_id] += nbytes
            return None

    def release(self, session_id: str, nbytes: int) -> None:
        """End a reservation made by `reserve`."""
        with self._lock:
            left = self._pending.get(session_id, 0) - nbytes
            if left > 0:
                self._pending[session_id] = left
            else:
                self._pending.pop(session_id, None)

    def pending(self) -> int:
        """Bytes reserved by uploads under way."""
        with self._lock:
            return sum(self._pending.values())
