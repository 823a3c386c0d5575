#!/usr/bin/env bash
# Make .venv, install the pinned requirements and ShiftLens itself (editable, so `core` and
# `app` import from this checkout and the `shiftlens` command exists). Idempotent: skips work
# already done.
# Usage: scripts/setup.sh [requirements file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
  echo "installing python3-venv (Debian)"; apt-get update -q && apt-get install -y -q python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(basename "$req")"
stale=0
for f in requirements*.txt pyproject.toml; do [ "$f" -nt "$stamp" ] && stale=1; done  # inputs changed
if [ ! -f "$stamp" ] || [ "$stale" = 1 ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$req"
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
