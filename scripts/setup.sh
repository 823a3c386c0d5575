#!/usr/bin/env bash
# Make .venv and install the requirements (idempotent: skips work already done).
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
for f in requirements*.txt; do [ "$f" -nt "$stamp" ] && stale=1; done  # any pinned list changed
if [ ! -f "$stamp" ] || [ "$stale" = 1 ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$req"
  touch "$stamp"
fi
