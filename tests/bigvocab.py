"""Child process of test_memory_bounded: scores one long trace of a real-size-vocabulary
pair and reports its peak memory. Run as `python -m tests.bigvocab FOLDER LENGTH BUDGET`.

Builds (or reuses) a random Llama pair with vocabulary 151,936 and hidden size 16 in FOLDER
(peaked output heads, as trained models are), warms up on a short trace, then scores a
LENGTH-token response with the given memory budget (bytes) and writes the score columns to
FOLDER/scores.npz and {"rss_loaded", "rss_before", "rss_peak"} (bytes: after loading the
models, after the warm-up, at the end) to stdout as JSON. Peak RSS is the kernel's
high-water mark (ru_maxrss), so it counts every allocation the scoring made, torch's too.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np
import torch

VOCAB = 151_936


def build(folder: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    for name, seed in (("base", 1), ("tuned", 2)):
        if (folder / name / "config.json").is_file():
            continue
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                          max_position_embeddings=32_768)
        model = LlamaForCausalLM(cfg).eval()
        with torch.no_grad():  # peaked next-token distributions, as a trained model has
            model.lm_head.weight.normal_(0.0, 1.5)
        model.save_pretrained(folder / name)


def trace(length: int, seed: int = 0) -> tuple[list[int], list[int]]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(3, VOCAB, (8,), generator=g).tolist(),
            torch.randint(3, VOCAB, (length,), generator=g).tolist())


def load(folder: Path):
    from transformers import AutoModelForCausalLM

    return [AutoModelForCausalLM.from_pretrained(folder / n).eval() for n in ("base", "tuned")]


def main() -> None:
    from core.engine.scoring import ScoreSettings, score_traces

    folder, length, budget = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    build(folder)
    base, tuned = load(folder)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    settings = ScoreSettings(batch_size=1, memory_budget=budget)
    score_traces(base, tuned, [trace(64, seed=1)], 0, settings)  # warm-up: kernels, allocator
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = score_traces(base, tuned, [trace(length)], 0, settings)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    np.savez(folder / "scores.npz", **out)
    print(json.dumps({"rss_loaded": loaded, "rss_before": before, "rss_peak": peak}))


if __name__ == "__main__":
    main()
