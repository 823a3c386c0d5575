"""Prompt sets: JSONL or Parquet rows with `id`, `prompt`, `answer` (+ optional fields).

Optional fields: `difficulty` (a label), `verifier` ("exact" or "math", default "math").
Validation names the line (JSONL, 1-based) or row (Parquet, 1-based) and the field of
every problem it finds, so a user can fix a file in one pass. Before any of that, a JSONL
line longer than `TextLimits.max_line_bytes` stops the reading and a field over
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
    if not isinstance(verifier, str) or verifier not in VERIFIERS:
        errs.append(f"{where}: field 'verifier' is {clip(verifier)}; known: "
                    f"{', '.join(VERIFIERS)}")
    diff = rec.get("difficulty")
    if errs:
        return None, errs
    return PromptRow(str(rec["id"]), rec["prompt"], str(rec["answer"]),
                     None if diff is None else str(diff), verifier), []


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


def read_records(path: str | Path, what: str = "prompt",
                 limits: TextLimits | None = None) -> tuple[Path, str, list, list]:
    """(path, sha256 of the file's bytes, [(where, record)], [errors]) of a JSONL or Parquet
    file; `where` names the 1-based line (JSONL) or row (Parquet). Raises PromptSetError for
    a file that cannot be read at all, or at the first JSONL line longer than
    `limits.max_line_bytes` (the rest is not read); per-line problems (JSON, field sizes) are
    returned so every one is listed. JSONL lines end at "\\n" only (a raw U+2028 inside a
    string is text, not a line break) and a UTF-8 byte-order mark before line 1 is skipped."""
    lim = limits or text_limits()
    p = Path(path).expanduser()
    if not p.is_file():
        raise PromptSetError(f"{clip(str(path))[1:-1]}: no such {what} file")
    errs: list[str] = []
    if p.suffix == ".parquet":
        from core.inputs import user_parquet

        records = user_parquet.read_records(p, lim)  # its size checked before it is read
        located = [(f"{p.name} row {i}", r) for i, r in enumerate(records, 1)]
        for where, rec in located:
            errs.extend(field_problems(rec, where, lim))
        return p, _sha256(p), located, errs
    if p.suffix not in (".jsonl", ".json", ".ndjson"):
        raise PromptSetError(f"{p.name}: {what} files are .jsonl or .parquet files")
    if (size := p.stat().st_size) > lim.max_file_text_bytes:
        raise PromptSetError(f"{p.name}: {fmt_size(size)}, more than "
                             f"{fmt_size(lim.max_file_text_bytes)}, the limit for one "
                             "file (SHIFTLENS_MAX_FILE_TEXT_BYTES); split it")
    located = []
    digest = hashlib.sha256()
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
            where = f"{p.name} line {i}"
            rec = _parse_line(raw[3:] if i == 1 and raw.startswith(codecs.BOM_UTF8) else raw,
                              where, errs)
            if rec is not _BLANK:
                errs.extend(field_problems(rec, where, lim))
                located.append((where, rec))
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
    """One PromptSetError listing the first 20 problems (and how many more there are); a
    single problem reads as one line, `title: where: problem`."""
    if len(errs) == 1:
        raise PromptSetError(f"{title}: {errs[0]}")
    if errs:
        more = f"\n  ... and {len(errs) - 20} more" if len(errs) > 20 else ""
        raise PromptSetError(f"{title}:\n  " + "\n  ".join(errs[:20]) + more)


def load_prompts(path: str | Path, limit: int | None = None) -> PromptSet:
    """Read and validate a prompt set; raises PromptSetError listing every problem found."""
    p, fingerprint, located, errs = read_records(path)
    rows: list[PromptRow] = []
    seen: dict[str, str] = {}
    for where, rec in located:
        row, row_errs = _check_row(rec, where)
        errs.extend(row_errs)
        if row is not None:
            if row.id in seen:
                errs.append(f"{where}: field 'id' {clip(row.id)} repeats {seen[row.id]}")
            seen[row.id] = where
            rows.append(row)
    raise_problems(errs, "invalid prompt set")
    if not rows:
        raise PromptSetError(f"{p.name}: no prompts")
    if limit is not None:
        rows = rows[:limit]
    return PromptSet(p, rows, fingerprint)
