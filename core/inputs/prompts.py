"""Prompt sets: JSONL or Parquet rows with `id`, `prompt`, `answer` (+ optional fields).

Optional fields: `difficulty` (a label), `verifier` ("exact" or "math", default "math").
Validation names the line (JSONL, 1-based) or row (Parquet, 1-based) and the field of
the problems it finds (the first 20: then it stops reading), so a user can fix a file in
one pass. Before any of that, a file of more rows than `TextLimits.max_rows` (a Parquet
footer's count, or the JSONL row past it) or a JSONL line longer than
`TextLimits.max_line_bytes` stops the reading, and a field over
`TextLimits.max_field_bytes` is refused (core.inputs.text_limits), so no parser or tokenizer sees
an oversized text; answers must be non-empty strings or finite numbers; a UTF-8 byte-order
mark and raw U+2028/U+2029 inside strings are read as valid JSONL.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from core.errors import PromptSetError, clip
from core.inputs.text_limits import TextLimits, fmt_size, text_limits
from core.inputs.verifiers import VERIFIERS

REQUIRED = ("id", "prompt", "answer")


@dataclass(frozen=True)
class PromptRow:
    id: str
    prompt: str
    answer: str
    difficulty: str | None = None
    verifier: str = "math"


@dataclass
class PromptSet:
    path: Path
    rows: list[PromptRow]
    fingerprint: str  # sha256 of the file's bytes

    @property
    def name(self) -> str:
        return self.path.stem


def _check_row(rec, where: str) -> tuple[PromptRow | None, list[str]]:
    if not isinstance(rec, dict):
        return None, [f"{where}: expected a JSON object, got {type(rec).__name__}"]
    errs = []
    for f in REQUIRED:
        if f not in rec or rec[f] is None:
            errs.append(f"{where}: field '{f}' is missing")
    if errs:
        return None, errs
    if not isinstance(rec["id"], (str, int)) or isinstance(rec["id"], bool):
        errs.append(f"{where}: field 'id' must be a string or integer")
    if not isinstance(rec["prompt"], str) or not rec["prompt"].strip():
        errs.append(f"{where}: field 'prompt' must be a non-empty string")
    if (why := answer_problem(rec["answer"])) is not None:
        errs.append(f"{where}: {why}")
    verifier = rec.get("verifier") or "math"
    errs.extend(verifier_problems(verifier, where))
    diff = rec.get("difficulty")
    if errs:
        return None, errs
    return PromptRow(str(rec["id"]), rec["prompt"], str(rec["answer"]),
                     None if diff is None else str(diff), verifier), []


def verifier_problems(verifier, where: str) -> list[str]:
    """[the line] when `verifier` (a record's field, "math" when absent) names no known
    verifier, else []: one wording for prompt sets and rollout files."""
    if not isinstance(verifier, str) or verifier not in VERIFIERS:
        return [f"{where}: field 'verifier' is {clip(verifier)}; known: {', '.join(VERIFIERS)}"]
    return []


def answer_problem(answer) -> str | None:
    """Why `answer` cannot be a reference answer (None when it can): it must be a non-empty
    string or a finite number (JSON's NaN and Infinity parse as floats, and pass nothing)."""
    if (isinstance(answer, bool) or not isinstance(answer, (str, int, float))
            or (isinstance(answer, float) and not math.isfinite(answer))
            or not str(answer).strip()):
        return f"field 'answer' must be a non-empty string or finite number, not {clip(answer)}"
    return None


def _strings(rec: dict):
    """(what, text) for every string of a record, its field names included, one level into
    lists and their dicts (a chat list's {role, content}); `what` names it for a message."""
    for key, value in rec.items():
        name = clip(key, 40)[1:-1]
        yield f"a field name '{name}'", key
        if isinstance(value, str):
            yield f"field '{name}'", value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    yield f"field '{name}[{i}]'", item
                elif isinstance(item, dict):
                    for k, v in item.items():
                        sub = f"field '{name}[{i}].{clip(k, 40)[1:-1]}'"
                        yield from ((sub, t) for t in (k, v) if isinstance(t, str))


def field_problems(rec, where: str, limits: TextLimits) -> list[str]:
    """Fields over `limits.max_field_bytes` (UTF-8) and strings that are not Unicode text
    (a lone surrogate, which JSON's \\ud800 escapes can produce and no tokenizer takes)."""
    if not isinstance(rec, dict):
        return []
    errs = []
    for what, text in _strings(rec):
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            errs.append(f"{where}: {what} holds a lone surrogate (\\ud800-\\udfff), which "
                        "is not Unicode text")
            continue
        if size > limits.max_field_bytes:
            errs.append(f"{where}: {what} is {fmt_size(size)}, over the limit of "
                        f"{fmt_size(limits.max_field_bytes)} per field "
                        "(SHIFTLENS_MAX_FIELD_BYTES); shorten it")
    return errs


MAX_PROBLEMS = 20  # reading stops once this many problems are found (all of them listed)


def _keep(rec, where: str, index: int):
    return rec, []


def read_records(path: str | Path, what: str = "prompt", limits: TextLimits | None = None,
                 check=_keep) -> tuple[Path, str, list, list]:
    """(path, sha256 of the file's bytes, [(where, check's value)], [errors]) of a JSONL or
    Parquet file; `where` names the 1-based line (JSONL) or row (Parquet). `check(record,
    where, index)` -> (value or None, [problems]) turns each record into what is kept, so no
    raw record outlives its row (default: the record itself).
    Raises PromptSetError for a file that cannot be read at all, has more rows than
    `limits.max_rows` (a Parquet file's count from its footer, before any row is read; a
    JSONL file at the first row past the limit), or at the first JSONL line longer than
    `limits.max_line_bytes` (the rest is not read). Other problems (JSON, field sizes,
    check's) are returned so they are listed together; the reading stops once more than
    MAX_PROBLEMS are found (the fingerprint is then empty). JSONL lines end at "\\n" only (a
    raw U+2028 inside a string is text, not a line break) and a UTF-8 byte-order mark before
    line 1 is skipped."""
    lim = limits or text_limits()
    p = Path(path).expanduser()
    if not p.is_file():
        raise PromptSetError(f"{clip(str(path))[1:-1]}: no such {what} file")
    errs: list[str] = []
    located: list = []

    def take(rec, where: str) -> None:
        errs.extend(field_problems(rec, where, lim))
        value, problems = check(rec, where, len(located))
        errs.extend(problems)
        if value is not None:
            located.append((where, value))

    if p.suffix == ".parquet":
        from core.inputs import user_parquet

        i = 0
        for batch in user_parquet.iter_records(p, lim):  # rows and size checked first
            for rec in batch:
                i += 1
                take(rec, f"{p.name} row {i}")
                if len(errs) > MAX_PROBLEMS:
                    return p, "", located, errs
        return p, _sha256(p), located, errs
    if p.suffix not in (".jsonl", ".json", ".ndjson"):
        raise PromptSetError(f"{p.name}: {what} files are .jsonl or .parquet files")
    if (size := p.stat().st_size) > lim.max_file_text_bytes:
        raise PromptSetError(f"{p.name}: {fmt_size(size)}, more than "
                             f"{fmt_size(lim.max_file_text_bytes)}, the limit for one "
                             "file (SHIFTLENS_MAX_FILE_TEXT_BYTES); split it")
    digest = hashlib.sha256()
    records = 0
    with open(p, "rb") as f:
        for i in itertools.count(1):
            raw = f.readline(lim.max_line_bytes + 1)
            if not raw:
                break
            if len(raw) > lim.max_line_bytes:
                raise PromptSetError(
                    f"{p.name} line {i}: longer than {fmt_size(lim.max_line_bytes)}, the limit "
                    f"for one line (fields of at most {fmt_size(lim.max_field_bytes)} each: "
                    "SHIFTLENS_MAX_FIELD_BYTES); shorten it")
            digest.update(raw)
            if not raw.strip():
                continue
            records += 1
            if records > lim.max_rows:
                raise PromptSetError(
                    f"{p.name} line {i}: more than {lim.max_rows:,} rows, the limit for one "
                    "file (SHIFTLENS_MAX_ROWS); split it")
            where = f"{p.name} line {i}"
            rec = _parse_line(raw[3:] if i == 1 and raw.startswith(codecs.BOM_UTF8) else raw,
                              where, errs)
            if rec is not _BLANK:
                take(rec, where)
            if len(errs) > MAX_PROBLEMS:
                return p, "", located, errs
    return p, digest.hexdigest(), located, errs


_BLANK = object()


def _parse_line(raw: bytes, where: str, errs: list[str]):
    """The line's JSON value, or _BLANK for an empty line or one with an error (appended)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        errs.append(f"{where}: not UTF-8 text (byte {e.start + 1})")
        return _BLANK
    if not line.strip():
        return _BLANK
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        errs.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
    except RecursionError:
        errs.append(f"{where}: nested too deeply to read; flatten it")
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        errs.append(f"{where}: not valid JSON ({clip(str(e), 120)[1:-1]})")
    return _BLANK


def _sha256(p: Path) -> str:
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def raise_problems(errs: list[str], title: str) -> None:
    """One PromptSetError listing the first MAX_PROBLEMS problems (saying when the reading
    stopped there); a single problem reads as one line, `title: where: problem`."""
    if len(errs) == 1:
        raise PromptSetError(f"{title}: {errs[0]}")
    if errs:
        more = (f"\n  ... and more: the reading stopped after {MAX_PROBLEMS} problems"
                if len(errs) > MAX_PROBLEMS else "")
        raise PromptSetError(f"{title}:\n  " + "\n  ".join(errs[:MAX_PROBLEMS]) + more)


def load_prompts(path: str | Path, limit: int | None = None) -> PromptSet:
    """Read and validate a prompt set; raises PromptSetError listing the problems found."""
    seen: dict[str, str] = {}

    def check(rec, where: str, index: int):
        row, errs = _check_row(rec, where)
        if row is not None:
            if row.id in seen:
                errs.append(f"{where}: field 'id' {clip(row.id)} repeats {seen[row.id]}")
            seen[row.id] = where
        return row, errs

    p, fingerprint, located, errs = read_records(path, check=check)
    raise_problems(errs, "invalid prompt set")
    rows = [row for _, row in located]
    if not rows:
        raise PromptSetError(f"{p.name}: no prompts")
    if limit is not None:
        rows = rows[:limit]
    return PromptSet(p, rows, fingerprint)
