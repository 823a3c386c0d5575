"""Prompt sets: JSONL or Parquet rows with `id`, `prompt`, `answer` (+ optional fields).

Optional fields: `difficulty` (a label), `verifier` ("exact" or "math", default "math").
Validation names the line (JSONL, 1-based) or row (Parquet, 1-based) and the field of
every problem it finds, so a user can fix a file in one pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import PromptSetError
from core.verifiers import VERIFIERS

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
    if not isinstance(rec["answer"], (str, int, float)) or isinstance(rec["answer"], bool):
        errs.append(f"{where}: field 'answer' must be a string or number")
    verifier = rec.get("verifier") or "math"
    if verifier not in VERIFIERS:
        errs.append(f"{where}: field 'verifier' is {verifier!r}; known: {', '.join(VERIFIERS)}")
    diff = rec.get("difficulty")
    if errs:
        return None, errs
    return PromptRow(str(rec["id"]), rec["prompt"], str(rec["answer"]),
                     None if diff is None else str(diff), verifier), []


def read_records(path: str | Path, what: str = "prompt") -> tuple[Path, bytes, list, list]:
    """(path, file bytes, [(where, record)], [errors]) of a JSONL or Parquet file; `where`
    names the 1-based line (JSONL) or row (Parquet). Raises PromptSetError for a file that
    cannot be read at all; per-line JSON errors are returned so every problem is listed."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise PromptSetError(f"{path}: no such {what} file")
    data = p.read_bytes()
    errs: list[str] = []
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(p).to_pylist()
        except Exception as e:
            raise PromptSetError(f"{p.name}: not a readable Parquet file ({e})") from e
        return p, data, [(f"{p.name} row {i}", r) for i, r in enumerate(records, 1)], errs
    if p.suffix not in (".jsonl", ".json", ".ndjson"):
        raise PromptSetError(f"{p.name}: {what} files are .jsonl or .parquet files")
    located = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PromptSetError(f"{p.name}: not UTF-8 text ({e})") from e
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            located.append((f"{p.name} line {i}", json.loads(line)))
        except json.JSONDecodeError as e:
            errs.append(f"{p.name} line {i}: not valid JSON ({e.msg} at column {e.colno})")
    return p, data, located, errs


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
    p, data, located, errs = read_records(path)
    rows: list[PromptRow] = []
    seen: dict[str, str] = {}
    for where, rec in located:
        row, row_errs = _check_row(rec, where)
        errs.extend(row_errs)
        if row is not None:
            if row.id in seen:
                errs.append(f"{where}: field 'id' {row.id!r} repeats {seen[row.id]}")
            seen[row.id] = where
            rows.append(row)
    raise_problems(errs, "invalid prompt set")
    if not rows:
        raise PromptSetError(f"{p.name}: no prompts")
    if limit is not None:
        rows = rows[:limit]
    return PromptSet(p, rows, hashlib.sha256(data).hexdigest())
