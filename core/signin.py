"""Sign-in on an exposed server: which browser a session belongs to, which sessions are
signed in, and how fast passwords may be guessed. Pure Python state of one server process,
used by its guard (app/guard.py) and its sign-in gate (app/ui/access.py); nothing here knows
Streamlit or HTTP.

- `Tokens`: the sign-in cookie's value, a random token signed with a key of this process
  (HMAC-SHA256), so the server can tell a token it issued from one made up, keeping nothing
  per token. A restart makes every earlier token invalid.
- `Sessions`: Streamlit session id -> the token of the browser that opened it, and whether it
  is signed in. The first token a session is seen with owns it; sign-in, uploads and resuming
  the session on a new connection need that same token, so a session id alone is worth
  nothing. Bounded (`SESSION_CAP` entries, oldest forgotten: a forgotten session is only
  signed out).
- `Throttle`: wrong passwords per client address and from all addresses together. Each wrong
  password from an address makes its next try wait `delay` x 2^(n-1) seconds; `failures`
  wrong ones within `lockout` seconds lock that address out for `lockout` seconds, and
  `global_failures` from all addresses lock every address out. While a wait or a lockout
  lasts a try is refused before the password is compared (no answer to guess from).
  Each wrong password and each lockout is logged with the client address.
- `Connections`: WebSocket connections (each a Streamlit session in memory) open from
  browsers not signed in, per address and in all; past either cap a new one is refused.
- `client_address(peer, forwarded, proxies)`: the socket's address, or with `proxies` > 0
  trusted reverse proxies in front, the address they recorded in X-Forwarded-For.

Settings (read when the guard starts; `AccessError` for a value that is not a number):
SHIFTLENS_SIGNIN_DELAY (1 s), SHIFTLENS_SIGNIN_FAILURES (10), SHIFTLENS_SIGNIN_GLOBAL_FAILURES
(100), SHIFTLENS_SIGNIN_LOCKOUT (900 s), SHIFTLENS_TRUSTED_PROXIES (0),
SHIFTLENS_SIGNIN_CONNECTIONS (20), SHIFTLENS_SIGNIN_CONNECTIONS_TOTAL (500).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from core import settings
from core.access import check_password
from core.errors import AccessError

log = logging.getLogger("shiftlens.access")

DELAY_VAR = "SHIFTLENS_SIGNIN_DELAY"
FAILURES_VAR = "SHIFTLENS_SIGNIN_FAILURES"
GLOBAL_FAILURES_VAR = "SHIFTLENS_SIGNIN_GLOBAL_FAILURES"
LOCKOUT_VAR = "SHIFTLENS_SIGNIN_LOCKOUT"
PROXIES_VAR = "SHIFTLENS_TRUSTED_PROXIES"
CONNECTIONS_VAR = "SHIFTLENS_SIGNIN_CONNECTIONS"
ALL_CONNECTIONS_VAR = "SHIFTLENS_SIGNIN_CONNECTIONS_TOTAL"
DEFAULT_DELAY_S = 1.0
DEFAULT_FAILURES = 10
DEFAULT_GLOBAL_FAILURES = 100
DEFAULT_LOCKOUT_S = 900.0
DEFAULT_PROXIES = 0
DEFAULT_CONNECTIONS = 20
DEFAULT_ALL_CONNECTIONS = 500
SESSION_CAP = 10_000
WRONG = "Wrong password."


def _number(var: str, *_ignored):
    """The setting `var` (core.settings), a malformed value refused as an AccessError."""
    return settings.value(var, AccessError)


def signin_delay() -> float:
    """Seconds the next try from an address waits after its first wrong password (doubling
    with each further one): $SHIFTLENS_SIGNIN_DELAY, default 1; 0 turns the waits off."""
    return _number(DELAY_VAR, DEFAULT_DELAY_S, 0)


def signin_failures() -> int:
    """Wrong passwords from one address that lock it out: $SHIFTLENS_SIGNIN_FAILURES, 10."""
    return _number(FAILURES_VAR, DEFAULT_FAILURES, 1, int)


def global_failures() -> int:
    """Wrong passwords from all addresses together that lock everyone out:
    $SHIFTLENS_SIGNIN_GLOBAL_FAILURES, default 100."""
    return _number(GLOBAL_FAILURES_VAR, DEFAULT_GLOBAL_FAILURES, 1, int)


def lockout_seconds() -> float:
    """How long a lockout lasts, and how long a wrong password counts towards one:
    $SHIFTLENS_SIGNIN_LOCKOUT, default 900 s."""
    return _number(LOCKOUT_VAR, DEFAULT_LOCKOUT_S, 1)


def trusted_proxies() -> int:
    """Reverse proxies in front of the server whose X-Forwarded-For entries are trusted:
    $SHIFTLENS_TRUSTED_PROXIES, default 0 (the socket's address is the client's)."""
    return _number(PROXIES_VAR, DEFAULT_PROXIES, 0, int)


def signin_connections() -> tuple[int, int]:
    """Connections (Streamlit sessions, about 175 KiB each) open before sign-in from one
    address, and from all: $SHIFTLENS_SIGNIN_CONNECTIONS (20) and
    $SHIFTLENS_SIGNIN_CONNECTIONS_TOTAL (500)."""
    return (_number(CONNECTIONS_VAR, DEFAULT_CONNECTIONS, 1, int),
            _number(ALL_CONNECTIONS_VAR, DEFAULT_ALL_CONNECTIONS, 1, int))


def client_address(peer: str | None, forwarded: list[str] | None, proxies: int) -> str:
    """The client's address: `peer` (the socket's), or with `proxies` trusted proxies the
    entry they added to X-Forwarded-For (`forwarded`: the header's values), counted from the
    right. A header with fewer entries, or an entry that is not an IP address, is not used."""
    peer = peer or "unknown"
    if proxies <= 0 or not forwarded:
        return peer
    entries = [e.strip() for value in forwarded for e in value.split(",") if e.strip()]
    if len(entries) < proxies:
        return peer
    candidate = entries[-proxies].strip("[]")
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


class Tokens:
    """Sign-in cookie values: `issue()` a new one, `verify(value)` one a browser sent."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._mac(nonce)}"

    def verify(self, value: str | None) -> str | None:
        """`value` when this process issued it, else None (constant-time comparison)."""
        if not value or len(value) > 128 or value.count(".") != 1 or not value.isascii():
            return None
        nonce, mac = value.split(".")
        return value if hmac.compare_digest(mac, self._mac(nonce)) else None


class Sessions:
    """Session id -> [owner token, signed in]; thread-safe, at most `cap` entries."""

    def __init__(self, cap: int = SESSION_CAP) -> None:
        self._cap = cap
        self._lock = threading.Lock()
        self._owners: OrderedDict[str, list] = OrderedDict()
        self._signed: dict[str, int] = {}  # token -> signed-in sessions it owns

    def bind(self, session_id: str, token: str) -> bool:
        """Record `token` as the owner of a session seen for the first time; whether the
        session is owned by `token` (False for an empty token)."""
        if not token:
            return False
        with self._lock:
            entry = self._owners.get(session_id)
            if entry is None:
                entry = self._owners[session_id] = [token, False]
                while len(self._owners) > self._cap:
                    _, (old, signed) = self._owners.popitem(last=False)
                    if signed:
                        self._uncount(old)
            self._owners.move_to_end(session_id)
            return hmac.compare_digest(entry[0], token)

    def owner(self, session_id: str) -> str | None:
        with self._lock:
            entry = self._owners.get(session_id)
            return entry[0] if entry else None

    def sign_in(self, session_id: str, token: str) -> bool:
        """Mark the session signed in when `token` owns it; whether it now is."""
        with self._lock:
            entry = self._owners.get(session_id)
            if not token or entry is None or not hmac.compare_digest(entry[0], token):
                return False
            if not entry[1]:
                entry[1] = True
                self._signed[token] = self._signed.get(token, 0) + 1
            return True

    def signed_in(self, session_id: str, token: str | None) -> bool:
        """Whether the session is signed in and `token` owns it."""
        with self._lock:
            entry = self._owners.get(session_id)
            return bool(token and entry and entry[1] and hmac.compare_digest(entry[0], token))

    def token_signed_in(self, token: str | None) -> bool:
        """Whether some signed-in session is owned by `token` (that browser signed in)."""
        with self._lock:
            return bool(token) and self._signed.get(token, 0) > 0

    def _uncount(self, token: str) -> None:
        n = self._signed.get(token, 0) - 1
        if n > 0:
            self._signed[token] = n
        else:
            self._signed.pop(token, None)


class Connections:
    """Open connections of browsers not signed in, per address and in all, under caps."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address, self.total = per_address, total
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    @classmethod
    def from_settings(cls) -> Connections:
        return cls(*signin_connections())

    def open(self, address: str) -> str | None:
        """Count a new connection from `address`: None, or the reason it is refused (then it
        is not counted)."""
        with self._lock:
            if self._open.get(address, 0) >= self.per_address:
                return (f"{self.per_address} connections from {address} are open before "
                        f"sign-in ({CONNECTIONS_VAR})")
            if sum(self._open.values()) >= self.total:
                return f"{self.total} connections are open before sign-in ({ALL_CONNECTIONS_VAR})"
            self._open[address] = self._open.get(address, 0) + 1
            return None

    def close(self, address: str) -> None:
        """A connection counted by `open` has ended."""
        with self._lock:
            n = self._open.get(address, 0) - 1
            if n > 0:
                self._open[address] = n
            else:
                self._open.pop(address, None)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class Throttle:
    """Wrong-password limits per client address and in all (see the module docstring)."""

    def __init__(self, delay: float, failures: int, global_failures: int, lockout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.delay, self.failures, self.global_failures = delay, failures, global_failures
        self.lockout, self.clock = lockout, clock
        self._lock = threading.Lock()
        self._wrong: dict[str, deque] = {}  # address -> times of its recent wrong passwords
        self._not_before: dict[str, float] = {}  # address -> earliest next try (wait, lock)
        self._all: deque = deque()  # times of recent wrong passwords from every address
        self._all_locked_until = 0.0

    @classmethod
    def from_settings(cls) -> Throttle:
        return cls(signin_delay(), signin_failures(), global_failures(), lockout_seconds())

    def _forget(self, now: float) -> None:
        horizon = now - self.lockout
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        for address in [a for a, t in self._not_before.items() if t <= now]:
            times = self._wrong.get(address)
            while times and times[0] <= horizon:
                times.popleft()
            if not times:
                self._wrong.pop(address, None)
                self._not_before.pop(address, None)

    def refusal(self, address: str) -> str | None:
        """The line a try from `address` gets now without its password being compared, or
        None when it may be compared."""
        with self._lock:
            now = self.clock()
            self._forget(now)
            if now < self._all_locked_until:
                left = self._all_locked_until - now
                return ("Too many wrong passwords on this server: sign-in is locked for "
                        f"everyone for another {_minutes(left)}.")
            wait = self._not_before.get(address, 0.0) - now
            if wait <= 0:
                return None
            if len(self._wrong.get(address, ())) >= self.failures:
                return ("Too many wrong passwords from your address: sign-in is locked for "
                        f"it for another {_minutes(wait)}.")
            return f"Wait {max(wait, 0.1):.1f} s before the next try (after a wrong password)."

    def wrong(self, address: str) -> None:
        """Record a wrong password from `address`; log it, and any lockout it starts."""
        with self._lock:
            now = self.clock()
            self._forget(now)
            times = self._wrong.setdefault(address, deque())
            times.append(now)
            self._all.append(now)
            n = len(times)
            if n >= self.failures:
                self._not_before[address] = now + self.lockout
                log.warning("sign-in: wrong password from %s; %d in %s from this address: "
                            "locked out for %s", address, n, _minutes(self.lockout),
                            _minutes(self.lockout))
            else:
                wait = min(self.delay * 2 ** (n - 1), self.lockout)
                self._not_before[address] = now + wait
                log.warning("sign-in: wrong password from %s (%d of %d from this address, %d "
                            "of %d from all; next try in %.1f s)", address, n, self.failures,
                            len(self._all), self.global_failures, wait)
            if len(self._all) >= self.global_failures and now >= self._all_locked_until:
                self._all_locked_until = now + self.lockout
                log.warning("sign-in: %d wrong passwords from all addresses in %s (the last "
                            "from %s): locked for everyone for %s", len(self._all),
                            _minutes(self.lockout), address, _minutes(self.lockout))

    def right(self, address: str) -> None:
        """A right password from `address`: its wrong ones are forgotten."""
        with self._lock:
            self._wrong.pop(address, None)
            self._not_before.pop(address, None)
        log.info("sign-in from %s", address)

    def attempt(self, given: str, secret: str, address: str) -> str | None:
        """Try a password from `address`: None when it is right, else the line to show.
        Refused before comparing while a wait or lockout lasts; compared in constant time."""
        refused = self.refusal(address)
        if refused:
            log.warning("sign-in: try from %s refused unchecked: %s", address, refused)
            return refused
        if check_password(given, secret):
            self.right(address)
            return None
        self.wrong(address)
        return WRONG


_tokens = Tokens()
_sessions = Sessions()
_throttle: Throttle | None = None
_lock = threading.Lock()


def tokens() -> Tokens:
    """This process's sign-in cookie tokens."""
    return _tokens


def sessions() -> Sessions:
    """This process's session owners and sign-ins."""
    return _sessions


def throttle() -> Throttle:
    """This process's Throttle, made from the settings on first use."""
    global _throttle
    with _lock:
        if _throttle is None:
            _throttle = Throttle.from_settings()
        return _throttle


def reset(clock: Callable[[], float] = time.monotonic) -> Throttle:
    """Forget every session, sign-in and wrong password and read the settings again (for
    tests, and a guard started again in the same process); the new Throttle."""
    global _throttle, _sessions
    with _lock:
        _throttle = Throttle.from_settings()
        _throttle.clock = clock
        _sessions = Sessions()
        return _throttle
