"""What benchmarks that measure one operation in a fresh child process share: the child's
prelude (the repository on sys.path, `hwm()` = its peak RSS in MiB, `before` = that peak
after the prelude's imports) and running the child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""


def run_child(body: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run PRELUDE + `body` (which sets `before = hwm()` after its own imports) in a fresh
    Python, its output captured as text."""
    return subprocess.run([sys.executable, "-c", PRELUDE + body], capture_output=True,
                          text=True, check=check)
