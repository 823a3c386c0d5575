"""benchmarks/gpu_check.sh, which has not run on a GPU yet, at least parses and its dry run
reaches every entry point it would call (the Triton step itself is tests/test_fused.py's)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_syntax():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_dry_run_reaches_every_step():
    env = {**os.environ, "PYTHON": sys.executable, "DRY_KERNEL": "0"}
    res = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "-m pytest -m gpu" in out
    assert "triton_check.py --device cuda" in out
    assert "--device cuda --layers 28 --model-dtype bfloat16" in out
    assert out.rstrip().endswith("dry run ok (step 2 skipped)")
