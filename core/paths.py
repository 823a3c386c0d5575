"""Where things live: the repository root, the shipped assets, and the default cache of runs."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"  # demo pairs (assets/demo) and shipped prompt sets (assets/prompts)


def default_cache() -> Path:
    """The folder of runs: $SHIFTLENS_CACHE if set, else cache/ in the repository."""
    env = os.environ.get("SHIFTLENS_CACHE")
    return Path(env) if env else REPO_ROOT / "cache"
