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


def series_of(runs: list[RunInfo], run: RunInfo) -> list[str]:
    """The checkpoint series ending at `run`: runs that re-scored its traces with earlier
    checkpoints (`traces_from == run`), by training step, then `run` itself. Empty if none."""
    steps = [r for r in runs if r.manifest.get("traces_from") == run.name
             and r.manifest.get("series_step") is not None]
    if not steps:
        return []
    steps.sort(key=lambda r: r.manifest["series_step"])
    return [r.name for r in steps] + [run.name]


def contrast_candidates(runs: list[RunInfo], run: RunInfo) -> list[str]:
    """Other runs on the same base model and prompt set (e.g. RL vs SFT), SFT runs first."""
    def key(r: RunInfo):
        m = r.manifest
        return (m.get("models", {}).get("base", {}).get("spec"),
                m.get("prompt_set", {}).get("fingerprint"))
    same = [r for r in runs if r.name != run.name and key(r) == key(run)
            and not r.manifest.get("traces_from")]
    return [r.name for r in sorted(same, key=lambda r: (r.kind != "sft", r.name))]
