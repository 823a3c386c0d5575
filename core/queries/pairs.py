"""The same prompt, both samplers: a trace beside a trace of the same prompt sampled from the
other model, their verdicts, and the first token where the two responses part.

`same_prompt` lists the traces of a trace's prompt, `pair_choices` those of the other
sampler, `parting` compares two token id
sequences, `sampler_pair` puts one base-sampled and one tuned-sampled trace of a prompt side
by side with their tokens (core.queries.browse.trace_tokens). Queries only: no drawing (the
trace view's `part` mark is core.figures.trace), no model calls.
"""

from __future__ import annotations

import pandas as pd

from core.errors import InputError
from core.queries.browse import trace_tokens
from core.queries.sql import _q

SIDES = ("base", "tuned")  # left, right
VERDICTS = {True: "correct", False: "incorrect"}


def verdict(correct) -> str:
    """'correct', 'incorrect' or 'unknown' (no verifier, or no answer to check)."""
    if correct is None or pd.isna(correct):
        return "unknown"
    return VERDICTS[bool(correct)]


def same_prompt(con, run: str, trace_id: int) -> pd.DataFrame:
    """The traces of `trace_id`'s prompt in `run` (itself included), base-sampled first, then
    by trace_id: trace_id, prompt_id, sampled_from, sample_index, correct, length, finished,
    extracted_answer. Empty when the run has no such trace."""
    sql = """SELECT trace_id, prompt_id, sampled_from, sample_index, correct, length,
        finished, extracted_answer FROM traces
      WHERE run = $run AND prompt_id = (SELECT prompt_id FROM traces
                                        WHERE run = $run AND trace_id = $tid)
      ORDER BY sampled_from = 'tuned', sampled_from, trace_id"""
    return _q(con, sql, {"run": str(run), "tid": int(trace_id)})


def parting(a, b) -> int | None:
    """The first position where two token id sequences differ: the shorter one's length when
    it is a prefix of the longer, None when they are equal."""
    a, b = [int(x) for x in a], [int(x) for x in b]
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _others(rows: pd.DataFrame, trace_id: int) -> list[int]:
    me = rows.loc[rows.trace_id == int(trace_id), "sampled_from"].iloc[0]
    if me not in SIDES:
        return []
    return [int(t) for t in rows.trace_id[rows.sampled_from == SIDES[1 - SIDES.index(me)]]]


def pair_choices(con, run: str, trace_id: int) -> list[int]:
    """The traces of `trace_id`'s prompt sampled from the other model (base for a
    tuned-sampled trace and the reverse), by trace_id; [] when there are none."""
    rows = same_prompt(con, run, trace_id)
    return [] if rows.empty else _others(rows, trace_id)


def sampler_pair(con, run: str, trace_id: int, other: int | None = None) -> dict | None:
    """`trace_id` beside a trace of the same prompt sampled from the other model (`other`,
    else that sampler's first trace of the prompt): {"base": side, "tuned": side, "part":
    first differing position or None, "others": trace ids of the other sampler for the
    prompt}, a side being {"trace_id", "verdict", "correct", "length", "tokens" (a
    trace_tokens table)}. None when the trace is neither base- nor tuned-sampled, or its
    prompt has no trace of the other sampler. An `other` that is not such a trace is
    refused (InputError)."""
    rows = same_prompt(con, run, trace_id)
    if rows.empty:
        raise InputError(f"run {run!r} has no trace {int(trace_id)}")
    me = rows[rows.trace_id == int(trace_id)].iloc[0]
    others = _others(rows, trace_id)
    if not others:
        return None
    if other is not None and int(other) not in others:
        raise InputError(f"trace {int(other)} is not a trace of the other sampler for "
                         f"trace {int(trace_id)}'s prompt; one of: {others}")
    pick = rows[rows.trace_id == (others[0] if other is None else int(other))].iloc[0]
    out = {"others": others}
    for row in (me, pick):
        out[row["sampled_from"]] = {
            "trace_id": int(row["trace_id"]), "correct": row["correct"],
            "verdict": verdict(row["correct"]), "length": int(row["length"]),
            "tokens": trace_tokens(con, run, int(row["trace_id"]))}
    out["part"] = parting(out["base"]["tokens"]["token_id"], out["tuned"]["tokens"]["token_id"])
    return out
