"""Sampling reasoning traces from a causal LM with transformers `generate` (KV-cached), or
with vLLM when it is installed and asked for (`engine="vllm"`, or `"auto"` on CUDA).

One function, `sample`, used by the demo trainer (rollouts, evaluation) and by the precompute
engine. It returns token ids, not only text, so that scoring later reads exactly the tokens
that were sampled (decoding and re-encoding text is not an identity for BPE tokenizers).

The vLLM path (`_sample_vllm`) is an optional extra and is UNTESTED against a real vLLM on the
development machine (vLLM cannot be installed there); tests/test_sampling_vllm.py checks only
our mapping of parameters and outputs against a fake `vllm` module. Same `Sample` objects
either way; the random streams differ, so the same seed gives different (equally valid) draws
under the two engines.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from core.engine.batching import left_pad
from core.engine.chat_render import encode_chat


@dataclass
class Sample:
    prompt_index: int  # index into the `prompts` list given to `sample`
    sample_index: int  # 0..n-1 within that prompt
    prompt_ids: list[int]
    response_ids: list[int]  # generated tokens, EOS included when the model stopped
    text: str  # decoded response, special tokens skipped
    finished: bool  # True when the model emitted EOS before the cap


def encode_prompts(tokenizer, prompts: list[str], chat_template: bool = True,
                   limits=None) -> list[list[int]]:
    """Token ids of each prompt; through the tokenizer's chat template when it has one.
    limits: a TextLimits to render the template in a child process under its time and
    size limits (core.engine.chat_render: the server's live scoring); None renders here."""
    if chat_template and getattr(tokenizer, "chat_template", None):
        if limits is not None:
            return [encode_chat(tokenizer, [{"role": "user", "content": p}], limits=limits)
                    for p in prompts]
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
    engine: str = "transformers",
) -> list[Sample]:
    """Draw `n` responses per prompt. Deterministic for a given seed, batch size and device.

    `prompts` are strings (encoded here) or already-encoded id lists.
    `engine`: "transformers" (default), "vllm" (needs the vllm package; `model` may be a
    `vllm.LLM` or a transformers model whose `name_or_path` vLLM can load), or "auto" (vLLM
    when importable and CUDA is present, else transformers).
    Returns len(prompts) * n samples ordered by (prompt_index, sample_index).
    """
    if prompts and isinstance(prompts[0], str):
        prompt_ids = encode_prompts(tokenizer, prompts, chat_template)
    else:
        prompt_ids = [list(p) for p in prompts]
    if choose_engine(engine) == "vllm":
        return _sample_vllm(model, tokenizer, prompt_ids, n, temperature, top_p,
                            max_new_tokens, seed, greedy)
    jobs = [(i, j) for i in range(len(prompt_ids)) for j in range(n)]
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out: list[Sample] = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        ids, mask = left_pad([prompt_ids[i] for i, _ in chunk], pad)
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


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_engine(engine: str) -> str:
    """"transformers" or "vllm" for an `engine` argument; refuses "vllm" without vllm."""
    if engine == "auto":
        return "vllm" if vllm_available() and torch.cuda.is_available() else "transformers"
    if engine == "vllm" and not vllm_available():
        raise RuntimeError("engine='vllm' asked for but vllm is not installed "
                           "(pip install vllm), or use engine='transformers'")
    if engine not in ("vllm", "transformers"):
        raise ValueError(f"unknown sampling engine {engine!r}: auto, transformers or vllm")
    return engine


_LLM_CACHE: dict[str, object] = {}


def _vllm_llm(model):
    """A vllm.LLM for `model`: itself if it is one, else built once from its name_or_path.
    Note: building one next to a resident transformers model needs GPU memory for both."""
    import vllm

    if isinstance(model, vllm.LLM):
        return model
    path = getattr(model, "name_or_path", None) or getattr(
        getattr(model, "config", None), "_name_or_path", None)
    if not path:
        raise ValueError("vLLM sampling needs a vllm.LLM or a model loaded from a path")
    if path not in _LLM_CACHE:
        _LLM_CACHE[path] = vllm.LLM(model=str(path), dtype="bfloat16", seed=0,
                                    gpu_memory_utilization=0.5)
    return _LLM_CACHE[path]


def _sample_vllm(model, tokenizer, prompt_ids: list[list[int]], n: int, temperature: float,
                 top_p: float, max_new_tokens: int, seed: int, greedy: bool) -> list[Sample]:
    """vLLM adapter (UNTESTED with a real vLLM here). One request per prompt with n samples and
    a per-prompt seed (seed * 1_000_003 + prompt index), full vocabulary (no top-k), stopping at
    EOS; EOS is kept in `response_ids` when the model stopped, as on the transformers path."""
    import vllm

    llm = _vllm_llm(model)
    eos = tokenizer.eos_token_id
    params = [vllm.SamplingParams(
        n=n, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
        max_tokens=max_new_tokens, seed=seed * 1_000_003 + i,
        stop_token_ids=[eos] if eos is not None else None)
        for i in range(len(prompt_ids))]
    requests = [{"prompt_token_ids": list(p)} for p in prompt_ids]
    results = llm.generate(requests, params, use_tqdm=False)
    out: list[Sample] = []
    for i, res in enumerate(results):
        for j, comp in enumerate(sorted(res.outputs, key=lambda c: c.index)):
            resp = list(comp.token_ids)
            finished = comp.finish_reason == "stop"
            if eos is not None and eos in resp:
                resp = resp[: resp.index(eos) + 1]
                finished = True
            elif finished and eos is not None:
                resp.append(eos)  # stopped on EOS but vLLM left it out
            out.append(Sample(i, j, list(prompt_ids[i]), resp,
                              tokenizer.decode(resp, skip_special_tokens=True), finished))
    return out
