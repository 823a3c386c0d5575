"""Hostile and corrupt model archives: each refused with one UploadError line, before the work
it guards, leaving cache/ byte-for-byte untouched and no temporary or model folder behind.

One case per attack class (core.jobs.archive): entry counts past the limit (read only up to
the limit, measured in bytes read from the upload), oversized extended headers, header
chains, corrupt or altered gzip/xz/zip streams, encrypted members, compression methods
zipfile cannot read. Every archive is built here, small, from a tiny but valid model folder.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from core.errors import UploadError
from core.jobs.upload import UploadLimits, unpack_model
from tests.hostile_fs import snapshot

pytestmark = pytest.mark.unit

PAYLOAD = np.frombuffer(np.random.default_rng(0).bytes(8192), dtype=np.uint8)  # incompressible
MODEL = {"m/config.json": b"{}", "m/model.safetensors": save({"w": PAYLOAD})}


class Counting(io.BufferedReader):
    """The upload as a file object that counts the bytes read from it."""

    def __init__(self, path: Path):
        super().__init__(io.FileIO(path, "rb"))
        self.bytes_read = 0

    def read(self, n=-1):
        out = super().read(n)
        self.bytes_read += len(out)
        return out

    def read1(self, n=-1):
        out = super().read1(n)
        self.bytes_read += len(out)
        return out

    def readinto(self, b):
        n = super().readinto(b)
        self.bytes_read += n or 0
        return n


def tar_bytes(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in extra:
            tf.addfile(m)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ builders

def many_entries_tgz(d: Path) -> Path:
    """20,000 empty entries (the issue's million, scaled to a limit of 100), with random
    names so that the archive does not compress to less than zipfile's probe of its tail."""
    rng = np.random.default_rng(1)
    with gzip.open(d / "many.tar.gz", "wb") as gz:
        for _ in range(20_000):
            name = f"m/{rng.bytes(12).hex()}"
            gz.write(tarfile.TarInfo(name).tobuf(format=tarfile.USTAR_FORMAT))
        gz.write(b"\0" * 1024)
    return d / "many.tar.gz"


def many_entries_zip(d: Path) -> Path:
    with zipfile.ZipFile(d / "many.zip", "w") as zf:
        for i in range(20_000):
            zf.writestr(f"m/f{i:06d}", b"")
    return d / "many.zip"


def huge_pax_header(d: Path) -> Path:
    """A PAX record of 4 MiB: tarfile would read it whole into memory."""
    big = tarfile.TarInfo("m/config.json")
    big.pax_headers = {"comment": "x" * (4 << 20)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        big.size = 2
        tf.addfile(big, io.BytesIO(b"{}"))
    return write(d / "pax.tar.gz", gzip.compress(buf.getvalue()))


def longname_chain(d: Path) -> Path:
    """5,000 GNU long-name headers in a row: tarfile recurses once per header."""
    block = tarfile.TarInfo("m/x" * 40)._create_gnu_long_header(
        "m/" + "x" * 200, tarfile.GNUTYPE_LONGNAME, "utf-8", "strict")
    return write(d / "chain.tar.gz", gzip.compress(block * 5000 + tar_bytes(MODEL)))


def tgz_altered_byte(d: Path) -> Path:
    """Stored (level 0) gzip blocks hold the tar's bytes as they are: one payload byte changed
    still unpacks, and only the trailer's CRC-32 shows it."""
    data = gzip.compress(tar_bytes(MODEL), compresslevel=0)
    at = data.index(PAYLOAD[:64].tobytes()) + 100
    return write(d / "altered.tar.gz", flip(data, at))


def tgz_bad_length(d: Path) -> Path:
    data = bytearray(gzip.compress(tar_bytes(MODEL)))
    data[-4:] = (len(tar_bytes(MODEL)) + 1).to_bytes(4, "little")  # ISIZE off by one
    return write(d / "length.tar.gz", bytes(data))


def tgz_corrupt_deflate(d: Path) -> Path:
    data = gzip.compress(tar_bytes(MODEL))
    at = len(data) // 2  # inside the weights' deflate data
    return write(d / "corrupt.tar.gz", data[:at] + b"\xff" * 64 + data[at + 64:])


def txz_altered_byte(d: Path) -> Path:
    """An xz whose block check (CRC-64, the 8 bytes before the index) is off: the data
    decompresses, and only reading to the block's end shows it."""
    data = lzma.compress(tar_bytes(MODEL), check=lzma.CHECK_CRC64)
    index_bytes = (int.from_bytes(data[-8:-4], "little") + 1) * 4  # the footer's backward size
    return write(d / "altered.tar.xz", flip(data, len(data) - 12 - index_bytes - 1))


def zip_model(d: Path, name: str, method=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(d / name, "w", compression=method) as zf:
        for n, data in MODEL.items():
            zf.writestr(n, data)
    return d / name


def zip_patched(d: Path, name: str, method=zipfile.ZIP_DEFLATED, *, flag=0,
                new_method=None, garbage=False, crc=False) -> Path:
    """A zip of MODEL whose model.safetensors member is altered in place: general-purpose
    flag bits or method (local and central headers), its data overwritten, or its CRC."""
    path = zip_model(d, name, method)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("m/model.safetensors")
        start_dir = zf.start_dir
    local = info.header_offset
    name = info.filename.encode()
    central = data.index(b"PK\x01\x02", start_dir)
    while data[central + 46:central + 46 + len(name)] != name:
        central = data.index(b"PK\x01\x02", central + 4)
    if flag:
        for at in (local + 6, central + 8):
            data[at] |= flag
    if new_method is not None:
        for at in (local + 8, central + 10):
            data[at:at + 2] = new_method.to_bytes(2, "little")
    start = local + 30 + len(info.filename) + len(info.extra)
    if garbage:
        data[start + 4:start + 68] = b"\xff" * 64
    if crc:
        for at in (local + 14, central + 16):
            data[at] ^= 0xFF
    return write(path, bytes(data))


# (builder, limits, expected message) per attack class
CASES = {
    "tar-entry-count": (many_entries_tgz, UploadLimits(max_files=100),
                        r"more entries than the limit of 100 \(refused at entry 101"),
    "zip-entry-count": (many_entries_zip, UploadLimits(max_files=100),
                        r"archive has 20000 entries, more than the limit of 100"),
    "tar-huge-extended-header": (huge_pax_header, None,
                                 r"extended header of 4\.0 MiB .*over the limit of 1\.0 MiB"),
    "tar-header-chain": (longname_chain, None, r"chain of extended headers too long"),
    "tgz-altered-byte-bad-crc": (tgz_altered_byte, None,
                                 r"archive fails its integrity check \(CRC check failed"),
    "tgz-bad-length": (tgz_bad_length, None,
                       r"archive fails its integrity check \(Incorrect length"),
    "tgz-corrupt-deflate": (tgz_corrupt_deflate, None,
                            r"(gzip stream|entry 'm/model\.safetensors') is corrupt"),
    "txz-altered-byte-bad-check": (txz_altered_byte, None,
                                   r"(integrity check|is corrupt) \(Corrupt input data"),
    "zip-encrypted": (lambda d: zip_patched(d, "enc.zip", flag=0x1), None,
                      r"entry 'm/model\.safetensors' is encrypted; upload an archive made "
                      "without a password"),
    "zip-deflate64": (lambda d: zip_patched(d, "d64.zip", new_method=9), None,
                      r"entry 'm/model\.safetensors' is compressed with Deflate64, which "
                      r"cannot be read"),
    "zip-aes": (lambda d: zip_patched(d, "aes.zip", new_method=99), None,
                r"compressed with AES encryption"),
    "zip-corrupt-deflate": (lambda d: zip_patched(d, "def.zip", garbage=True), None,
                            r"entry 'm/model\.safetensors' is corrupt \("),
    "zip-corrupt-lzma": (lambda d: zip_patched(d, "xz.zip", zipfile.ZIP_LZMA, garbage=True),
                         None, r"entry 'm/model\.safetensors' is corrupt \("),
    "zip-corrupt-bz2": (lambda d: zip_patched(d, "bz.zip", zipfile.ZIP_BZIP2, garbage=True),
                        None, r"entry 'm/model\.safetensors' is corrupt \("),
    "zip-bad-crc": (lambda d: zip_patched(d, "crc.zip", zipfile.ZIP_STORED, crc=True), None,
                    r"entry 'm/model\.safetensors' is corrupt \(Bad CRC-32"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archive_is_refused_cleanly(case, tmp_path, cache, monkeypatch):
    make, limits, needle = CASES[case]
    archive = make(tmp_path)
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    models = tmp_path / "uploads" / "models"
    before = snapshot(cache)
    kw = {"limits": limits} if limits else {}
    with Counting(archive) as f, pytest.raises(UploadError, match=needle) as err:
        unpack_model(f, models, filename=archive.name, **kw)
    assert "\n" not in str(err.value)
    assert snapshot(cache) == before
    assert list(models.iterdir()) == []  # no model, no hidden .upload-* folder
    assert list(temp.iterdir()) == []
    if case.endswith("entry-count"):  # refused at the limit, not after reading everything
        assert f.bytes_read < 0.2 * archive.stat().st_size, (f.bytes_read, archive.stat())


def test_the_same_archives_unaltered_are_accepted(tmp_path):
    """The builders' baselines unpack: each refusal above is the alteration's doing."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tgz = write(tmp_path / "a" / "ok.tar.gz", gzip.compress(tar_bytes(MODEL), compresslevel=0))
    txz = write(tmp_path / "b" / "ok.tar.xz", lzma.compress(tar_bytes(MODEL)))
    for i, archive in enumerate([tgz, txz, zip_model(tmp_path, "ok.zip"),
                                 zip_model(tmp_path, "okxz.zip", zipfile.ZIP_LZMA)]):
        folder = unpack_model(archive, tmp_path / "models", name=f"ok{i}")
        assert (folder / "model.safetensors").read_bytes() == MODEL["m/model.safetensors"]
        assert json.loads((folder / "config.json").read_text()) == {}


def test_entry_limit_is_a_setting(monkeypatch):
    from core.jobs.upload import default_limits

    monkeypatch.setenv("SHIFTLENS_UPLOAD_MAX_FILES", "5")
    monkeypatch.setenv("SHIFTLENS_UPLOAD_LIMIT_GIB", "0.5")
    lim = default_limits()
    assert (lim.max_files, lim.max_total_bytes, lim.max_file_bytes) == (5, 2**29, 2**29)
    monkeypatch.setenv("SHIFTLENS_UPLOAD_MAX_FILES", "many")
    with pytest.raises(UploadError, match="SHIFTLENS_UPLOAD_MAX_FILES: not a number"):
        default_limits()
