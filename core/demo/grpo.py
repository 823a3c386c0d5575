"""RLVR for the demo family: a GRPO-style group-relative policy gradient.

The only reward is the verifier (`task.is_correct`); reference solutions never enter the loss.
Per step: draw training prompts, sample a group of responses per prompt from the current
policy, normalise rewards within each group into advantages, then take a few clipped
policy-gradient updates (PPO-style ratio against the sampling policy, token-level mean as in
DAPO). Optionally the advantage of each token is scaled by the divergence weight of
docs/paper.md: w_t = 1 + s * (sigmoid(alpha * KL_t) - 1/2), with KL_t the k3 estimate
of KL(pi_old || pi_theta) on the sampled token, detached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from core.demo.batches import masked_mean, pack, token_logprobs, update
from core.demo.task import is_correct, sample_problems
from core.engine.sampling import sample


@dataclass
class GRPOSettings:
    steps: int = 60
    prompts_per_step: int = 16
    group_size: int = 8
    lr: float = 3e-5
    clip: float = 0.2
    updates_per_step: int = 2  # >1 makes pi_theta differ from pi_old, so KL_t is informative
    max_new_tokens: int = 96
    weighted: bool = False  # divergence-weighted advantage
    s: float = 1.0
    alpha: float = 100.0
    seed: int = 0


def divergence_weight(kl: torch.Tensor, s: float, alpha: float) -> torch.Tensor:
    """w_t = 1 + s (sigmoid(alpha KL_t) - 1/2); alpha > 0 boosts high-divergence tokens."""
    return 1.0 + s * (torch.sigmoid(alpha * kl) - 0.5)


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(r - group mean) / (group std + 1e-6), per group of `group_size` consecutive samples."""
    r = rewards.view(-1, group_size)
    adv = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True, unbiased=False) + 1e-6)
    return adv.view(-1)


def train_grpo(model, tokenizer, cfg: GRPOSettings, *, operands,
               save_at: dict[int, Callable[[], None]] | None = None,
               log: Callable[[str], None] = print, log_every: int = 10) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    t0 = time.time()
    history = []
    kl_seen: list[torch.Tensor] = []
    for step in range(cfg.steps):
        problems = sample_problems(cfg.prompts_per_step, "train", seed=cfg.seed * 7919 + step,
                                   operands=operands)
        model.eval()
        samples = sample(model, tokenizer, [p.prompt for p in problems], n=cfg.group_size,
                         temperature=1.0, max_new_tokens=cfg.max_new_tokens,
                         seed=cfg.seed * 104729 + step, batch_size=256)
        rewards = torch.tensor([float(is_correct(s.text, problems[s.prompt_index].answer))
                                for s in samples])
        adv = group_advantages(rewards, cfg.group_size)
        ids, attn, resp = pack([s.prompt_ids for s in samples],
                               [s.response_ids for s in samples], tokenizer.pad_token_id)
        mask = resp[:, 1:]
        with torch.no_grad():
            old = token_logprobs(model, ids, attn)
        model.train()
        weights = []
        for inner in range(cfg.updates_per_step):
            logp = token_logprobs(model, ids, attn)
            ratio = torch.exp(logp - old)
            a = adv[:, None].expand_as(logp)
            kl = (ratio - 1 - torch.log(ratio)).detach()  # k3 of KL(pi_old || pi_theta)
            if inner > 0:  # at the first update pi_theta == pi_old and KL is 0
                kl_seen.append(kl[mask > 0])
            if cfg.weighted:
                w = divergence_weight(kl, cfg.s, cfg.alpha)
                weights.append(float(masked_mean(w, mask)))
                a = a * w
            obj = torch.minimum(ratio * a, torch.clamp(ratio, 1 - cfg.clip, 1 + cfg.clip) * a)
            update(model, opt, -masked_mean(obj, mask))
        model.eval()
        history.append(float(rewards.mean()))
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            recent = history[-log_every:]
            extra = f"  mean w {sum(weights) / len(weights):.3f}" if weights else ""
            log(f"  rl step {step + 1}/{cfg.steps}  train reward {sum(recent) / len(recent):.3f}"
                f"{extra}  {time.time() - t0:.0f}s")
        if save_at and (step + 1) in save_at:
            save_at[step + 1]()
    kl_all = torch.cat(kl_seen) if kl_seen else torch.zeros(1)
    return {"steps": cfg.steps, "seconds": round(time.time() - t0, 1),
            "kl_k3_mean": float(kl_all.mean()), "kl_k3_p99": float(kl_all.quantile(0.99))
            if kl_all.numel() < 16_000_000 else None,
            "sequences_sampled": cfg.steps * cfg.prompts_per_step * cfg.group_size,
            "train_reward_first10": round(sum(history[:10]) / max(1, len(history[:10])), 4),
            "train_reward_last10": round(sum(history[-10:]) / max(1, len(history[-10:])), 4)}
