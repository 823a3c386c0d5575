"""Who may reach a ShiftLens server, and what it may be asked to read: the access policy.

The app (app/ui/access.py, app/serve.py) and tests call these; nothing here knows Streamlit.
The three variables below are settings of core.settings, read through it.

- `is_loopback(address)`: whether the address the server listens on is reachable from this
  machine only (127.0.0.0/8, ::1, "localhost"). Anything else, "" and 0.0.0.0 included (an
  empty address binds every interface), is *exposed*.
- Exposed, the server needs `SHIFTLENS_PASSWORD` (`password()`); without it, it refuses to
  serve (`refusal(address)` is the line it shows). `check_password` compares in constant
  time (hmac.compare_digest).
- `host_allowed(host)`: the HTTP Host header names this server: localhost, 127.0.0.1, ::1
  or a name in `SHIFTLENS_ALLOWED_HOSTS` (comma-separated; "*" allows any). Refusing other
  names defeats DNS rebinding against a server on 127.0.0.1.
- `model_roots(cache)`, `confine_model(spec, roots)`: exposed, a local model folder is
  accepted only under the roots (`SHIFTLENS_MODEL_ROOTS`, paths separated by os.pathsep;
  default the upload folder and assets/). A spec outside them gets one answer whether or not
  the path exists: it is classified by its text alone, the disk outside the roots is never
  consulted. Hub ids (org/name) still pass.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from core.engine.pair import HUB_ID, ModelRef, resolve
from core.errors import PairError
from core.paths import ASSETS, models_dir
from core.settings import value

PASSWORD_VAR = "SHIFTLENS_PASSWORD"
HOSTS_VAR = "SHIFTLENS_ALLOWED_HOSTS"
ROOTS_VAR = "SHIFTLENS_MODEL_ROOTS"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(address: str | None) -> bool:
    """True when `address` (a server bind address) is reachable from this machine only."""
    a = (address or "").strip().strip("[]").lower()
    if a == "localhost":
        return True
    try:
        return ipaddress.ip_address(a).is_loopback
    except ValueError:  # "", a host name, garbage: treat as exposed
        return False


def password() -> str | None:
    """The sign-in secret from $SHIFTLENS_PASSWORD; None when unset or empty."""
    return value(PASSWORD_VAR)


def check_password(given: str, secret: str) -> bool:
    """Whether `given` equals `secret`, compared in constant time (of their SHA-256 digests,
    so not even the secret's length shows in the timing)."""
    digest = [hashlib.sha256(str(x).encode("utf-8")).digest() for x in (given, secret)]
    return hmac.compare_digest(*digest)


def refusal(address: str | None) -> str:
    """The one line an exposed server without a password shows instead of the app."""
    return (f"ShiftLens listens on {address or 'every interface'}, beyond this machine, and "
            f"will not serve without a password: restart it with {PASSWORD_VAR} set (e.g. "
            f"{PASSWORD_VAR}=<secret> scripts/app.sh --server.address 0.0.0.0, or docker run "
            f"-e {PASSWORD_VAR}=<secret> ...), or listen on 127.0.0.1 only.")


def allowed_hosts() -> tuple[str, ...]:
    """The Host names the server answers to: loopback names plus $SHIFTLENS_ALLOWED_HOSTS."""
    extra = (h.lower().strip("[]").rstrip(".") for h in value(HOSTS_VAR))
    return LOOPBACK_NAMES + tuple(h for h in extra if h)


def host_allowed(host: str | None, allowed: Sequence[str] | None = None) -> bool:
    """Whether an HTTP Host header (name[:port], [v6]:port) names an allowed host. A missing
    or malformed header is refused."""
    allowed = allowed_hosts() if allowed is None else tuple(allowed)
    if "*" in allowed:
        return True
    if not host:
        return False
    try:
        parts = urlsplit(f"//{host.strip()}")
        name, _ = parts.hostname, parts.port  # .port raises on a non-numeric port
    except ValueError:
        return False
    if not name or parts.username or parts.password or parts.path or parts.query \
            or parts.fragment:
        return False
    return name.lower().rstrip(".") in allowed


def model_roots(cache: str | Path | None = None) -> list[Path]:
    """Folders a local model may come from on an exposed server: $SHIFTLENS_MODEL_ROOTS
    (os.pathsep-separated), else the upload folder of `cache` (None: the default cache)
    and assets/. Absolute."""
    roots = value(ROOTS_VAR) or (models_dir(cache), ASSETS)
    return [_absolute(str(r)) for r in roots]


def outside_roots(spec: str) -> str:
    """The one answer for a model path outside the roots (the same whether it exists)."""
    return (f"{spec}: not a folder under this server's model roots ({ROOTS_VAR}) nor a Hugging "
            "Face hub id: upload the model as a zip/tar archive, or give its hub id")


def _absolute(path: str) -> Path:
    """The path made absolute and normalised ('..' removed) by its text alone (no disk)."""
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(path.strip()))))


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def confine_model(spec: str, roots: Sequence[Path]) -> ModelRef:
    """The model `spec` names, confined to `roots`: a ModelRef to a folder inside a root, a
    hub id (org/name) as a hub reference, else PairError with `outside_roots(spec)`.

    A spec is placed by its text alone first (made absolute, '..' removed), so a path outside
    every root is never looked up on disk and its existence cannot be probed; a path inside
    is then resolved (links followed) and must still be inside, so a link cannot point out."""
    spec = str(spec).strip()
    roots = [Path(r) for r in roots]
    real_roots = [r.resolve() for r in roots]
    lexical = _absolute(spec)
    if _under(lexical, roots + real_roots):
        real = lexical.resolve()
        if _under(real, real_roots):
            return resolve(str(real))  # "no such folder" etc. reveal nothing outside the roots
    elif HUB_ID.fullmatch(spec) and not spec.startswith((".", "/", "~")):
        return ModelRef(spec, None)
    raise PairError(outside_roots(spec))


_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"():,]+/)+([^\s'\"():,/]*)")


def public_text(text: str) -> str:
    """A log or error text as an exposed server may show it: tracebacks cut to their last
    line (the exception itself) and absolute server paths reduced to `…/basename`. The full
    text stays in the job's log file on the server."""
    out, in_tb = [], False
    for line in str(text).splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_tb = True
            continue
        if in_tb and (line[:1].isspace() or not line.strip()):  # frames, source, carets
            continue
        in_tb = False
        out.append(_ABS_PATH.sub(lambda m: "…/" + m.group(1), line))
    return "\n".join(out)
