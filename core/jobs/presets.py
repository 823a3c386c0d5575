"""Presets: public base/RL pairs that the paper (arXiv 2603.22446) and its neighbours study.

Each is a pair of Hugging Face hub ids, usable where a network and enough memory exist
(core.jobs.validate reports which). Hub ids were checked against public sources (the SimpleRL-Zoo
README's model table, the DAPO README, and evaluation scripts that load these ids), not
against the live hub; `verified` says so per preset. Parameter counts are the model cards'
figures for the base model (a fine-tune has the same count); validate_pair reads the exact
number from the hub's safetensors metadata.

The app offers `PRESETS` as one-click choices; the CLI lists them with `add-pair --preset`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    key: str           # short id for the CLI and the app
    title: str
    base: str          # hub id
    tuned: str         # hub id
    kind: str          # "rl" (all of these), free text like PrecomputeConfig.kind
    algorithm: str     # how `tuned` was trained
    parameters: float  # billions, per model
    note: str = ""
    verified: bool = True  # id seen in the publishers' own README or widely used scripts

    @property
    def memory_gib_bf16(self) -> float:
        """Weights of both models in bf16 (2 bytes per parameter), GiB: the floor on a GPU."""
        return 2 * 2 * self.parameters * 1e9 / 1024**3


PRESETS: tuple[Preset, ...] = (
    Preset("simplerl-32b", "Qwen2.5-32B vs SimpleRL-Zoo (the paper's SimpleRL pair)",
           "Qwen/Qwen2.5-32B", "hkust-nlp/Qwen-2.5-32B-SimpleRL-Zoo", "rl",
           "GRPO, zero-RL on 8K MATH problems (SimpleRL-Zoo)", 32.5),
    Preset("dapo-32b", "Qwen2.5-32B vs DAPO (the paper's DAPO pair)",
           "Qwen/Qwen2.5-32B", "BytedTsinghua-SIA/DAPO-Qwen-32B", "rl",
           "DAPO on DAPO-Math-17k", 32.5,
           note="The DAPO model prompts with its own template ('Answer:' line); see its card."),
    Preset("simplerl-math-7b", "Qwen2.5-Math-7B vs SimpleRL-Zoo",
           "Qwen/Qwen2.5-Math-7B", "hkust-nlp/Qwen-2.5-Math-7B-SimpleRL-Zoo", "rl",
           "GRPO, zero-RL (SimpleRL-Zoo)", 7.6,
           note="The paper's weighted-advantage experiments start from Qwen2.5-Math-7B."),
    Preset("oat-zero-math-7b", "Qwen2.5-Math-7B vs Oat-Zero (Dr. GRPO)",
           "Qwen/Qwen2.5-Math-7B", "sail/Qwen2.5-Math-7B-Oat-Zero", "rl",
           "Dr. GRPO (understanding R1-Zero-like training)", 7.6),
    Preset("simplerl-14b", "Qwen2.5-14B vs SimpleRL-Zoo",
           "Qwen/Qwen2.5-14B", "hkust-nlp/Qwen-2.5-14B-SimpleRL-Zoo", "rl",
           "GRPO, zero-RL (SimpleRL-Zoo)", 14.7),
    Preset("simplerl-7b", "Qwen2.5-7B vs SimpleRL-Zoo",
           "Qwen/Qwen2.5-7B", "hkust-nlp/Qwen-2.5-7B-SimpleRL-Zoo", "rl",
           "GRPO, zero-RL (SimpleRL-Zoo)", 7.6),
    Preset("simplerl-1.5b", "Qwen2.5-1.5B vs SimpleRL-Zoo",
           "Qwen/Qwen2.5-1.5B", "hkust-nlp/Qwen-2.5-1.5B-SimpleRL-Zoo", "rl",
           "GRPO, zero-RL (SimpleRL-Zoo)", 1.54),
    Preset("simplerl-0.5b", "Qwen2.5-0.5B vs SimpleRL-Zoo (smallest; runs on a laptop CPU)",
           "Qwen/Qwen2.5-0.5B", "hkust-nlp/Qwen-2.5-0.5B-SimpleRL-Zoo", "rl",
           "GRPO, zero-RL (SimpleRL-Zoo)", 0.49),
    Preset("orz-32b", "Qwen2.5-32B vs Open-Reasoner-Zero",
           "Qwen/Qwen2.5-32B", "Open-Reasoner-Zero/Open-Reasoner-Zero-32B", "rl",
           "PPO, zero-RL (Open-Reasoner-Zero)", 32.5,
           note="Id seen only in third-party result tables; confirm it on the hub.",
           verified=False),
)


def get_preset(key: str) -> Preset:
    """The preset with this key; KeyError listing the known keys otherwise."""
    for p in PRESETS:
        if p.key == key:
            return p
    raise KeyError(f"no preset {key!r}; known: {', '.join(p.key for p in PRESETS)}")
