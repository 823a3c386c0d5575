"""Safe unpacking of an uploaded model archive (zip, tar, tar.gz/bz2/xz) into a model folder.

Uploads live beside the cache, in `<cache>/../uploads/` (core.paths.uploads_dir; the
`SHIFTLENS_UPLOADS` setting overrides it): models in `uploads/models/<name>/`, prompt sets
in `uploads/prompts/<file>`, rollout files (traces to score instead of sampling) in
`uploads/rollouts/<file>`. They are inputs, not runs, so they stay out of `cache/`, which
holds run folders only; an upload, refused or not, never touches `cache/`.

What is refused, before a byte is written where it could stay (`UploadError` says why;
core.jobs.archive reads the archive and checks each limit before the work it guards):
  - entries with absolute paths, drive letters or `..` components, duplicate names;
  - anything but regular files and folders (symlinks, hardlinks, devices, fifos, sparse);
  - more than `limits.max_files` entries (counted from a zip's end record, or header by
    header in a tar), a file over `limits.max_file_bytes`, a total over
    `limits.max_total_bytes` (counted while writing too, so a lying header does not help);
  - too little free disk for the declared total plus a margin (`shutil.disk_usage`);
  - encrypted or unreadably compressed zip members, corrupt streams, a bad CRC or length
    in a zip member or a gzip/xz/bzip2 trailer;
  - a result that is not a model folder (no config.json, unreadable weights, a shard index
    naming files outside the folder).
Extraction goes into a hidden temporary folder beside the destination and is renamed into
place only when complete; on any error the temporary folder is removed, so no partial model
folder is ever left. If the archive holds a single top-level folder, that folder is the
model. This module does not validate the pair (see core.jobs.validate).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from core.engine.pair import PairError, check_local_model
from core.errors import UploadError
from core.jobs.archive import ARCHIVE_SUFFIXES, UploadLimits, default_limits, extract
from core.jobs.archive import gib as _gib
from core.paths import models_dir, prompts_dir, rollouts_dir, uploads_dir

__all__ = ["ARCHIVE_SUFFIXES", "UploadLimits", "default_limits", "unpack_model",
           "save_prompt_set", "save_rollouts", "rollout_format", "uploads_dir", "models_dir",
           "prompts_dir", "rollouts_dir", "is_archive", "name_from_archive"]
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def is_archive(path: str | Path) -> bool:
    """Whether `path` names a file with an archive suffix this module unpacks."""
    p = Path(path)
    return p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES)


def name_from_archive(filename: str) -> str:
    """A model name from an archive's file name: suffix dropped, odd characters -> '-'."""
    base = Path(filename).name
    for suf in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if base.lower().endswith(suf):
            base = base[: -len(suf)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-_")[:100] or "model"


def _model_root(tmp: Path) -> Path:
    """The single top-level folder when that is all the archive holds, else `tmp` itself."""
    top = [p for p in tmp.iterdir()]
    if len(top) == 1 and top[0].is_dir():
        return top[0]
    return tmp


def unpack_model(archive: str | Path | BinaryIO, dest_root: str | Path,
                 name: str | None = None, *, limits: UploadLimits = UploadLimits(),
                 filename: str | None = None) -> Path:
    """Unpack a zip or tar model archive into `dest_root/<name>/`; returns that folder.

    archive: a path, or a seekable binary file object (e.g. Streamlit's UploadedFile; pass
      `filename` so the name can be derived from it).
    name: the model folder's name; default: from the archive's file name. A name that exists
      already is refused (delete the old model first, or choose another name).
    Raises UploadError (unsafe or oversized archive, not a model, name taken); on error
    nothing is left under `dest_root` except folders that were there before.
    """
    src_name = filename or (str(archive) if isinstance(archive, (str, Path)) else "upload.zip")
    name = name or name_from_archive(src_name)
    if not MODEL_NAME.fullmatch(name):
        raise UploadError(f"model name {name!r}: use letters, digits, '.', '_' and '-' only")
    if isinstance(archive, (str, Path)) and not Path(archive).is_file():
        raise UploadError(f"{archive}: no such archive file")
    dest_root = Path(dest_root)
    final = dest_root / name
    if final.exists():
        raise UploadError(f"a model named {name!r} already exists in {dest_root}; choose "
                          "another name or delete it first")
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = dest_root / f".upload-{name}-{uuid.uuid4().hex[:8]}"
    own = open(archive, "rb") if isinstance(archive, (str, Path)) else None
    try:
        tmp.mkdir()
        extract(own or archive, tmp, limits)
        root = _model_root(tmp)
        try:
            check_local_model(root, allow_pickle=True)  # pickle policy is core.jobs.validate's job
        except PairError as e:
            where = Path(src_name).name
            why = str(e).replace(f"{root}: ", "").replace(str(root), where)
            raise UploadError(f"{where}: the archive does not hold a usable model: {why}") \
                from e
        os.rename(root, final)  # same filesystem: the model appears whole or not at all
    except OSError as e:
        if isinstance(e, FileExistsError) and final.exists():
            raise UploadError(f"a model named {name!r} appeared while unpacking") from e
        raise UploadError(f"{Path(src_name).name}: cannot unpack the archive ({e})") from e
    finally:
        if own is not None:
            own.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final



def save_prompt_set(data: bytes | BinaryIO, filename: str, dest_root: str | Path,
                    max_bytes: int = 200 * 1024**2) -> Path:
    """Validate an uploaded prompt set (.jsonl or .parquet) and keep it; returns its path.

    The bytes go to a hidden temporary file, core.inputs.prompts.load_prompts validates them
    (PromptSetError naming each bad line and field; a line or field over the caps of
    core.inputs.text_limits is refused before it is parsed), and only a valid file is renamed to
    `dest_root/<filename>`; an existing file of that name is refused unless identical.
    Raises UploadError (name, size) or PromptSetError; leaves nothing behind on error.
    """
    from core.inputs.prompts import load_prompts

    return _save_checked(data, filename, dest_root, max_bytes, "prompt set", load_prompts)


def save_rollouts(data: bytes | BinaryIO, filename: str, dest_root: str | Path,
                  max_bytes: int | None = None) -> Path:
    """Validate an uploaded rollout file (.jsonl or .parquet rows of prompt or messages,
    response or response_ids, ...: core.inputs.rollouts) and keep it; returns its path, which
    `PrecomputeConfig.traces` (add_pair's `traces`) then scores instead of sampling.

    As save_prompt_set: validated line by line (core.inputs.rollouts.load_rollouts; PromptSetError
    naming the line and field) in a hidden temporary file before it is renamed to
    `dest_root/<filename>`; a different file of that name is refused. max_bytes: default the
    configured upload limit (default_limits().max_file_bytes). Raises UploadError or
    PromptSetError; leaves nothing behind on error.
    """
    from core.inputs.rollouts import load_rollouts

    limit = max_bytes if max_bytes is not None else default_limits().max_file_bytes
    return _save_checked(data, filename, dest_root, limit, "rollout file", load_rollouts)


def rollout_format(path: str | Path) -> str:
    """One line about a (validated) rollout file: the format it was read as and the column its
    verdicts come from (core.inputs.formats)."""
    from core.inputs.rollouts import load_rollouts

    rs = load_rollouts(path)
    return rs.mapping.summary() if rs.mapping is not None else "read as rollouts"


def _save_checked(data: bytes | BinaryIO, filename: str, dest_root: str | Path,
                  max_bytes: int, what: str, load) -> Path:
    """Keep an uploaded .jsonl/.parquet file under a safe name once `load(path)` accepts it
    (see save_prompt_set)."""
    from core.errors import clip
    from core.inputs.prompts import PromptSetError

    raw = data if isinstance(data, bytes) else data.read()
    name = Path(filename).name
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    if suffix not in (".jsonl", ".parquet") or not MODEL_NAME.fullmatch(stem):
        raise UploadError(f"{clip(filename)}: {what}s are NAME.jsonl or NAME.parquet (letters, "
                          "digits, '.', '_', '-')")
    if len(raw) > max_bytes:
        raise UploadError(f"{name} is {_gib(len(raw))}, over the limit of {_gib(max_bytes)}")
    dest_root = Path(dest_root)
    dest_root.mkdir(parents=True, exist_ok=True)
    final = dest_root / name
    if final.exists():
        if final.read_bytes() == raw:
            return final
        raise UploadError(f"a different {what} named {name!r} exists; rename the file")
    tmp = dest_root / f".upload-{uuid.uuid4().hex[:8]}-{name}"
    try:
        tmp.write_bytes(raw)
        try:
            load(tmp)
        except PromptSetError as e:
            raise PromptSetError(str(e).replace(tmp.name, name)) from None
        os.rename(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
