"""The runs in a cache folder: what they are, for listings and pickers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .manifest import read_manifest


@dataclass
class RunInfo:
    name: str
    path: Path
    kind: str | None
    pair: str  # "tuned vs base"
    prompt_set: str
    created: str
    n_traces: int
    n_tokens: int
    manifest: dict


def list_runs(cache: str | Path) -> list[RunInfo]:
    """Complete runs (folders with a manifest), newest first. Staging folders are skipped."""
    cache = Path(cache)
    if not cache.is_dir():
        return []
    out = []
    for d in sorted(cache.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        m = read_manifest(d)
        if m is None:
            continue
        models = m.get("models", {})
        spec = {k: models.get(k, {}).get('spec', '?') for k in ('tuned', 'base')}
        pair = f"{spec['tuned']} vs {spec['base']}"
        stats = m.get("stats", {})
        out.append(RunInfo(d.name, d, m.get("kind"), pair,
                           Path(m.get("prompt_set", {}).get("path", "?")).name,
                           m.get("created", ""), stats.get("n_traces", 0),
                           stats.get("n_tokens", 0), m))
    return sorted(out, key=lambda r: r.created, reverse=True)
