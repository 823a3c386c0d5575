"""The numba kernels' cache is dropped when any of their source files changes."""
from __future__ import annotations

import pytest

from core.metrics.cache_stamp import drop_stale

pytestmark = pytest.mark.unit


def test_a_change_in_an_inlined_module_drops_the_kernels_cache(tmp_path):
    (tmp_path / "kern.py").write_text("x = 1\n")
    (tmp_path / "helper.py").write_text("y = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    files = [cache / "kern.f-10.py311.nbi", cache / "kern.f-10.py311.1.nbc",
             cache / "helper.g-3.py311.nbi"]
    other = cache / "kern.cpython-311.pyc"
    for f in files + [other]:
        f.write_text("cached")
    anchor = str(tmp_path / "kern.py")
    drop_stale(anchor, ["kern", "helper"])  # no digest yet: dropped, digest recorded
    assert not any(f.exists() for f in files) and other.exists()
    for f in files:
        f.write_text("cached")
    assert not drop_stale(anchor, ["kern", "helper"])  # unchanged sources: kept
    assert all(f.exists() for f in files)
    (tmp_path / "helper.py").write_text("y = 2\n")  # only the helper changed
    assert drop_stale(anchor, ["kern", "helper"])
    assert not any(f.exists() for f in files) and other.exists()
