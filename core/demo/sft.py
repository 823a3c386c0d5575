"""Supervised training on reference solutions (used for `base` and for the `sft` contrast)."""

from __future__ import annotations

import math
import random
import time
from typing import Callable

import torch

from core.demo.batches import masked_mean, pack, token_logprobs, update
from core.demo.task import sample_problems


def encode_examples(tokenizer, problems, noise: float = 0.0,
                    rng: random.Random | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and response ids; a share `noise` of responses take the left-to-right route
    (wrong where the problem has a trap); with `rng`, the wording of each is drawn."""
    prompts = [list(tokenizer(p.prompt)["input_ids"]) for p in problems]
    texts = [p.solution if rng is None else p.flawed_solution(rng)
             if noise and rng.random() < noise else p.right_solution(rng) for p in problems]
    responses = [list(tokenizer(t, add_special_tokens=False)["input_ids"])
                 + [tokenizer.eos_token_id] for t in texts]
    return prompts, responses


def train_sft(model, tokenizer, *, steps: int, lr: float, batch_size: int, seed: int,
              operands: tuple[int, ...], warmup: int = 20,
              noise: float = 0.0, weight_decay: float = 0.01, cosine: bool = True,
              after_step: Callable[[int], None] | None = None,
              log: Callable[[str], None] = print, log_every: int = 50) -> dict:
    """Next-token loss on response tokens of freshly drawn training problems.

    `noise` is the share of training responses that work left to right (the trap).
    `cosine`: linear warm-up then cosine decay to 0 at `steps`; False: constant after the
    warm-up (a checkpoint taken at any step is then the same as a run stopped there).
    `after_step(k)` is called after update k (1-based), the model in eval mode.
    Returns training statistics for the model card.
    """
    rng = random.Random(f"sft-noise-{seed}")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                            betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))
        if cosine else min(1.0, (s + 1) / warmup))
    t0 = time.time()
    loss_ema = None
    for step in range(steps):
        problems = sample_problems(batch_size, "train", seed=seed * 1_000_003 + step,
                                   operands=operands, unique=False)
        ids, attn, resp = pack(*encode_examples(tokenizer, problems, noise, rng),
                               tokenizer.pad_token_id)
        logp = token_logprobs(model, ids, attn)
        mask = resp[:, 1:]
        loss = -masked_mean(logp, mask)
        update(model, opt, loss)
        sched.step()
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log(f"  sft step {step + 1}/{steps}  loss {loss_ema:.4f}  {time.time() - t0:.0f}s")
        if after_step is not None:
            model.eval()
            after_step(step + 1)
            model.train()
    model.eval()
    return {"steps": steps, "lr": lr, "batch_size": batch_size, "final_loss": loss_ema,
            "flawed_share": noise, "weight_decay": weight_decay,
            "schedule": ("warm-up, " if warmup > 1 else "")
            + ("cosine" if cosine else "constant"),
            "seconds": round(time.time() - t0, 1),
            "sequences_seen": steps * batch_size}
