"""The exception types every layer shares.

Each is a refusal with a message that says what is wrong and what to do; the CLI prints it
as one line (`error: ...`) and the app shows it as one line of text. They all derive from
`ShiftLensError`, so a caller that only wants "a clean refusal" catches that one type.
"""

from __future__ import annotations


def clip(value, limit: int = 80) -> str:
    """`repr(value)` for a message, cut to `limit` characters with an ellipsis and the full
    length when longer: an error never echoes a 2 MB field whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    unit = ("bytes" if isinstance(value, bytes) else "items"
            if isinstance(value, (list, tuple, dict)) else "characters")
    size = len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else len(text)
    return f"{text[:limit]}… ({size:,} {unit})"


class ShiftLensError(Exception):
    """Base of every refusal ShiftLens raises on purpose."""


class PairError(ShiftLensError, ValueError):
    """A checkpoint or pair that cannot be used; the message says why and what to do."""


class PromptSetError(ShiftLensError, ValueError):
    """A prompt file that cannot be used; the message lists each problem with its line."""


class RunError(ShiftLensError, RuntimeError):
    """A run that cannot be started as asked (name clash, busy, bad name)."""


class CrossSampleError(RunError):
    """A cross-sampling job that cannot start as asked (no such run, bad option)."""


class RunsError(ShiftLensError, ValueError):
    """A run lookup, rename or delete that cannot be done; the message says why."""


class JobError(ShiftLensError, RuntimeError):
    """A job request that cannot be carried out (run busy, unknown id, wrong state)."""


class UploadError(ShiftLensError, ValueError):
    """An archive or file that cannot be taken as an upload; the message says why."""


class AccessError(ShiftLensError, ValueError):
    """A server access setting that cannot be used (sign-in limits, upload budgets); the
    message names the variable and what it takes."""


class ExportError(ShiftLensError, ValueError):
    """A figure or data export that cannot be written (no browser, unknown format)."""


class InputError(ShiftLensError, ValueError):
    """A text or chat template that cannot be used as given (too long, a template that runs
    away or fails); the message names the input and the limit."""


class SettingError(ShiftLensError, ValueError):
    """A SHIFTLENS_* environment variable with a value that cannot be used (core.settings);
    the message names the variable, what is wrong and the default."""


class SearchError(ShiftLensError, ValueError):
    """A token search that cannot run as asked (a regular expression RE2 does not take, an
    n-gram too long, an unknown export format); the message says which and why."""
