"""Limits on text that users bring: prompt and rollout files, chat templates, live scoring.

Each limit is a setting (a SHIFTLENS_* environment variable registered in core.settings,
read when the limits are asked for) and is checked before the work it bounds: a file's line
and field sizes before a JSON parser or a tokenizer sees them, a prompt's token count before
a job is queued, a live-scoring text's length before it is tokenised, a chat template's
running time and output while it renders (core.engine.chat_render). Why bytes first: a
tokenizer needs hundreds of bytes of memory per input character (the demo's, 13 GB for a
50 MB line, then an uncatchable abort), so a field is capped far below that before any
tokenizer runs. This module does not read files or tokenise anything itself except in
`check_prompt_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from core.errors import InputError, PromptSetError
from core.settings import setting, value


def _setting(env: str):
    """A field whose default and help are the registered setting `env`'s (core.settings)."""
    s = setting(env)
    return field(default=s.default, metadata={"env": env, "help": s.help})


@dataclass(frozen=True)
class TextLimits:
    """The limits on user text; `text_limits()` reads them from the settings."""

    max_field_bytes: int = _setting("SHIFTLENS_MAX_FIELD_BYTES")
    max_file_text_bytes: int = _setting("SHIFTLENS_MAX_FILE_TEXT_BYTES")
    max_rows: int = _setting("SHIFTLENS_MAX_ROWS")
    max_prompt_tokens: int = _setting("SHIFTLENS_MAX_PROMPT_TOKENS")
    template_seconds: float = _setting("SHIFTLENS_TEMPLATE_SECONDS")
    template_max_chars: int = _setting("SHIFTLENS_TEMPLATE_MAX_CHARS")
    live_max_chars: int = _setting("SHIFTLENS_LIVE_MAX_CHARS")

    @property
    def max_line_bytes(self) -> int:
        """Bytes of one JSONL line: four fields at the cap, plus the JSON around them."""
        return 4 * self.max_field_bytes + 4096


def text_limits() -> TextLimits:
    """TextLimits with each field from its setting when set, else the default. Raises
    InputError (one line) for a setting that is not a positive number."""
    return TextLimits(**{f.name: value(f.metadata["env"], InputError)
                         for f in fields(TextLimits)})


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
