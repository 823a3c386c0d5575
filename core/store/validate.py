"""Is a run folder whole? `problem(folder)` checks, cheaply, what a run must be before any
reader touches it, and says in one line what is wrong (None when nothing is).

Checked: manifest.json is a JSON object whose fields, where present (runs written by hand or
by older versions lack some), have the types readers rely on (`created` an ISO date, `config`
an object, the counts integers, the special token ids a
list of integers, ...); each table (tokens, topk, traces; forks.parquet when present) exists
and every one of its Parquet files has a readable footer whose columns have the schema's
types (core.store.schema; the key columns must be there, newer columns may be missing in
older runs). Only footers are read, never data. Results are kept per folder until a member
file's size or modification time changes (`signature`), so a listing re-checks a run only
after it changed on disk.

This module decides nothing about what to do with a damaged run: core.store.run marks it,
the listing shows it, the collection leaves it out.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.store.schema import FORKS_FILE, MANIFEST_FILE, OPTIONAL_SCHEMAS, SCHEMAS

# Columns a table cannot do without (others may be missing in runs written before them).
KEY_COLUMNS = {"tokens.parquet": ("trace_id", "pos", "token_id"),
               "topk.parquet": ("trace_id", "pos"), "traces.parquet": ("trace_id",)}

_OBJ, _STR, _INT = (dict,), (str,), (int,)
# Manifest fields: (required, accepted types; None always accepted when not required).
FIELDS = {
    "created": (False, _STR), "config": (False, _OBJ),
    "name": (False, _STR), "kind": (False, _STR), "series_step": (False, _INT),
    "traces_from": (False, _STR), "series_of": (False, _STR), "models": (False, _OBJ),
    "prompt_set": (False, _OBJ), "stats": (False, _OBJ), "tokenizer": (False, _OBJ),
    "samplers": (False, _OBJ), "rollouts": (False, _OBJ), "scoring": (False, _OBJ),
    "renamed_from": (False, (list,)),
}
_NESTED = (("stats", "n_traces", _INT), ("stats", "n_tokens", _INT),
           ("prompt_set", "path", _STR), ("config", "max_new_tokens", _INT),
           ("config", "tuned", _STR), ("config", "base", _STR),
           ("config", "chat_template", (bool,)), ("scoring", "memory_budget_bytes", _INT))

_memo: dict[Path, tuple[tuple, str | None]] = {}
MISSING = " is missing"  # the end of every missing-table line (see only_missing)


def table_files(folder: str | Path, name: str) -> list[Path]:
    """Parquet files of table `name` in a run folder: the file itself, the sorted *.parquet
    part files when it is a directory, or [] when absent."""
    p = Path(folder) / name
    if p.is_dir():
        return sorted(p.glob("*.parquet"))
    return [p] if p.is_file() else []


def _member_files(folder: Path, forks: bool = True) -> list[Path]:
    out = [folder / MANIFEST_FILE]
    for name in (*SCHEMAS, FORKS_FILE) if forks else SCHEMAS:
        out += table_files(folder, name)
    return out


def signature(folder: str | Path, forks: bool = True) -> tuple:
    """(name, size, mtime_ns) of the manifest and every table file (forks.parquet too unless
    `forks` is False): what changes when any of them is written or replaced."""
    out = []
    for f in _member_files(Path(folder), forks):
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _type_name(t) -> str:
    return type(t).__name__ if not isinstance(t, type) else t.__name__


def read(folder: str | Path) -> tuple[dict, str | None]:
    """(manifest dict, None), or ({}, what is wrong with manifest.json)."""
    p = Path(folder) / MANIFEST_FILE
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:  # tables only: whether that is a complete run is the cache's
        return {}, None
    except UnicodeDecodeError:
        return {}, "manifest.json is not UTF-8 text"
    except ValueError as e:
        return {}, f"manifest.json is not valid JSON ({str(e).split(':')[0]})"
    except OSError as e:
        return {}, f"manifest.json cannot be read ({e.strerror or e})"
    if not isinstance(m, dict):
        return {}, f"manifest.json holds a JSON {_json_kind(m)}, not an object"
    bad = _fields(m)
    return ({}, bad) if bad else (m, None)


def _json_kind(v) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null",
            dict: "object"}.get(type(v), "number")


def _wrong(where: str, v, types) -> str:
    want = " or ".join({dict: "an object", str: "text", int: "an integer", list: "a list",
                        bool: "true/false"}[t] for t in types)
    return f"manifest.json: {where} is a {_json_kind(v)} ({json.dumps(v)[:40]}), not {want}"


def _ok(v, types) -> bool:
    return isinstance(v, types) and not (isinstance(v, bool) and bool not in types)


def _fields(m: dict) -> str | None:
    for key, (required, types) in FIELDS.items():
        if key not in m or (m[key] is None and not required):
            if required:
                return f"manifest.json has no {key!r}"
            continue
        if not _ok(m[key], types):
            return _wrong(key, m[key], types)
    for outer, key, types in _NESTED:
        v = (m.get(outer) or {}).get(key)
        if v is not None and not _ok(v, types):
            return _wrong(f"{outer}.{key}", v, types)
    try:
        if m.get("created") is not None:
            dt.datetime.fromisoformat(m["created"])
    except ValueError:
        return f"manifest.json: created {m['created'][:40]!r} is not a date"
    ids = (m.get("tokenizer") or {}).get("special_ids")
    if ids is not None and not (isinstance(ids, list) and all(_ok(i, _INT) for i in ids)):
        return "manifest.json: tokenizer.special_ids is not a list of integers"
    return None


def _family(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"list of {_family(t.value_type)}"
    return str(t)


def _table(folder: Path, name: str, schema: pa.Schema, required: bool) -> str | None:
    files = table_files(folder, name)
    if not files:
        return f"{name}{MISSING}" if required else None
    want = {f.name: _family(f.type) for f in schema}
    for f in files:
        rel = f.relative_to(folder)
        try:
            got = pq.read_schema(f)
        except (OSError, pa.ArrowException) as e:
            why = "truncated or not Parquet" if "magic" in str(e).lower() or \
                "size" in str(e).lower() else str(e).splitlines()[0][:80]
            return f"{rel} is not a readable Parquet file ({why})"
        for col in KEY_COLUMNS.get(name, ()):
            if col not in got.names:
                return f"{rel} has no column {col!r}"
        for field in got:
            if field.name in want and _family(field.type) != want[field.name]:
                return (f"{rel}: column {field.name!r} is {_family(field.type)}, "
                        f"not {want[field.name]}")
    return None


def check(folder: str | Path) -> tuple[dict, str | None]:
    """(manifest, what is wrong or None) for a run folder, uncached."""
    folder = Path(folder)
    m, bad = read(folder)
    if bad:
        return m, bad
    missing = None  # a file that is there but broken is reported before a missing one
    for name, schema in SCHEMAS.items():
        bad = _table(folder, name, schema, required=True)
        if bad and bad.endswith(MISSING):
            missing = missing or bad
        elif bad:
            return m, bad
    return m, _table(folder, FORKS_FILE, OPTIONAL_SCHEMAS[FORKS_FILE], required=False) \
        or missing


def only_missing(bad: str | None) -> bool:
    """Whether a check() verdict says only that a table is missing, every file present
    being sound: such a folder can still be read (the query collection gives the missing
    table no rows), while a listing of complete runs counts it as damaged."""
    return bool(bad) and bad.endswith(MISSING) and not bad.startswith("manifest.json")


def problem(folder: str | Path, fresh: bool = False) -> tuple[dict, str | None]:
    """check(), with the table footers' verdict remembered per folder until its signature
    changes (`fresh`: check again); the manifest itself is read each time (a small file)."""
    folder = Path(folder)
    sig = signature(folder)
    hit = _memo.get(folder)
    if not fresh and hit is not None and hit[0] == sig:
        m, bad = read(folder)
        return m, bad or hit[1]
    m, bad = check(folder)
    if len(_memo) > 4096:
        _memo.clear()
    _memo[folder] = (sig, bad)
    return m, bad
