"""Every row's length in tokens, for a pair's estimate and context check (core.jobs.validate)
and the precompute's check before it writes anything (core.precompute.driver).

The estimate is only as good as the row it is sized by, so every row is counted, not a head
of the file: response_ids by their length, text by the base tokenizer in batches of at most
1 MiB (fields are capped in bytes when the file is read: core.inputs.text_limits), each
distinct prompt once. The longest trace is named, as is the first row whose prompt and
response together need more positions than either model has (`max_position_embeddings` in its
config.json): past that the scores mean nothing, so such a row is refused unless the user
asked for rows to be cut at the context (`truncate_to_context`; the precompute then cuts and
records them: core.precompute.shard). Counts are of the text as given; a chat template adds a
few tokens more, which the precompute's own check (on the exact ids) catches.
This module reads no files and loads no weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import clip
from core.inputs.rollouts import RolloutSet

BATCH_CHARS = 1024**2


def token_counts(tok, texts: list[str], special: bool = False) -> list[int]:
    """Tokens of each text (with the tokenizer's special tokens, such as a BOS, when
    `special`: a prompt as the precompute encodes it), tokenised in batches of 1 MiB."""
    out: list[int] = []
    batch: list[str] = []
    size = 0
    for text in [*texts, None]:
        if batch and (text is None or size + len(text) > BATCH_CHARS or len(batch) >= 256):
            out += [len(ids) for ids in tok(batch, add_special_tokens=special)["input_ids"]]
            batch, size = [], 0
        if text is not None:
            batch.append(text)
            size += len(text)
    return out


@dataclass(frozen=True)
class Longest:
    where: str           # the row that dominates the estimate
    prompt: int          # its prompt's tokens
    response: int        # its response's tokens
    over: str | None     # the first row past the context, as a message (None: all fit)
    n_over: int          # rows past the context


def rollout_lengths(rs: RolloutSet, tok, context: int | None, whose: str) -> Longest:
    """The longest row of `rs` (prompt + response tokens) and the rows past `context`;
    `whose` says which model's limit that is, for the message."""
    prompts = list(dict.fromkeys(r.prompt_text for r in rs.rows))
    ptoks = dict(zip(prompts, token_counts(tok, prompts, special=True)))
    texts = [r.response for r in rs.rows if r.response_ids is None]
    counts = iter(token_counts(tok, texts))
    best, over, n_over = None, None, 0
    for r in rs.rows:
        resp = len(r.response_ids) if r.response_ids is not None else next(counts)
        p = ptoks[r.prompt_text]
        if best is None or p + resp > best[1] + best[2]:
            best = (r.where, p, resp)
        if context is not None and p + resp > context:
            n_over += 1
            if over is None:
                over = (f"{r.where}: the prompt and response are {p + resp:,} tokens, more than "
                        f"the {context:,} positions {whose} reads (max_position_embeddings in "
                        "config.json); shorten the row, or cut rows at the context "
                        "(--truncate-to-context)")
    return Longest(*best, over, n_over)


def prompt_over_context(items: list[tuple[str, str]], tok, context: int | None,
                        whose: str) -> str | None:
    """The first prompt of `items` ([(where, text)]) longer than `context`, as a message."""
    if context is None:
        return None
    for (where, _), n in zip(items, token_counts(tok, [t for _, t in items], True)):
        if n >= context:
            return (f"{where}: the prompt is {n:,} tokens, at least the {context:,} positions "
                    f"{whose} reads (max_position_embeddings in config.json), leaving none "
                    "for a response; shorten it")
    return None


def length_checks(models: dict, ps, tok, truncate: bool) -> tuple[Longest | None, list]:
    """(the rollouts' longest row or None, [(name, ok, message, fatal)]): the "context"
    check of core.jobs.validate. No prompt (prompt set) or prompt and response (rollouts)
    may be longer than the shorter context of base and tuned (`models`: {role: ModelFacts});
    with `truncate`, longer rollouts are a note that they will be cut."""
    if ps is None or tok is None:
        return None, []
    known = [(f.context, role) for role, f in models.items()
             if role in ("base", "tuned") and f.context]
    context, whose = min(known) if known else (None, "")
    whose = f"the {whose} model"
    if not isinstance(ps, RolloutSet):
        items = [(f"{ps.path.name}: prompt id {clip(r.id)}", r.prompt) for r in ps.rows]
        over = prompt_over_context(items, tok, context, whose)
        return None, [] if over is None else [("context", False, over, True)]
    longest = rollout_lengths(ps, tok, context, whose)
    if longest.over is None:
        within = f", within the {context:,} positions {whose} reads" if context else ""
        return longest, [("context", True, f"the longest row is {longest.where}: "
                          f"{longest.prompt:,} prompt and {longest.response:,} response "
                          f"tokens{within}", True)]
    if truncate:
        return longest, [("context", False, f"{longest.n_over:,} row(s) longer than the "
                          f"{context:,} positions {whose} reads will be cut there and marked "
                          f"as cut in the run (the first: {longest.over.split(':')[0]})",
                          False)]
    return longest, [("context", False, longest.over, True)]
