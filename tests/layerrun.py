"""A small demo-pair run for the layer-view tests (tests/test_layers.py, test_critical.py),
built by the production precompute: 3 held-out prompts x 2 tuned-sampled traces, 48 tokens."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DEMO, HELDOUT

RUN = "mini"


def build_layer_run(cache: Path) -> Path:
    from core.config import PrecomputeConfig
    from core.precompute.driver import precompute

    precompute(PrecomputeConfig(base=str(DEMO / "base"), tuned=str(DEMO / "rl"), name=RUN,
                                kind="rl", prompts=str(HELDOUT), cache=str(cache),
                                max_prompts=3, n=2, max_new_tokens=48),
               log=lambda s: None, show_progress=False)
    return cache / RUN


def files(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its size: 'changes no file' is a real comparison."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")
            if p.is_file()}
