"""Turning (prompt ids, response ids) into padded training tensors, and per-token log-probs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pack(prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int):
    """Right-padded `input_ids`, `attention_mask` and `response_mask`, each (B, T).

    `response_mask[b, t]` is 1 where token t of row b belongs to the response; the loss of
    predicting it is read from the logits at t-1.
    """
    rows = [p + r for p, r in zip(prompt_ids, response_ids)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    resp = torch.zeros((len(rows), width), dtype=torch.float32)
    for b, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        ids[b, : len(p) + len(r)] = torch.tensor(p + r)
        attn[b, : len(p) + len(r)] = 1
        resp[b, len(p): len(p) + len(r)] = 1.0
    return ids, attn, resp


def token_logprobs(model, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t] | ids[:, :t]) for t >= 1, shape (B, T-1)."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    return torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None]).squeeze(2)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over the positions where `mask` is 1 (token-level mean, as in DAPO)."""
    return (x * mask).sum() / mask.sum()


def update(model, opt, loss: torch.Tensor, max_norm: float = 1.0) -> None:
    """One optimiser step on `loss`, gradients clipped to `max_norm`."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    opt.step()
