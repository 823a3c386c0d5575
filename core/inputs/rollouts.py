"""Rollouts a researcher already has: JSONL or Parquet rows of prompts and sampled responses,
as RL frameworks (verl, OpenRLHF, TRL) and eval harnesses write them, to score without
sampling (`precompute --traces FILE`).

Each row has
  prompt (text) or messages (a chat list of {role, content}, rendered with the tokenizer's
      chat template, generation prompt added);
  response (text, tokenised once) or response_ids (token ids);
and optionally id or prompt_id (rows with the same prompt share it; default: the row's
number), answer (the reference, for verifying), verifier ("exact" | "math", default
"math"), correct (true/false: kept as given; absent, it is verified against `answer` when
there is one, else left empty) and sampled_from (any label: tuned, base, step-300, ...;
default "tuned"). Validation names the line or row and the field of every problem.
Files as frameworks write them (TRL, verl, OpenRLHF, token-id dumps, --field mappings) are
turned into these fields first by core.inputs.formats, which records how.
One prompt id is one prompt: the same id written as a number and as a string (1 and "1"),
or given to different prompts, is refused naming both rows, never merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import PromptSetError, clip
from core.inputs import formats
from core.inputs.prompts import answer_problem, raise_problems, verifier_problems


@dataclass(frozen=True)
class RolloutRow:
    prompt_id: str
    prompt: str | None              # text, or None when `messages` is given
    messages: tuple | None          # ((role, content), ...) for a chat-list prompt
    response: str | None            # text, or None when `response_ids` is given
    response_ids: tuple | None
    answer: str | None
    verifier: str
    correct: bool | None
    sampled_from: str
    where: str                      # "file line 7": for messages about this row

    @property
    def prompt_text(self) -> str:
        """The prompt as one string (chat lists joined role: content), for the traces table."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(f"{r}: {c}" for r, c in self.messages)


@dataclass
class RolloutSet:
    path: Path
    rows: list[RolloutRow]
    fingerprint: str  # sha256 of the file's bytes
    mapping: formats.Mapping | None = None  # the format read and its field mapping

    @property
    def sample_index(self) -> list[int]:
        """Per row: 0, 1, ... within its (prompt_id, sampled_from), in file order."""
        seen: dict[tuple[str, str], int] = {}
        out = []
        for r in self.rows:
            key = (r.prompt_id, r.sampled_from)
            out.append(seen.get(key, 0))
            seen[key] = out[-1] + 1
        return out


def _text(v) -> bool:
    return isinstance(v, str)


def _check(rec, where: str, index: int) -> tuple[RolloutRow | None, list[str]]:
    if not isinstance(rec, dict):
        return None, [f"{where}: expected a JSON object, got {type(rec).__name__}"]
    errs = []
    prompt, messages = rec.get("prompt"), rec.get("messages")
    if (prompt is None) == (messages is None):
        errs.append(f"{where}: give exactly one of 'prompt' (text) and 'messages' (chat list)")
    elif prompt is not None and not _text(prompt):
        errs.append(f"{where}: field 'prompt' must be a string")
    elif messages is not None:
        ok = isinstance(messages, list) and messages and all(
            isinstance(m, dict) and _text(m.get("role")) and _text(m.get("content"))
            for m in messages)
        if not ok:
            errs.append(f"{where}: field 'messages' must be a non-empty list of "
                        "{role: text, content: text}")
    response, ids = rec.get("response"), rec.get("response_ids")
    if (response is None) == (ids is None):
        errs.append(f"{where}: give exactly one of 'response' (text) and 'response_ids'")
    elif response is not None and not (_text(response) and response):
        errs.append(f"{where}: field 'response' must be a non-empty string")
    elif ids is not None and not (isinstance(ids, list) and ids and all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids)):
        errs.append(f"{where}: field 'response_ids' must be a non-empty list of token ids "
                    "(integers >= 0)")
    pid = rec.get("prompt_id", rec.get("id", index))
    if not isinstance(pid, (str, int)) or isinstance(pid, bool):
        errs.append(f"{where}: field 'prompt_id' must be a string or integer")
    answer = rec.get("answer")
    if answer is not None and (why := answer_problem(answer)) is not None:
        errs.append(f"{where}: {why}")
    verifier = rec.get("verifier") or "math"
    errs.extend(verifier_problems(verifier, where))
    correct = rec.get("correct")
    if correct is not None and not isinstance(correct, bool):
        errs.append(f"{where}: field 'correct' must be true or false")
    source = rec.get("sampled_from") or "tuned"
    if not _text(source):
        errs.append(f"{where}: field 'sampled_from' must be a string")
    if errs:
        return None, errs
    return RolloutRow(
        str(pid), prompt,
        None if messages is None else tuple((m["role"], m["content"]) for m in messages),
        response, None if ids is None else tuple(ids),
        None if answer is None else str(answer), verifier, correct, source, where), []


def load_rollouts(path: str | Path, limit: int | None = None, fields="") -> RolloutSet:
    """Read and validate a rollout file, in any format core.inputs.formats knows (`fields`:
    --field mappings for others); raises PromptSetError listing the problems found (a row
    limit and the first problems stop the reading: core.inputs.prompts.read_records)."""
    p, fingerprint, located, errs, mapping = formats.read_rollout_records(path, fields)
    first: dict[str, tuple[object, RolloutRow]] = {}  # prompt id -> (as given, first row)
    rows = []
    for i, (where, rec) in enumerate(located):
        row, row_errs = _check(rec, where, i)
        errs.extend(row_errs)
        if row is not None:
            given = rec.get("prompt_id", rec.get("id", i)) if isinstance(rec, dict) else i
            if (why := _id_conflict(row, given, first.setdefault(row.prompt_id, (given, row)))):
                errs.append(why)
            rows.append(row)
    raise_problems(errs, "invalid rollout file")
    if not rows:
        raise PromptSetError(f"{p.name}: no rollouts")
    if limit:
        rows = rows[:limit]
    return RolloutSet(p, rows, fingerprint, mapping)


def _id_conflict(row: RolloutRow, given, first: tuple[object, RolloutRow]) -> str | None:
    """Why `row` (its prompt id as `given`) cannot share the id of the `first` row that had
    it: the same id spelt as a number and as a string, or the same id on a different prompt
    (rows with one id are one prompt's samples, so either would merge prompts silently)."""
    first_given, other = first
    if other is row:
        return None
    if type(given) is not type(first_given):
        return (f"{row.where}: prompt id {clip(given)} and {clip(first_given)} in "
                f"{other.where} are the same id written as a number and as a string; write "
                "every id one way")
    if (row.prompt, row.messages) != (other.prompt, other.messages):
        return (f"{row.where}: prompt id {clip(given)} is also {other.where}'s, whose prompt "
                "differs; give different prompts different ids")
    return None
