"""Faithful per-token text for any tokenizer, byte-level BPE included.

With byte-level BPE one token can hold part of a multi-byte character, so decoding a token
alone gives U+FFFD. `token_strings` decodes incrementally (as text-generation servers do):
each token gets the characters that become complete once it is appended, so the strings
of a response's non-special tokens concatenate to exactly
`tokenizer.decode(ids, skip_special_tokens=True)`; a token that completes no character
gets "" and the character lands on the token that completes it. Special tokens (EOS, ...)
get their own literal text, e.g. "<eos>".

How: decoding is lossy UTF-8, so only the last character of a decoded window can still
change when tokens are appended, and only if it is U+FFFD (an incomplete sequence that
the next bytes may complete). Everything before it is final. Each token therefore gets the
growth of the window's final text; a held-back U+FFFD that never completes (an invalid
byte, or a response cut mid-character) lands on the next token, or on the last
non-special token at the end. The window is cut back to its last few tokens, which always
hold any incomplete character (at most 3 bytes, so at most 3 tokens), so each step decodes
O(window) tokens.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"
KEEP = 4  # tokens kept when the window is cut: an incomplete character (<= 3) + 1 of context


def _final(text: str) -> str:
    """The part of a decoded window that appending tokens cannot change."""
    return text[:-1] if text.endswith(REPLACEMENT) else text


def token_strings(tokenizer, ids: list[int], prefix_ids: list[int] | None = None) -> list[str]:
    """Per-token text of `ids` (a response), decoded in the context of `prefix_ids`.

    The context (a few non-special prompt tokens) only keeps tokenizers that decode a
    leading space differently in isolation from dropping it; it adds no text of its own,
    and is left out when it ends inside a character.
    """
    special = set(tokenizer.all_special_ids)
    window = [i for i in (prefix_ids or [])[-KEEP:] if i not in special]
    done = tokenizer.decode(window) if window else ""  # text already handed out
    if done.endswith(REPLACEMENT):  # context ends inside a character: the response's
        window, done = [], ""  # bytes must not complete it, so decode without context
    out: list[str] = []
    last = -1  # index in `out` of the last non-special token
    text = ""
    for tid in ids:
        if tid in special:
            out.append(tokenizer.convert_ids_to_tokens(tid))
            continue
        window.append(tid)
        text = tokenizer.decode(window)
        final = _final(text)
        out.append(final[len(done):])
        last = len(out) - 1
        done = final
        if len(window) > 2 * KEEP:  # cut the window; re-decode so `done` matches it
            window = window[-KEEP:]
            done = _final(tokenizer.decode(window))
    if last >= 0 and text.endswith(REPLACEMENT):
        out[last] += REPLACEMENT  # the response ends inside a character (or on a bad byte)
    return out


class Detokenizer:
    """Per-token text for a whole run, fast.

    `response` first tries each token's standalone text, and keeps it only when those pieces
    join to exactly the decoded response (one decode per trace checks it); otherwise it
    falls back to the incremental `token_strings`. Both give the same strings where the fast
    path applies, so the shortcut changes speed, never output. `display` maps ids to the
    text shown in top-k lists: the standalone decode, or the raw vocabulary piece when that
    is a partial character or a special token.
    """

    def __init__(self, tokenizer):
        import numpy as np

        self.tok = tokenizer
        n = len(tokenizer)
        self.special = set(tokenizer.all_special_ids)
        pieces = tokenizer.batch_decode([[i] for i in range(n)])
        raw = tokenizer.convert_ids_to_tokens(list(range(n)))
        self.pieces = pieces
        shown = [r if (i in self.special or REPLACEMENT in p or r is None) else p
                 for i, (p, r) in enumerate(zip(pieces, raw))]
        self.shown = np.array([s if s is not None else "" for s in shown], dtype=object)

    def response(self, ids: list[int], prefix_ids: list[int] | None = None) -> list[str]:
        out = [self.shown[i] if i in self.special else self.pieces[i] for i in ids]
        text = "".join(s for i, s in zip(ids, out) if i not in self.special)
        if REPLACEMENT not in text and text == self.tok.decode(ids, skip_special_tokens=True):
            return out
        return token_strings(self.tok, ids, prefix_ids)

    def display(self, ids) -> list[str]:
        import numpy as np

        return self.shown[np.asarray(ids, dtype=np.int64)].tolist()


_cache: dict[int, tuple[object, Detokenizer]] = {}


def detokenizer_for(tokenizer) -> Detokenizer:
    """A Detokenizer per tokenizer object (building its vocabulary tables costs one pass)."""
    hit = _cache.get(id(tokenizer))
    if hit is None or hit[0] is not tokenizer:
        if len(_cache) > 4:
            _cache.clear()
        hit = _cache[id(tokenizer)] = (tokenizer, Detokenizer(tokenizer))
    return hit[1]
