"""Faithful per-token text for any tokenizer, byte-level BPE included.

With byte-level BPE one token can hold part of a multi-byte character, so decoding a token
alone gives U+FFFD. `token_strings` decodes incrementally (as text-generation servers do):
each token gets the characters that become complete once it is appended, so the strings
of a response concatenate to exactly its decoded text; a token that completes no character
gets "" and the character lands on the token that completes it. Special tokens (EOS, ...)
get their own literal text, e.g. "<eos>".
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def token_strings(tokenizer, ids: list[int], prefix_ids: list[int] | None = None) -> list[str]:
    """Per-token text of `ids` (a response), decoded in the context of `prefix_ids`."""
    special = set(tokenizer.all_special_ids)
    context = [i for i in (prefix_ids or [])[-4:] if i not in special]  # a few tokens of context
    out: list[str] = []
    window: list[int] = list(context)
    emitted = tokenizer.decode(window) if window else ""
    for tid in ids:
        if tid in special:
            out.append(tokenizer.convert_ids_to_tokens(tid))
            continue
        window.append(tid)
        text = tokenizer.decode(window)
        if text.endswith(REPLACEMENT) and not emitted.endswith(REPLACEMENT):
            out.append("")  # an incomplete multi-byte character: wait for the rest
            continue
        new = text[len(emitted):] if text.startswith(emitted) else text
        out.append(new)
        # restart the window on this token so decoding stays O(window), keeping a little
        # context because some tokenizers decode a leading space differently in isolation
        window = window[-2:]
        emitted = tokenizer.decode(window)
    return out
