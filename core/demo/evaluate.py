"""Held-out accuracy of a demo checkpoint: sampled (T=1, and T=1 with the paper's top-p 0.7)
and greedy, overall and by difficulty."""

from __future__ import annotations

from collections import defaultdict

from core.demo.task import Problem, is_correct
from core.engine.sampling import sample


def accuracy(model, tokenizer, problems: list[Problem], *, greedy: bool, seed: int = 0,
             n: int = 1, max_new_tokens: int = 96, batch_size: int = 256,
             top_p: float = 1.0) -> dict:
    """Share of correct samples; `by_difficulty` splits it by the problems' difficulty label."""
    samples = sample(model, tokenizer, [p.prompt for p in problems], n=n, temperature=1.0,
                     max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                     greedy=greedy, top_p=top_p)
    hits: dict[str, list[int]] = defaultdict(list)
    for s in samples:
        p = problems[s.prompt_index]
        hits[p.difficulty].append(int(is_correct(s.text, p.answer)))
    every = [h for v in hits.values() for h in v]
    return {
        "accuracy": round(sum(every) / len(every), 4),
        "n": len(every),
        "by_difficulty": {k: round(sum(v) / len(v), 4) for k, v in sorted(hits.items())},
    }


def evaluate(model, tokenizer, problems: list[Problem], seed: int = 0) -> dict:
    return {
        "heldout_prompts": len(problems),
        "sampled_t1": accuracy(model, tokenizer, problems, greedy=False, seed=seed),
        "sampled_top_p_0.7": accuracy(model, tokenizer, problems, greedy=False, seed=seed,
                                      top_p=0.7),
        "greedy": accuracy(model, tokenizer, problems, greedy=True, seed=seed),
    }
