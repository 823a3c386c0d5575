#!/usr/bin/env bash
# Make .venv-trl for the TRL tier (the shift-ledger callback, tests marked `trl`): a venv
# that sees the project's venv (default .venv, made by scripts/setup.sh from
# requirements.txt) through a .pth line, with requirements-trl.txt (trl and the newer
# transformers it needs) installed in front of it and ShiftLens itself (editable, no deps).
# trl never goes into .venv: it would replace the transformers the project pins. Layering
# on .venv instead of reinstalling requirements.txt takes about 1 minute instead of about 6
# (measured on this machine). Idempotent: skips work already done.
# Usage: scripts/setup_trl.sh [project venv]   (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
base="$(cd "${1:-.venv}" && pwd)"
venv=.venv-trl
[ -x "$base/bin/python" ] || { echo "no project venv at $base: run scripts/setup.sh first" >&2; exit 1; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/_project_venv.pth"
stamp="$venv/.installed"
stale=0
for f in requirements.txt requirements-trl.txt pyproject.toml; do [ "$f" -nt "$stamp" ] && stale=1; done
if [ ! -f "$stamp" ] || [ "$stale" = 1 ]; then
  "$venv/bin/python" -m pip install -q -r requirements-trl.txt
  "$venv/bin/python" -m pip install -q --no-deps -e .
  touch "$stamp"
fi
