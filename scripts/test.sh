#!/usr/bin/env bash
# Install everything the tests need (Python packages, .venv-trl for the TRL tier, Chromium for
# browser tests and poppler for the PDF-export test) and run the whole suite. Extra arguments
# go to pytest (e.g. -m unit, or -n 0 for one process).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian) for browser tests and figure export"
  apt-get update -q && apt-get install -y -q chromium
fi
if ! command -v pdftoppm >/dev/null 2>&1; then
  echo "installing poppler-utils (Debian) for the test that opens exported PDFs"
  apt-get update -q && apt-get install -y -q poppler-utils
fi
# The numba kernel compiles (about 30 s on one core in a clean checkout, then cached in
# core/metrics/__pycache__) while the TRL tier's venv installs, instead of in every test
# worker that first scores float32 math.
.venv/bin/python -c "from core.metrics.fused import warm_up; print('kernels:', warm_up())" &
warm=$!
# The TRL tier's venv (tests marked trl): .venv-trl on top of .venv, about 1 minute when new.
start=$SECONDS
scripts/setup_trl.sh .venv
echo "scripts/setup_trl.sh: $((SECONDS - start)) s"
wait "$warm" || echo "the kernel warm-up failed; the tests compile the kernel themselves"
# One worker per core (pytest-xdist); a test file stays on one worker, so its module-scoped
# app server and browser are shared. `-n 0` (passed after) runs in this process instead.
# --durations: the slowest tests are listed in every run (CI included), to keep the suite
# well under 15 minutes.
exec .venv/bin/python -m pytest -n auto --dist loadfile --durations=20 "$@"
