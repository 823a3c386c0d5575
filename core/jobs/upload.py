"""Safe unpacking of an uploaded model archive (zip, tar, tar.gz/bz2/xz) into a model folder.

Uploads live beside the cache, in `<cache>/../uploads/` (`$SHIFTLENS_UPLOADS` overrides it):
models in `uploads/models/<name>/`, prompt sets in `uploads/prompts/<file>`, rollout files
(traces to score instead of sampling) in `uploads/rollouts/<file>`. They are inputs,
not runs, so they stay out of `cache/`, which holds run folders only; an upload, refused or
not, never touches `cache/`.

What is refused, before a byte is written where it could stay (`UploadError` says why):
  - entries with absolute paths, drive letters or `..` components, duplicate names;
  - anything but regular files and folders (symlinks, hardlinks, devices, fifos);
  - more than `limits.max_files` entries, a file over `limits.max_file_bytes`, a total over
    `limits.max_total_bytes` (counted while writing too, so a lying header does not help);
  - too little free disk for the declared total plus a margin (`shutil.disk_usage`);
  - a result that is not a model folder (no config.json or no readable weights).
Extraction goes into a hidden temporary folder beside the destination and is renamed into
place only when complete; on any error the temporary folder is removed, so no partial model
folder is ever left. If the archive holds a single top-level folder, that folder is the
model. This module does not validate the pair (see core.jobs.validate).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from core.engine.pair import PairError, check_local_model
from core.errors import UploadError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
IGNORED = ("__MACOSX/", ".DS_Store")  # macOS Finder litter, skipped rather than refused
CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadLimits:
    """Caps on an uploaded archive; the app and the CLI pass their configured values."""

    max_total_bytes: int = 2 * 1024**3   # uncompressed, all files together
    max_file_bytes: int = 2 * 1024**3    # uncompressed, any one file
    max_files: int = 1000                # entries (files and folders)
    free_margin_bytes: int = 256 * 1024**2  # disk that must stay free after unpacking


def default_limits() -> UploadLimits:
    """UploadLimits with the total and per-file caps from $SHIFTLENS_UPLOAD_LIMIT_GIB if set
    (the app's configured limit), else the defaults (2 GiB)."""
    gib = os.environ.get("SHIFTLENS_UPLOAD_LIMIT_GIB")
    if not gib:
        return UploadLimits()
    n = int(float(gib) * 1024**3)
    return UploadLimits(max_total_bytes=n, max_file_bytes=n)


def uploads_dir(cache: str | Path = "cache") -> Path:
    """The folder for uploads: $SHIFTLENS_UPLOADS, else `<cache>/../uploads`."""
    env = os.environ.get("SHIFTLENS_UPLOADS")
    return Path(env) if env else Path(cache).resolve().parent / "uploads"


def models_dir(cache: str | Path = "cache") -> Path:
    """The folder that holds uploaded models: `uploads_dir(cache) / "models"`."""
    return uploads_dir(cache) / "models"


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


@dataclass
class _Entry:
    name: str          # normalised relative posix path
    is_dir: bool
    size: int
    handle: object     # ZipInfo or TarInfo


def _clean_name(raw: str) -> str | None:
    """The entry's normalised relative path; None for ignored litter; UploadError if unsafe."""
    name = raw.replace("\\", "/")  # zips written on Windows may use backslashes
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UploadError(f"archive entry {raw!r} has an absolute path; refusing the archive")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UploadError(f"archive entry {raw!r} points outside the folder ('..'); "
                          "refusing the archive")
    if not parts or parts[0] == IGNORED[0].rstrip("/") or parts[-1] == IGNORED[1]:
        return None
    return "/".join(parts)


def _zip_entries(zf: zipfile.ZipFile) -> list[_Entry]:
    out = []
    for info in zf.infolist():
        mode = info.external_attr >> 16  # unix mode bits when the zip was made on unix
        kind = stat.S_IFMT(mode)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            what = "a symlink" if kind == stat.S_IFLNK else "not a regular file"
            raise UploadError(f"archive entry {info.filename!r} is {what}; refusing the archive")
        name = _clean_name(info.filename)
        if name is not None:
            out.append(_Entry(name, info.is_dir(), info.file_size, info))
    return out


def _tar_entries(tf: tarfile.TarFile) -> list[_Entry]:
    out = []
    for m in tf.getmembers():
        if not (m.isreg() or m.isdir()):
            what = ("a symlink" if m.issym() else "a hardlink" if m.islnk()
                    else "a device or fifo" if (m.isdev()) else "not a regular file")
            raise UploadError(f"archive entry {m.name!r} is {what}; refusing the archive")
        name = _clean_name(m.name)
        if name is not None:
            out.append(_Entry(name, m.isdir(), m.size, m))
    return out


def _check(entries: list[_Entry], limits: UploadLimits, dest_parent: Path) -> int:
    """Total declared bytes after checking counts, sizes, duplicates and free disk."""
    if len(entries) > limits.max_files:
        raise UploadError(f"archive has {len(entries)} entries, more than the limit of "
                          f"{limits.max_files}")
    seen: set[str] = set()
    total = 0
    for e in entries:
        if e.name in seen and not e.is_dir:
            raise UploadError(f"archive entry {e.name!r} appears twice; refusing the archive")
        seen.add(e.name)
        if not e.is_dir:
            if e.size > limits.max_file_bytes:
                raise UploadError(f"archive entry {e.name!r} is {_gib(e.size)} uncompressed, "
                                  f"over the per-file limit of {_gib(limits.max_file_bytes)}")
            total += e.size
    if total > limits.max_total_bytes:
        raise UploadError(f"archive unpacks to {_gib(total)}, over the upload limit of "
                          f"{_gib(limits.max_total_bytes)}")
    free = shutil.disk_usage(dest_parent).free
    if total + limits.free_margin_bytes > free:
        raise UploadError(f"not enough free disk to unpack: {_gib(total)} needed plus a "
                          f"{_gib(limits.free_margin_bytes)} margin, {_gib(free)} free in "
                          f"{dest_parent}")
    if not any(not e.is_dir for e in entries):
        raise UploadError("archive holds no files")
    return total


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def _extract(entries: list[_Entry], opener, root: Path, limits: UploadLimits) -> None:
    """Write each entry under `root` ourselves (never extractall), counting real bytes."""
    written = 0
    for e in entries:
        target = root.joinpath(*e.name.split("/"))
        if e.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise UploadError(f"archive entry {e.name!r} clashes with a folder of that name")
        n = 0
        with opener(e) as src, open(target, "xb") as dst:
            while block := src.read(CHUNK):
                n += len(block)
                written += len(block)
                if n > max(e.size, 0) or n > limits.max_file_bytes \
                        or written > limits.max_total_bytes:
                    raise UploadError(f"archive entry {e.name!r} holds more data than its header "
                                      "declares or than the limits allow; refusing the archive")
                dst.write(block)
        os.chmod(target, 0o644)


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
    if not MODEL_NAME.match(name):
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
    try:
        with _OpenArchive(archive) as (entries, opener):
            _check(entries, limits, dest_root)
            tmp.mkdir()
            _extract(entries, opener, tmp, limits)
        root = _model_root(tmp)
        try:
            check_local_model(root, allow_pickle=True)  # pickle policy is core.jobs.validate's job
        except PairError as e:
            where = Path(src_name).name
            why = str(e).replace(f"{root}: ", "").replace(str(root), where)
            raise UploadError(f"{where}: the archive does not hold a usable model: {why}") \
                from e
        os.rename(root, final)  # same filesystem: the model appears whole or not at all
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, FileExistsError) and final.exists():
            raise UploadError(f"a model named {name!r} appeared while unpacking") from e
        raise UploadError(f"{Path(src_name).name}: cannot unpack the archive ({e})") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


class _OpenArchive:
    """Context manager: (entries, opener) for a zip or tar given as path or file object."""

    def __init__(self, archive):
        self.archive = archive
        self.handle = None

    def __enter__(self):
        a = self.archive
        self._own = open(a, "rb") if isinstance(a, (str, Path)) else None
        try:
            return self._entries(self._own or a)
        except BaseException:
            self.__exit__()
            raise

    def _entries(self, a):
        a.seek(0)
        if zipfile.is_zipfile(a):
            a.seek(0)
            zf = self.handle = zipfile.ZipFile(a)
            return _zip_entries(zf), lambda e: zf.open(e.handle)
        a.seek(0)
        try:
            tf = self.handle = tarfile.open(fileobj=a, mode="r:*")
        except tarfile.TarError:
            raise UploadError("the upload is neither a zip nor a tar archive "
                              f"({', '.join(ARCHIVE_SUFFIXES)})") from None
        return _tar_entries(tf), lambda e: tf.extractfile(e.handle)

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self._own is not None:
            self._own.close()
            self._own = None
        return False


def prompts_dir(cache: str | Path = "cache") -> Path:
    """The folder that holds uploaded prompt sets: `uploads_dir(cache) / "prompts"`."""
    return uploads_dir(cache) / "prompts"


def rollouts_dir(cache: str | Path = "cache") -> Path:
    """The folder that holds uploaded rollout files: `uploads_dir(cache) / "rollouts"`."""
    return uploads_dir(cache) / "rollouts"


def save_prompt_set(data: bytes | BinaryIO, filename: str, dest_root: str | Path,
                    max_bytes: int = 200 * 1024**2) -> Path:
    """Validate an uploaded prompt set (.jsonl or .parquet) and keep it; returns its path.

    The bytes go to a hidden temporary file, core.prompts.load_prompts validates them
    (PromptSetError naming each bad line and field; a line or field over the caps of
    core.text_limits is refused before it is parsed), and only a valid file is renamed to
    `dest_root/<filename>`; an existing file of that name is refused unless identical.
    Raises UploadError (name, size) or PromptSetError; leaves nothing behind on error.
    """
    from core.prompts import load_prompts

    return _save_checked(data, filename, dest_root, max_bytes, "prompt set", load_prompts)


def save_rollouts(data: bytes | BinaryIO, filename: str, dest_root: str | Path,
                  max_bytes: int | None = None) -> Path:
    """Validate an uploaded rollout file (.jsonl or .parquet rows of prompt or messages,
    response or response_ids, ...: core.rollouts) and keep it; returns its path, which
    `PrecomputeConfig.traces` (add_pair's `traces`) then scores instead of sampling.

    As save_prompt_set: validated line by line (core.rollouts.load_rollouts; PromptSetError
    naming the line and field) in a hidden temporary file before it is renamed to
    `dest_root/<filename>`; a different file of that name is refused. max_bytes: default the
    configured upload limit (default_limits().max_file_bytes). Raises UploadError or
    PromptSetError; leaves nothing behind on error.
    """
    from core.rollouts import load_rollouts

    limit = max_bytes if max_bytes is not None else default_limits().max_file_bytes
    return _save_checked(data, filename, dest_root, limit, "rollout file", load_rollouts)


def _save_checked(data: bytes | BinaryIO, filename: str, dest_root: str | Path,
                  max_bytes: int, what: str, load) -> Path:
    """Keep an uploaded .jsonl/.parquet file under a safe name once `load(path)` accepts it
    (see save_prompt_set)."""
    from core.errors import clip
    from core.prompts import PromptSetError

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
