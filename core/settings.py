"""Every `SHIFTLENS_*` environment variable, in one registry, read through one getter.

`SETTINGS` lists each `Setting(name, type, default, help)`; `value(name)` reads it from the
environment when asked (never cached, so a test or a restarted server sees a change), parses
it by its type and returns the default when the variable is unset or blank. A malformed
value is refused with one line naming the variable, what was wrong and the default, raised
as `SettingError` or as the caller's own `core.errors` type (`error=`: an upload limit
refuses as an `UploadError`, a text limit as an `InputError`, so the app's existing
handlers show the line). `markdown_table()` is the README's settings table (`python -m core
settings --markdown` prints it; tests/test_settings.py fails when the two differ).

Types: "path" (a folder), "int" and "float" (positive finite numbers), "secret" (text
taken as given, never echoed in a message), "names" (comma-separated), "paths" (separated
by os.pathsep), "text" (a word, stripped).

What this module does not do: decide what a default that depends on other settings is
(`None` here; core.paths derives the cache and upload folders, core.access the model roots)
or what a limit bounds (core.inputs.text_limits, core.jobs.archive). No other module reads a
`SHIFTLENS_*` variable (tests/test_settings.py checks it with ast).
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

from core.errors import SettingError, ShiftLensError, clip

TYPES = ("path", "int", "float", "secret", "names", "paths", "text")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, type (one of TYPES), default (what `value`
    returns when it is unset; None when the user of the setting derives it), help (one
    sentence for the README and `python -m core settings`) and, where the number alone says
    little, how the default reads (`shown`)."""

    name: str
    type: str
    default: object
    help: str
    shown: str = ""
    zero_ok: bool = False  # numbers: 0 is a valid value (e.g. "no wait"), negatives never

    def default_text(self) -> str:
        """The default as the README's table shows it."""
        if self.shown:
            return self.shown
        if self.default is None:
            return "(unset)"
        if self.type == "int":
            return f"{self.default:,}"
        return f"{self.default:g}" if self.type == "float" else str(self.default)


SETTINGS: tuple[Setting, ...] = (
    Setting("SHIFTLENS_CACHE", "path", None,
            "the folder of run folders, for the app, the CLI and every job",
            "`cache/` in the repository"),
    Setting("SHIFTLENS_UPLOADS", "path", None,
            "the folder of uploads (models/, prompts/, rollouts/), kept out of the cache",
            "`uploads/` beside the cache"),
    Setting("SHIFTLENS_PASSWORD", "secret", None,
            "the sign-in secret a server bound beyond loopback needs; without it, it refuses "
            "to serve (blank counts as unset; otherwise taken as given)"),
    Setting("SHIFTLENS_ALLOWED_HOSTS", "names", (),
            "Host names the server answers to besides localhost, 127.0.0.1 and ::1 "
            "(comma-separated; `*` allows any)", "(none)"),
    Setting("SHIFTLENS_MODEL_ROOTS", "paths", (),
            "folders an exposed server reads local models from (separated by `:`)",
            "`uploads/models/` and `assets/`"),
    Setting("SHIFTLENS_MAX_FIELD_BYTES", "int", 1024**2,
            "UTF-8 bytes of any one field of a prompt or rollout file (prompt, response, "
            "answer, a message's content); a JSONL line may hold 4 times this", "1 MiB"),
    Setting("SHIFTLENS_MAX_FILE_TEXT_BYTES", "int", 2 * 1024**3,
            "bytes of a prompt or rollout file's values in all: a JSONL file's size, a Parquet "
            "file's values once decompressed and decoded (checked from its footer and "
            "dictionaries before any row is read)", "2 GiB"),
    Setting("SHIFTLENS_MAX_ROWS", "int", 200_000,
            "rows of one prompt or rollout file: a Parquet file's row count is read from its "
            "footer before any data is read, JSONL lines are counted as they are read and the "
            "reading stops at the first row past the limit"),
    Setting("SHIFTLENS_MAX_PROMPT_TOKENS", "int", 16_384,
            "tokens of one prompt (its text, or a rollout's chat messages joined), counted "
            "with the base tokenizer when a pair is validated"),
    Setting("SHIFTLENS_TEMPLATE_SECONDS", "float", 1.0,
            "seconds a checkpoint's chat template may take to render one chat (validation, "
            "live scoring); it renders in a child process that is killed at the limit"),
    Setting("SHIFTLENS_TEMPLATE_MAX_CHARS", "int", 65_536,
            "characters a rendered chat may add to its messages' own text"),
    Setting("SHIFTLENS_LIVE_MAX_CHARS", "int", 100_000,
            "characters of the prompt, and of the response, typed into live scoring"),
    Setting("SHIFTLENS_UPLOAD_LIMIT_GIB", "float", 2.0,
            "GiB an uploaded model archive may unpack to, in all and per file "
            "(`add-pair --upload-limit-gib` for one command)"),
    Setting("SHIFTLENS_UPLOAD_MAX_FILES", "int", 1000,
            "entries of an uploaded model archive"),
    Setting("SHIFTLENS_MAX_JOBS_PER_SUBMITTER", "int", 32,
            "queued or running jobs one submitter may hold (an app session, a CLI process); "
            "jobs start round-robin between submitters"),
    Setting("SHIFTLENS_METRIC_PATH", "text", "",
            "`torch` forces the reference metric math (float64 or float32 torch) instead of "
            "the fused kernels (numba on CPU, Triton on CUDA) that --math-dtype float32 picks",
            "(unset: the path follows the device)"),
    Setting("SHIFTLENS_UPLOAD_SESSION_MIB", "int", 2048,
            "MiB of uploads one app session may hold in server memory (413 before the body is "
            "read beyond it)", "2,048 MiB"),
    Setting("SHIFTLENS_UPLOAD_TOTAL_MIB", "int", 4096,
            "MiB of uploads all sessions together may hold in server memory", "4,096 MiB"),
    Setting("SHIFTLENS_SIGNIN_DELAY", "float", 1.0,
            "seconds the next sign-in try from an address waits after its first wrong "
            "password, doubling with each further one (0 turns the waits off)", "1 s",
            zero_ok=True),
    Setting("SHIFTLENS_SIGNIN_FAILURES", "int", 10,
            "wrong passwords from one address that lock it out for SHIFTLENS_SIGNIN_LOCKOUT"),
    Setting("SHIFTLENS_SIGNIN_GLOBAL_FAILURES", "int", 100,
            "wrong passwords from all addresses together that lock every address out"),
    Setting("SHIFTLENS_SIGNIN_LOCKOUT", "float", 900.0,
            "seconds a lockout lasts, and how long a wrong password counts towards one",
            "900 s"),
    Setting("SHIFTLENS_TRUSTED_PROXIES", "int", 0,
            "reverse proxies in front of the server whose X-Forwarded-For entries are "
            "trusted (0: the socket's address is the client's)", zero_ok=True),
    Setting("SHIFTLENS_SIGNIN_CONNECTIONS", "int", 20,
            "connections open before sign-in from one address (about 175 KiB each)"),
    Setting("SHIFTLENS_SIGNIN_CONNECTIONS_TOTAL", "int", 500,
            "connections open before sign-in from all addresses together"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
assert all(s.type in TYPES for s in SETTINGS)


def setting(name: str) -> Setting:
    """The registered Setting called `name`; SettingError for a name not in the registry."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise SettingError(f"{name}: not a ShiftLens setting (known: "
                           f"{', '.join(BY_NAME)})") from None


def raw(name: str) -> str | None:
    """The variable's text, stripped; None when unset or blank (blank counts as unset)."""
    setting(name)
    text = os.environ.get(name)
    return text.strip() if text is not None and text.strip() else None


def value(name: str, error: type[ShiftLensError] = SettingError):
    """The setting's value from the environment, parsed by its type, else its default.
    Raises `error` (one line: the variable, what is wrong, the default) for a malformed
    value: a number that does not parse or is not positive."""
    s = setting(name)
    text = raw(name)
    if text is None:
        return s.default
    if s.type == "path":
        return Path(text).expanduser()
    if s.type == "text":
        return text
    if s.type == "secret":
        return os.environ[name]  # as given: spaces may belong to a secret (blank is unset)
    if s.type == "names":
        return tuple(x.strip() for x in text.split(",") if x.strip())
    if s.type == "paths":
        return tuple(Path(x.strip()).expanduser() for x in text.split(os.pathsep) if x.strip())
    what = "whole number" if s.type == "int" else "number"
    try:
        number = int(text) if s.type == "int" else float(text)
    except ValueError:
        wrong = "not a whole number" if s.type == "int" and _is_float(text) else "not a number"
        raise error(f"{name}: {wrong} ({clip(text, 40)}); give a positive {what} "
                    f"(default {s.default_text()})") from None
    if not ((number >= 0 if s.zero_ok else number > 0) and math.isfinite(number)):
        sign = "non-negative" if s.zero_ok else "positive"
        raise error(f"{name}: {clip(text, 40)} is not a {sign} finite {what}; give one "
                    f"(default {s.default_text()})")
    return number


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def markdown_table() -> str:
    """The README's settings table, one row per registered setting, in registry order."""
    rows = ["| setting | type | default | what it sets |", "|---|---|---|---|"]
    for s in SETTINGS:
        rows.append(f"| `{s.name}` | {s.type} | {s.default_text()} | {s.help} |")
    return "\n".join(rows) + "\n"


def text_table() -> str:
    """The settings for a terminal: name, type, default, then the help indented, and the
    value now set (secrets shown only as set / unset)."""
    out = []
    for s in SETTINGS:
        now = raw(s.name)
        shown = ("(set)" if now is not None else "(unset)") if s.type == "secret" else \
            (now if now is not None else "(unset)")
        out.append(f"{s.name} ({s.type}; default {s.default_text().replace('`', '')}; "
                   f"now {shown})\n" + textwrap.fill(s.help.replace("`", ""), 92,
                                                     initial_indent="    ",
                                                     subsequent_indent="    "))
    return "\n".join(out) + "\n"
