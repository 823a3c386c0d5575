"""A byte-exact snapshot of a folder, for hostile-input tests that assert "nothing written"."""

from __future__ import annotations

import hashlib
from pathlib import Path


def snapshot(root: Path) -> list[tuple]:
    """Every path under `root` (root included) with its type, size, mtime and, for files, a
    sha256 of its bytes: equal snapshots mean nothing was added, removed or rewritten."""
    if not root.exists():
        return []
    out = []
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out.append((str(p.relative_to(root)), p.is_dir(), st.st_size, st.st_mtime_ns, digest))
    return out

