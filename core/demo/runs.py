"""The demo runs: the app's default data, precomputed from the shipped demo family.

`python -m core demo-runs ensure` (= `shiftlens demo-runs`) builds whichever of them the
cache lacks (a few minutes on 2 CPU cores, with progress bars); `build` recomputes them all.

  demo-rl            base vs rl, 200 held-out prompts x 4 samples from each model
  demo-sft-matched   base vs sft-matched (SFT chosen at rl's mean KL from base), same
                     prompts, 4 samples from the tuned model: the default RL-vs-SFT contrast
  demo-sft           base vs sft (SFT at 10x rl's learning rate), same prompts and samples
  demo-rl-step-N     the traces of demo-rl re-scored with each rl-steps/step-N checkpoint
"""

from __future__ import annotations

from pathlib import Path

from core.config import PrecomputeConfig
from core.demo.cards import read_card
from core.paths import ASSETS, cache_dir
from core.store.cache import run_exists

DEMO = ASSETS / "demo"
PROMPTS = ASSETS / "prompts" / "arith-heldout.jsonl"
COMMON = dict(prompts=str(PROMPTS), max_prompts=200, n=4, max_new_tokens=96, seed=0,
              batch_size=64)


def _rel(p: Path) -> str:
    """Repository-relative when run from the repository root (portable manifests)."""
    root = ASSETS.parent
    return str(p.relative_to(root)) if Path.cwd().resolve() == root else str(p)


def demo_configs(cache: str | Path | None = None) -> list[PrecomputeConfig]:
    """The demo runs' configs, into `cache` (None: the default cache)."""
    common = dict(COMMON, prompts=_rel(PROMPTS), cache=str(cache_dir(cache)))
    base = _rel(DEMO / "base")
    out = [
        PrecomputeConfig(base=base, tuned=_rel(DEMO / "rl"), name="demo-rl", kind="rl",
                         sample_from="both", series_step=read_card(DEMO / "rl")["steps"],
                         **common),
        PrecomputeConfig(base=base, tuned=_rel(DEMO / "sft"), name="demo-sft",
                         kind="sft-10x-lr", **common),
    ]
    if (DEMO / "sft-matched" / "model.safetensors").is_file():
        out.append(PrecomputeConfig(base=base, tuned=_rel(DEMO / "sft-matched"),
                                    name="demo-sft-matched", kind="sft-matched", **common))
    steps = sorted((DEMO / "rl-steps").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    for s in steps:
        n = int(s.name.split("-")[1])
        out.append(PrecomputeConfig(base=base, tuned=_rel(s), name=f"demo-rl-step-{n}",
                                    kind="series", series_step=n, traces_from="demo-rl",
                                    **common))
    return out


def ensure(cache: str | Path | None = None, force: bool = False, log=print) -> list[Path]:
    """Build the demo runs `cache` (None: the default cache) lacks; every one with force."""
    from core.precompute.driver import precompute

    cache = cache_dir(cache)
    done = []
    for cfg in demo_configs(cache):
        if not force and run_exists(cache, cfg.name):
            continue
        if force:
            cfg.force = True
        log(f"building demo run {cfg.name}")
        done.append(precompute(cfg, log=log))
    return done
