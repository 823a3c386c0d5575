"""Sampling reasoning traces from a causal LM with transformers `generate` (KV-cached).

One function, `sample`, used by the demo trainer (rollouts, evaluation) and by the precompute
engine. It returns token ids, not only text, so that scoring later reads exactly the tokens
that were sampled (decoding and re-encoding text is not an identity for BPE tokenizers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Sample:
    prompt_index: int  # index into the `prompts` list given to `sample`
    sample_index: int  # 0..n-1 within that prompt
    prompt_ids: list[int]
    response_ids: list[int]  # generated tokens, EOS included when the model stopped
    text: str  # decoded response, special tokens skipped
    finished: bool  # True when the model emitted EOS before the cap


def encode_prompts(tokenizer, prompts: list[str], chat_template: bool = True) -> list[list[int]]:
    """Token ids of each prompt; through the tokenizer's chat template when it has one."""
    if chat_template and getattr(tokenizer, "chat_template", None):
        out = []
        for p in prompts:
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True
            )
            if hasattr(ids, "keys"):  # some versions return a BatchEncoding
                ids = ids["input_ids"]
            out.append(list(ids))
        return out
    return [list(tokenizer(p)["input_ids"]) for p in prompts]


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[str] | list[list[int]],
    n: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 64,
    chat_template: bool = True,
    greedy: bool = False,
) -> list[Sample]:
    """Draw `n` responses per prompt. Deterministic for a given seed, batch size and device.

    `prompts` are strings (encoded here) or already-encoded id lists.
    Returns len(prompts) * n samples ordered by (prompt_index, sample_index).
    """
    if prompts and isinstance(prompts[0], str):
        prompt_ids = encode_prompts(tokenizer, prompts, chat_template)
    else:
        prompt_ids = [list(p) for p in prompts]
    jobs = [(i, j) for i in range(len(prompt_ids)) for j in range(n)]
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out: list[Sample] = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        ids, mask = _left_pad([prompt_ids[i] for i, _ in chunk], pad)
        # generate() draws from the global RNG: seed it per batch from our own generator so
        # results do not depend on what ran before.
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        kwargs = dict(do_sample=False) if greedy else dict(
            do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        seqs = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad, **kwargs,
        ).cpu()
        for row, (i, j) in enumerate(chunk):
            resp = seqs[row, ids.shape[1]:].tolist()
            finished = eos in resp
            if finished:
                resp = resp[: resp.index(eos) + 1]
            out.append(Sample(i, j, prompt_ids[i], resp,
                              tokenizer.decode(resp, skip_special_tokens=True), finished))
    return out
