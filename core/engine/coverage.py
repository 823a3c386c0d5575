"""What a tokenizer cannot represent: characters it maps to its unknown token, and text that
does not survive encode -> decode. Live scoring reports both, so a score is never silently
the score of `<unk>` instead of what the user typed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Coverage:
    unknown_chars: tuple[str, ...]  # distinct characters encoded as the unknown token
    unknown_tokens: int             # tokens of the text that are the unknown token
    round_trip: bool                # decode(encode(text)) == text

    @property
    def ok(self) -> bool:
        return not self.unknown_tokens and self.round_trip

    def line(self) -> str | None:
        """One line for the user, or None when the text is represented exactly."""
        if self.ok:
            return None
        parts = []
        if self.unknown_tokens:
            shown = ", ".join(repr(c) for c in self.unknown_chars[:12])
            extra = len(self.unknown_chars) - 12
            more = f" and {extra} more" if extra > 0 else ""
            parts.append(f"{self.unknown_tokens} token(s) are the tokenizer's unknown token: "
                         f"the characters {shown}{more} are not in its vocabulary and were "
                         "scored as that token")
        elif not self.round_trip:
            parts.append("the text does not survive encode -> decode unchanged (the "
                         "tokenizer normalises or drops some of it)")
        return "; ".join(parts) + "."


def coverage(tokenizer, text: str) -> Coverage:
    """How faithfully `tokenizer` represents `text` (no special tokens added)."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    unk = tokenizer.unk_token_id
    n_unk = sum(i == unk for i in ids) if unk is not None else 0
    chars: list[str] = []
    if n_unk:
        seen = set()
        for ch in text:  # a character alone maps to the unknown token: it is not covered
            if ch in seen or ch.isspace():
                continue
            seen.add(ch)
            if unk in tokenizer(ch, add_special_tokens=False)["input_ids"]:
                chars.append(ch)
    back = tokenizer.decode(ids, skip_special_tokens=False)
    return Coverage(tuple(chars), n_unk, back == text)
