#!/usr/bin/env bash
# Install (first time) and open the ShiftLens app on the shipped demo runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
.venv/bin/python -m core demo-runs ensure      # builds the demo runs if cache/ lacks them
exec .venv/bin/python -m streamlit run app/main.py "$@"
