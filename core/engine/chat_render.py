"""Chat templates rendered under a time, output-size and memory limit, in a child process.

A chat template is Jinja code that ships with a checkpoint. Two nested `range(100000)`
loops run for hours and `'a' * 10**10` takes all memory, and neither can be interrupted from
inside the process that runs it, so `render_chat` runs transformers' own renderer (the text
is exactly what `apply_chat_template` renders) in a child process (`python -m
core.engine.chat_render`) that is killed at `TextLimits.template_seconds`, whose address
space is capped at `MEMORY_BYTES` beyond what it has after start-up, and whose output is
refused past `TextLimits.template_max_chars` beyond the messages' own text. The clock starts
once the child has imported the renderer, so a busy machine's start-up is not counted.

Validation renders each checkpoint's template once this way and live scoring renders every
prompt this way (`encode_chat`); precompute and cross-sampling jobs render in their own job
process, after validation rendered the template once. Rendered texts are remembered (a few
dozen), so scoring the same prompt again starts no process.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from functools import lru_cache

from core.errors import InputError, clip
from core.inputs.text_limits import TextLimits, text_limits

MEMORY_BYTES = 512 * 1024**2
START_SECONDS = 60.0  # for the child to start and import transformers' renderer


def template_of(tokenizer) -> str | None:
    """The tokenizer's default chat template text, or None when it has none."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    return tokenizer.get_chat_template()


def render_chat(tokenizer, messages: list[dict], *, add_generation_prompt: bool = True,
                limits: TextLimits | None = None, what: str = "the chat template") -> str:
    """The chat `messages` ([{role, content}]) rendered with the tokenizer's chat template,
    as `apply_chat_template(..., tokenize=False)` renders it, within `limits`.
    Raises InputError (no template, too slow, too long, out of memory, or an error the
    template raised), naming `what` and the limit."""
    template = template_of(tokenizer)
    if template is None:
        raise InputError(f"{what}: the tokenizer has no chat template")
    lim = limits or text_limits()
    kwargs = json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)
    chat = json.dumps(messages)
    return _render(template, kwargs, chat, add_generation_prompt, lim.template_seconds,
                   lim.template_max_chars, what)


def encode_chat(tokenizer, messages: list[dict], *, limits: TextLimits | None = None,
                what: str = "the chat template") -> list[int]:
    """Token ids of `messages` with a generation prompt, as `apply_chat_template(...,
    add_generation_prompt=True, tokenize=True)` gives them, rendered within `limits`."""
    text = render_chat(tokenizer, messages, limits=limits, what=what)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@lru_cache(maxsize=32)
def _render(template: str, kwargs: str, chat: str, add_generation_prompt: bool,
            seconds: float, max_extra: int, what: str) -> str:
    request = json.dumps({"template": template, "kwargs": json.loads(kwargs),
                          "chat": json.loads(chat), "add_generation_prompt":
                          add_generation_prompt, "max_extra": max_extra}).encode()
    proc = subprocess.Popen([sys.executable, "-m", "core.engine.chat_render"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        try:
            proc.stdin.write(request)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the child died at start; reported below as an empty answer
        # a rendered chat is at most max_extra characters plus the messages, JSON-escaped
        started, answer = _collect(proc, seconds, 6 * (len(chat) + max_extra) + 4096)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if not started:
        why = (f"did not start within {START_SECONDS:.0f} s" if answer is None else
               f"stopped at start (exit code {proc.returncode})")
        raise InputError(f"{what}: the renderer {why}; try again")
    if answer is None:
        raise InputError(f"{what} ran for more than {seconds:g} s rendering one chat "
                         "(SHIFTLENS_TEMPLATE_SECONDS) and was stopped: use a checkpoint "
                         "with a simpler template, or turn the chat template off")
    try:
        reply = json.loads(answer)
    except ValueError:
        reply = {"error": f"the renderer stopped (exit code {proc.returncode})"}
    if "text" in reply:
        return reply["text"]
    if "too_long" in reply:
        raise InputError(f"{what} renders {reply['too_long']:,} characters for a chat of "
                         f"{reply['chat_chars']:,}: more than the {max_extra:,} it may add "
                         "(SHIFTLENS_TEMPLATE_MAX_CHARS)")
    raise InputError(f"{what} cannot render a chat: {clip(reply['error'], 200)[1:-1]}")


def _collect(proc, seconds: float, limit: int) -> tuple[bool, bytes | None]:
    """(whether the child said "ready", what it wrote after that up to EOF). The answer is
    None when the time runs out first (START_SECONDS to start, then `seconds`) or it is
    longer than `limit` bytes."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + START_SECONDS
    out, started = bytearray(), False
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return started, None
        block = os.read(fd, 1 << 16)
        if not block:
            return started, bytes(out)
        out += block
        if not started and b"\n" in out:
            started, out = True, out[out.index(b"\n") + 1:]
            deadline = time.monotonic() + seconds
        if len(out) > limit:
            return started, None


def _limit_memory(extra: int) -> None:
    """Cap this process's address space at its current size plus `extra` (Linux)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))
    except (OSError, ValueError, ImportError):
        pass


def _child() -> None:
    """Read a request on stdin, say "ready", render, answer one JSON object on stdout."""
    req = json.loads(sys.stdin.buffer.read())
    from transformers.utils.chat_template_utils import render_jinja_template

    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    chat = [{k: v for k, v in m.items() if v is not None} for m in req["chat"]]
    chat_chars = sum(len(str(m.get("content", ""))) for m in chat)
    _limit_memory(MEMORY_BYTES)
    try:
        text = render_jinja_template(conversations=[chat], chat_template=req["template"],
                                     add_generation_prompt=req["add_generation_prompt"],
                                     **req["kwargs"])[0][0]
        if len(text) > chat_chars + req["max_extra"]:
            reply = {"too_long": len(text), "chat_chars": chat_chars}
        else:
            reply = {"text": text}
    except MemoryError:
        reply = {"error": f"it needs more than {MEMORY_BYTES // 1024**2} MiB of memory"}
    except RecursionError:
        reply = {"error": "it recurses too deeply"}
    except Exception as e:
        reply = {"error": f"{type(e).__name__}: {' '.join(str(e).split())}"}
    out.write(json.dumps(reply).encode())
    out.flush()


if __name__ == "__main__":
    _child()
