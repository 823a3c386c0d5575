#!/usr/bin/env bash
# Install (first time) and open the ShiftLens app on the shipped demo runs.
# On 127.0.0.1 (.streamlit/config.toml) no sign-in is needed. Serving beyond this machine
# (--server.address 0.0.0.0) needs SHIFTLENS_PASSWORD; see README "Sharing a server".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
.venv/bin/python -m core demo-runs ensure      # builds the demo runs if cache/ lacks them
exec .venv/bin/python -m streamlit run app/serve.py "$@"   # app/main.py behind a Host check
