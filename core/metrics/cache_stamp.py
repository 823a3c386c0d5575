"""Numba's on-disk kernel cache, kept in step with every source file a kernel is built from.

numba (`cache=True`) checks a cached kernel against the timestamp and size of the file that
defines it, not of the files whose functions it inlines; a kernel built from an older helper
module would be loaded silently. `drop_stale` keeps a digest of the modules' sources beside
their cache (`__pycache__/<first module>.kernels-digest`) and removes the modules' cache
files when it changes. Best effort: an unwritable `__pycache__` (numba then caches
elsewhere) or a concurrent removal is not an error.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def drop_stale(anchor: str, modules: list[str]) -> bool:
    """Remove the numba cache files (`<module>.*.nbi`/`.nbc`) of `modules` (source files
    beside `anchor`) when their sources' digest differs from the recorded one; True when
    anything was removed."""
    here = Path(anchor).resolve().parent
    digest = hashlib.sha256()
    for m in modules:
        digest.update((here / f"{m}.py").read_bytes())
    cache = here / "__pycache__"
    stamp = cache / f"{modules[0]}.kernels-digest"
    try:
        if stamp.read_text() == digest.hexdigest():
            return False
    except OSError:
        pass
    removed = False
    for m in modules:
        for f in list(cache.glob(f"{m}.*.nbi")) + list(cache.glob(f"{m}.*.nbc")):
            try:
                f.unlink()
                removed = True
            except OSError:
                pass
    try:
        cache.mkdir(exist_ok=True)
        tmp = stamp.with_suffix(f".tmp{id(digest)}")
        tmp.write_text(digest.hexdigest())
        tmp.replace(stamp)
    except OSError:
        pass
    return removed
