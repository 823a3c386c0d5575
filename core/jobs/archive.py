"""Reading an uploaded zip or tar archive into a folder, with every limit checked before the
work it guards and every failure one `UploadError` line.

Limits (`UploadLimits`, configured by `default_limits()` from the environment):
  - entries: a zip's count comes from its end-of-central-directory record, before the
    directory is parsed, and its directory may hold at most `MAX_DIRECTORY_BYTES_PER_ENTRY`
    bytes per allowed entry; a tar is read header by header, and refused at header
    `max_files + 1`, never parsed further;
  - sizes: each declared size against `max_file_bytes`, the running total against
    `max_total_bytes` and the free disk (less `free_margin_bytes`), before that entry's data is
    written; bytes actually written are counted too, so a lying header does not help; tar
    extended headers (PAX, GNU long names) are capped at `MAX_EXTENDED_HEADER_BYTES`.
Integrity: zip members' CRC-32 is checked as each is read (zipfile does so at the member's
end); a compressed tar is read to the end of its compressed stream after the last member, so
the gzip trailer (CRC-32 and length), the xz block checks and the bzip2 stream CRC are all
verified. Refused outright: encrypted zip members, compression methods zipfile cannot read
(Deflate64, AES, ...), sparse tar members, links, devices, `..` and absolute paths.

The caller (core.jobs.upload.unpack_model) owns the destination: it passes an empty
temporary folder and removes it on any error, so a refused archive leaves nothing.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.errors import UploadError
from core.settings import value

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
IGNORED = ("__MACOSX/", ".DS_Store")  # macOS Finder litter, skipped rather than refused
CHUNK = 1 << 20
MAX_EXTENDED_HEADER_BYTES = 1 << 20   # a PAX header or GNU long name; real ones are < 1 KiB
MAX_TRAILING_BYTES = 1 << 20          # after a tar's end marker (record padding is 10 KiB)
MAX_DIRECTORY_BYTES_PER_ENTRY = 4096  # zip central directory: 46 fixed + name + extras
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
METHOD_NAMES = {9: "Deflate64", 6: "Implode", 93: "Zstandard", 95: "xz", 97: "WavPack",
                98: "PPMd", 99: "AES encryption"}
COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"BZh": "bzip2"}
# What a corrupt compressed stream raises while it is read (zipfile, gzip, lzma, bz2).
READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError,
               OSError, RuntimeError, NotImplementedError)


@dataclass(frozen=True)
class UploadLimits:
    """Caps on an uploaded archive; the app and the CLI pass their configured values."""

    max_total_bytes: int = 2 * 1024**3   # uncompressed, all files together
    max_file_bytes: int = 2 * 1024**3    # uncompressed, any one file
    max_files: int = 1000                # entries (files, folders, Finder litter)
    free_margin_bytes: int = 256 * 1024**2  # disk that must stay free after unpacking


def default_limits() -> UploadLimits:
    """UploadLimits from the settings (core.settings): SHIFTLENS_UPLOAD_LIMIT_GIB caps the
    total and each file (default 2 GiB), SHIFTLENS_UPLOAD_MAX_FILES the entries (default
    1,000). A malformed value is refused as an UploadError line."""
    n = int(value("SHIFTLENS_UPLOAD_LIMIT_GIB", UploadError) * 1024**3)
    files = value("SHIFTLENS_UPLOAD_MAX_FILES", UploadError)
    return UploadLimits(max_total_bytes=n, max_file_bytes=n, max_files=files)


def gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def _short(e: BaseException, limit: int = 200) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if len(msg) <= limit else msg[:limit] + "..."


def clean_name(raw: str) -> str | None:
    """The entry's normalised relative path; None for ignored litter; UploadError if unsafe."""
    name = raw.replace("\\", "/")  # zips written on Windows may use backslashes
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UploadError(f"archive entry {raw[:200]!r} has an absolute path; refusing the "
                          "archive")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UploadError(f"archive entry {raw[:200]!r} points outside the folder ('..'); "
                          "refusing the archive")
    if not parts or parts[0] == IGNORED[0].rstrip("/") or parts[-1] == IGNORED[1]:
        return None
    return "/".join(parts)


class _Budget:
    """Entry count, declared and written bytes, names seen: each checked as it grows."""

    def __init__(self, limits: UploadLimits, dest: Path):
        self.limits, self.dest = limits, dest
        self.free = shutil.disk_usage(dest).free
        self.entries = self.declared = self.written = self.files = 0
        self.seen: set[str] = set()

    def count(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise UploadError(f"archive has more entries than the limit of "
                              f"{self.limits.max_files} (refused at entry {self.entries}, "
                              "before reading further); SHIFTLENS_UPLOAD_MAX_FILES sets it")

    def admit(self, name: str, is_dir: bool, size: int) -> None:
        """Before an entry is written: duplicates, per-file, total and free-disk limits."""
        lim = self.limits
        if name in self.seen and not is_dir:
            raise UploadError(f"archive entry {name!r} appears twice; refusing the archive")
        self.seen.add(name)
        if is_dir:
            return
        self.files += 1
        if size > lim.max_file_bytes:
            raise UploadError(f"archive entry {name!r} is {gib(size)} uncompressed, over the "
                              f"per-file limit of {gib(lim.max_file_bytes)}")
        self.declared += size
        if self.declared > lim.max_total_bytes:
            raise UploadError(f"archive unpacks to more than {gib(self.declared)}, over the "
                              f"upload limit of {gib(lim.max_total_bytes)}")
        if self.declared + lim.free_margin_bytes > self.free:
            raise UploadError(f"not enough free disk to unpack: {gib(self.declared)} needed "
                              f"plus a {gib(lim.free_margin_bytes)} margin, {gib(self.free)} "
                              f"free in {self.dest}")

    def write(self, name: str, size: int, src, root: Path) -> None:
        """Copy one member's data to `root/name`, counting real bytes; read errors (bad CRC,
        corrupt stream) become one UploadError naming the entry."""
        target = root.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise UploadError(f"archive entry {name!r} clashes with a folder of that name")
        n, lim = 0, self.limits
        with open(target, "xb") as dst:
            while block := _read(src, name):
                n += len(block)
                self.written += len(block)
                if n > max(size, 0) or n > lim.max_file_bytes \
                        or self.written > lim.max_total_bytes:
                    raise UploadError(f"archive entry {name!r} holds more data than its header "
                                      "declares or than the limits allow; refusing the archive")
                dst.write(block)
        if n != size:
            raise UploadError(f"archive entry {name!r} holds {n} bytes, its header declares "
                              f"{size}: the archive is truncated or corrupt")
        os.chmod(target, 0o644)


def _read(src, name: str) -> bytes:
    try:
        return src.read(CHUNK)
    except READ_ERRORS as e:
        raise UploadError(f"archive entry {name!r} is corrupt ({_short(e)}); re-create the "
                          "archive") from None


def extract(archive, root: Path, limits: UploadLimits) -> None:
    """Unpack `archive` (a seekable binary file) into the empty folder `root`, checking every
    limit before the work it guards. Raises UploadError; the caller removes `root` then."""
    archive.seek(0)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, root, limits)
    else:
        _extract_tar(archive, root, limits)


# ------------------------------------------------------------------------------- zip

def _zip_directory(f) -> tuple[int, int]:
    """(entries, central directory bytes) from the end-of-central-directory record (and its
    zip64 form), read from the file's tail without parsing the directory itself."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    back = min(size, 22 + 65535)
    f.seek(size - back)
    tail = f.read(back)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) - i < 22:
        raise zipfile.BadZipFile("no end-of-central-directory record")
    entries, cd_bytes = struct.unpack("<HL", tail[i + 10:i + 16])
    if (entries == 0xFFFF or cd_bytes == 0xFFFFFFFF) and i >= 20 \
            and tail[i - 20:i - 16] == b"PK\x06\x07":
        (offset,) = struct.unpack("<Q", tail[i - 12:i - 4])
        f.seek(offset)
        rec = f.read(56)
        if rec[:4] != b"PK\x06\x06" or len(rec) < 56:
            raise zipfile.BadZipFile("bad zip64 end-of-central-directory record")
        entries, cd_bytes = struct.unpack("<QQ", rec[32:48])
    return entries, cd_bytes


def _extract_zip(f, root: Path, limits: UploadLimits) -> None:
    entries, cd_bytes = _zip_directory(f)
    if entries > limits.max_files:
        raise UploadError(f"archive has {entries} entries, more than the limit of "
                          f"{limits.max_files}; SHIFTLENS_UPLOAD_MAX_FILES sets it")
    if cd_bytes > max(limits.max_files, 1) * MAX_DIRECTORY_BYTES_PER_ENTRY:
        raise UploadError(f"archive's directory is {gib(cd_bytes)}, too large for "
                          f"{limits.max_files} entries; refusing the archive")
    f.seek(0)
    budget = _Budget(limits, root.parent)
    with zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_files:  # the end record lied about the count
            raise UploadError(f"archive has {len(infos)} entries, more than the limit of "
                              f"{limits.max_files}; SHIFTLENS_UPLOAD_MAX_FILES sets it")
        todo = []
        for info in infos:  # every check on every entry before a byte is written
            budget.count()
            name = _zip_entry_name(info)
            if name is not None:
                budget.admit(name, info.is_dir(), info.file_size)
                todo.append((name, info))
        if not budget.files:
            raise UploadError("archive holds no files")
        for name, info in todo:
            if info.is_dir():
                root.joinpath(*name.split("/")).mkdir(parents=True, exist_ok=True)
                continue
            try:
                src = zf.open(info)
            except READ_ERRORS as e:
                raise UploadError(f"archive entry {name!r} cannot be read ({_short(e)}); "
                                  "re-create the archive") from None
            with src:
                budget.write(name, info.file_size, src, root)


def _zip_entry_name(info: zipfile.ZipInfo) -> str | None:
    """The cleaned name of a zip entry after refusing links, encryption, unknown methods."""
    kind = stat.S_IFMT(info.external_attr >> 16)  # unix mode bits when made on unix
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        what = "a symlink" if kind == stat.S_IFLNK else "not a regular file"
        raise UploadError(f"archive entry {info.filename[:200]!r} is {what}; refusing the "
                          "archive")
    name = clean_name(info.filename)
    if name is None or info.is_dir():
        return name
    if info.flag_bits & 0x1:
        raise UploadError(f"archive entry {name!r} is encrypted; upload an archive made "
                          "without a password")
    if info.compress_type not in ZIP_METHODS:
        method = METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise UploadError(f"archive entry {name!r} is compressed with {method}, which cannot "
                          "be read; re-create the archive with standard deflate (zip -r)")
    return name


# ------------------------------------------------------------------------------- tar

class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses, before tarfile reads their bodies into memory, extended
    headers over MAX_EXTENDED_HEADER_BYTES, and sparse members (never part of a model)."""

    def _proc_member(self, tarfile_):  # tarfile's documented hook for subclasses
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                         tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) \
                and self.size > MAX_EXTENDED_HEADER_BYTES:
            raise UploadError(f"archive has an extended header of {gib(self.size)} (PAX or "
                              f"long name), over the limit of {gib(MAX_EXTENDED_HEADER_BYTES)}")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise UploadError(f"archive entry {self.name[:200]!r} is a sparse file; "
                              "re-create the archive without --sparse")
        return super()._proc_member(tarfile_)


def _extract_tar(f, root: Path, limits: UploadLimits) -> None:
    f.seek(0)
    try:
        tf = tarfile.open(fileobj=f, mode="r:*", tarinfo=_BoundedTarInfo)
    except tarfile.TarError:
        f.seek(0)
        magic = f.read(6)
        kind = next((k for m, k in COMPRESSED_MAGIC.items() if magic.startswith(m)), None)
        if kind:
            raise UploadError(f"the archive's {kind} stream is corrupt or does not hold a tar "
                              "archive; re-create it") from None
        raise UploadError("the upload is neither a zip nor a tar archive "
                          f"({', '.join(ARCHIVE_SUFFIXES)})") from None
    except RecursionError:
        raise UploadError("archive starts with a chain of extended headers too long to "
                          "read; refusing the archive") from None
    budget = _Budget(limits, root.parent)
    with tf:
        while (m := _next(tf, budget.entries)) is not None:
            budget.count()
            if not (m.isreg() or m.isdir()):
                what = ("a symlink" if m.issym() else "a hardlink" if m.islnk()
                        else "a device or fifo" if m.isdev() else "not a regular file")
                raise UploadError(f"archive entry {m.name[:200]!r} is {what}; refusing the "
                                  "archive")
            name = clean_name(m.name)
            if name is None:
                continue
            budget.admit(name, m.isdir(), m.size)
            if m.isdir():
                root.joinpath(*name.split("/")).mkdir(parents=True, exist_ok=True)
                continue
            with tf.extractfile(m) as src:
                budget.write(name, m.size, src, root)
        if not budget.files:
            raise UploadError("archive holds no files")
        _check_trailer(tf.fileobj)


def _next(tf: tarfile.TarFile, done: int):
    """The next member, with corrupt streams and header chains as one UploadError."""
    try:
        return tf.next()
    except RecursionError:
        raise UploadError(f"archive has a chain of extended headers too long to read after "
                          f"entry {done}; refusing the archive") from None
    except READ_ERRORS as e:
        raise UploadError(f"archive is corrupt after entry {done} ({_short(e)}); re-create "
                          "the archive") from None


def _check_trailer(stream) -> None:
    """Read a compressed tar's stream to its end: the gzip trailer's CRC-32 and length, the
    xz and bzip2 checks are verified only there. Plain tars have nothing to verify."""
    if not isinstance(stream, (gzip.GzipFile, lzma.LZMAFile, bz2.BZ2File)):
        return
    extra = 0
    try:
        while block := stream.read(CHUNK):
            extra += len(block)
            if extra > MAX_TRAILING_BYTES:
                raise UploadError(f"archive has more than {gib(MAX_TRAILING_BYTES)} of data "
                                  "after its end marker; refusing the archive")
    except READ_ERRORS as e:
        raise UploadError(f"archive fails its integrity check ({_short(e)}): it is corrupt "
                          "or truncated; re-create it") from None
