"""Whether a text prompt already carries the tokenizer's chat template rendered (TRL logs
conversational prompts so), so that scoring does not template it twice.

It does not tokenise or template anything itself beyond rendering one probe message.
"""

from __future__ import annotations


def template_markers(tok) -> tuple[str, str] | None:
    """What the tokenizer's chat template puts before a user's content and after it (its
    generation prompt), BOS aside; None without a template (or one that cannot render).
    Computed once per file: already_templated takes it."""
    if not getattr(tok, "chat_template", None):
        return None
    probe = "\x00shiftlens-probe\x00"
    try:
        rendered = tok.apply_chat_template([{"role": "user", "content": probe}],
                                           tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - a template that cannot render tells nothing
        return None
    head, _, tail = rendered.partition(probe)
    bos = tok.bos_token or ""
    return (head.replace(bos, "", 1) if bos else head).strip(), tail.strip()


def already_templated(markers: tuple[str, str] | None, text, bos: str | None = None) -> bool:
    """Whether a text prompt carries the chat template rendered already (TRL logs
    conversational prompts so): it starts with the template's text before the content or
    ends with its generation prompt (`markers`: template_markers; BOS aside)."""
    if markers is None or not isinstance(text, str):
        return False
    head, tail = markers
    body = (text[len(bos):] if bos and text.startswith(bos) else text).strip()
    return bool((len(head) >= 2 and body.startswith(head))
                or (len(tail) >= 2 and body.endswith(tail)))
