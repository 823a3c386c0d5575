"""Limits on text that users bring: prompt and rollout files, chat templates, live scoring.

Each limit is a setting (an environment variable, read when the limits are asked for) and
is checked before the work it bounds: a file's line and field sizes before a JSON parser or
a tokenizer sees them, a prompt's token count before a job is queued, a live-scoring text's
length before it is tokenised, a chat template's running time and output while it renders
(core.engine.chat_render). Why bytes first: a tokenizer needs hundreds of bytes of memory
per input character (the demo's, 13 GB for a 50 MB line, then an uncatchable abort), so a
field is capped far below that before any tokenizer runs. This module does not read files
or tokenise anything itself except in `check_prompt_tokens`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from core.errors import InputError, PromptSetError


def _setting(default, env: str, help: str):
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class TextLimits:
    """The limits on user text; `text_limits()` reads them from the environment."""

    max_field_bytes: int = _setting(
        1024**2, "SHIFTLENS_MAX_FIELD_BYTES",
        "UTF-8 bytes of any one field of a prompt or rollout file (prompt, response, answer, "
        "a message's content, ...); a JSONL line may hold at most 4 times this")
    max_file_text_bytes: int = _setting(
        2 * 1024**3, "SHIFTLENS_MAX_FILE_TEXT_BYTES",
        "bytes of a prompt or rollout file's values in all: a JSONL file's size, a Parquet "
        "file's values once decompressed and decoded (checked from its footer and "
        "dictionaries before any row is read)")
    max_rows: int = _setting(
        200_000, "SHIFTLENS_MAX_ROWS",
        "rows of one prompt or rollout file: a Parquet file's row count is read from its "
        "footer before any data is read, JSONL lines are counted as they are read and the "
        "reading stops at the first row past the limit")
    max_prompt_tokens: int = _setting(
        16_384, "SHIFTLENS_MAX_PROMPT_TOKENS",
        "tokens of one prompt (its text, or a rollout's chat messages joined), counted with "
        "the base tokenizer when a pair is validated")
    template_seconds: float = _setting(
        1.0, "SHIFTLENS_TEMPLATE_SECONDS",
        "seconds a checkpoint's chat template may take to render one chat (validation, live "
        "scoring); it renders in a child process that is killed at the limit")
    template_max_chars: int = _setting(
        65_536, "SHIFTLENS_TEMPLATE_MAX_CHARS",
        "characters a rendered chat may add to its messages' own text")
    live_max_chars: int = _setting(
        100_000, "SHIFTLENS_LIVE_MAX_CHARS",
        "characters of the prompt, and of the response, typed into live scoring")

    @property
    def max_line_bytes(self) -> int:
        """Bytes of one JSONL line: four fields at the cap, plus the JSON around them."""
        return 4 * self.max_field_bytes + 4096


def text_limits() -> TextLimits:
    """TextLimits with each field from its environment variable when set, else the default.
    Raises InputError for a variable that is not a positive number."""
    values = {}
    for f in fields(TextLimits):
        raw = os.environ.get(f.metadata["env"])
        if raw is None or not raw.strip():
            continue
        try:
            value = float(raw) if isinstance(f.default, float) else int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise InputError(f"{f.metadata['env']}={raw[:40]!r}: give a positive number "
                             f"(default {f.default})")
        values[f.name] = value
    return TextLimits(**values)


def fmt_size(n: int) -> str:
    """Bytes as KiB/MiB/GiB for a message."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_prompt_tokens(tokenizer, prompts, limits: TextLimits | None = None) -> int:
    """The longest prompt's token count (special tokens included), after checking each of
    `prompts` ([(where, text)]) against `limits.max_prompt_tokens`. Texts are tokenised in
    batches of at most 1 MiB together (or one field at the cap), so memory stays bounded
    whatever the file holds; a prompt of more than 8 characters per allowed token is first
    tokenised on its head alone, so the usual refusal costs a fraction of a full pass.
    Raises PromptSetError naming the first prompt over the limit."""
    lim = limits or text_limits()
    longest = 0
    batch: list[tuple[str, str, bool]] = []  # (where, text, whether only its head)
    size = 0

    def flush() -> None:
        nonlocal longest, size
        if not batch:
            return
        ids = tokenizer([t for _, t, _ in batch])["input_ids"]
        for (where, text, head_only), row in zip(batch, ids):
            if len(row) > lim.max_prompt_tokens:
                what = (f"{len(row):,} tokens in its first {len(text):,} characters"
                        if head_only else f"{len(row):,} tokens")
                raise PromptSetError(
                    f"{where}: the prompt is {what}, over the limit of "
                    f"{lim.max_prompt_tokens:,} (SHIFTLENS_MAX_PROMPT_TOKENS); shorten it")
            if not head_only:
                longest = max(longest, len(row))
        batch.clear()
        size = 0

    head = 8 * lim.max_prompt_tokens  # characters: more than any tokenizer's usual share
    for where, text in prompts:
        if len(text) > head:  # a long prompt is refused on its head when that is over already
            batch.append((where, text[:head], True))
            flush()
        if batch and (size + len(text) > 1024**2 or len(batch) >= 256):
            flush()
        batch.append((where, text, False))
        size += len(text)
    flush()
    return longest
