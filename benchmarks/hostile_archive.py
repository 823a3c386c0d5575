"""How much work a hostile archive costs before core.jobs.upload refuses it: a tar.gz of a
million empty entries (about 6 MB compressed) against the default entry limit (1,000).

    python benchmarks/hostile_archive.py [--entries 1000000] [--keep /tmp/million.tar.gz]

Builds the archive (raw 512-byte headers through gzip, a few seconds; reused when --keep
names an existing file), then runs `unpack_model` on it in a fresh child process and prints
the refusal, the time to refusal and the child's peak RSS (VmHWM) after its imports (torch
included) and at the end: the difference is what the upload itself cost. A figure, not a test: the
issue's baseline was 68 s and 618 MB (every header parsed before the count was checked).
"""

from __future__ import annotations

import argparse
import gzip
import resource
import tarfile
import tempfile
import time
from pathlib import Path

from child import run_child  # benchmarks/child.py: the child prelude and runner

CHILD = """
from core.jobs.upload import unpack_model
from core.errors import UploadError
before = hwm()
t = time.perf_counter()
try:
    unpack_model({archive!r}, {dest!r})
    print("ACCEPTED?!")
except UploadError as e:
    print("refused:", e)
print("seconds %.2f" % (time.perf_counter() - t))
print("peak RSS %.0f MiB after imports, %.0f MiB at the end: +%.0f MiB for the upload"
      % (before, hwm(), hwm() - before))
"""


def build(path: Path, entries: int) -> None:
    """`entries` empty regular files m/f0000000 ... as consecutive tar headers, gzipped."""
    with gzip.open(path, "wb", compresslevel=6) as gz:
        for i in range(entries):
            info = tarfile.TarInfo(f"m/f{i:07d}")
            gz.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        gz.write(b"\0" * 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--keep", default="", help="archive path to reuse or create")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        archive = Path(a.keep) if a.keep else Path(d) / "million.tar.gz"
        if not archive.exists():
            t = time.perf_counter()
            build(archive, a.entries)
            print(f"built {archive} ({archive.stat().st_size / 1e6:.1f} MB, {a.entries:,} "
                  f"entries) in {time.perf_counter() - t:.1f} s")
        code = CHILD.format(archive=str(archive), dest=str(Path(d) / "models"))
        t = time.perf_counter()
        out = run_child(code, check=False)
        wall = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB
        print(out.stdout.strip() or out.stderr.strip().splitlines()[-1])
        print(f"child wall {wall:.2f} s (imports included), peak RSS {peak:.0f} MiB")
        left = list((Path(d) / "models").glob("*")) if (Path(d) / "models").exists() else []
        print(f"left in the models folder: {len(left)} entries")


if __name__ == "__main__":
    main()
