"""A byte-exact snapshot of a folder, for hostile-input tests that assert "nothing written"."""

from __future__ import annotations

import hashlib
from pathlib import Path


def snapshot(root: Path) -> list[tuple]:
    """Every path under `root` (root included) with its type and, for files, size, mtime and
    a sha256 of its bytes: equal snapshots mean nothing was added, removed or rewritten.
    Folders' mtimes are left out: a run's name is reserved (a lock file made and removed)
    before a precompute loads anything, and that is not a write that stays."""
    if not root.exists():
        return []
    out = []
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        if p.is_dir():
            out.append((str(p.relative_to(root)), True, None, None, None))
        else:
            out.append((str(p.relative_to(root)), False, st.st_size, st.st_mtime_ns, digest))
    return out


def listing(root: Path) -> list[tuple]:
    """Every path under root, root included, with its type, size and mtime: equal listings
    mean untouched (a folder's mtime also moves when an entry is created and removed)."""
    if not root.exists():
        return []
    return sorted((str(p.relative_to(root)), p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in [root, *root.rglob("*")])
