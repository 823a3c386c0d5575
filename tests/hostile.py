"""A throwaway pair whose vocabulary holds hostile token strings, for rendering tests.

Built through the production path: a `tokenizers` WordLevel vocabulary, two random tiny
Llama models, and `core.precompute.driver` writing a real run folder.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

HOSTILE = ["<script>alert(1)</script>", "</span>", "<img src=x onerror=alert(2)>", "&amp;",
           '"', "\u05e9\u05dc\u05d5\u05dd", "\u202e", "zero\u200bwidth", "\n", "\t", "  "]
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = list("0123456789+-=?;.#:QA ")


def hostile_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS + HOSTILE)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


def build_hostile_run(root: Path, cache: Path, name: str = "hostile") -> Path:
    """Precompute a run whose sampled tokens include every string in HOSTILE."""
    import torch

    from core.config import PrecomputeConfig
    from core.demo.model import build_model
    from core.demo.task import write_jsonl
    from core.precompute.driver import precompute

    tok = hostile_tokenizer()
    for i, sub in enumerate(("base", "tuned")):
        m = build_model(tok, hidden=32, layers=1, heads=2, seed=i)
        if sub == "base":
            with torch.no_grad():  # a uniform base: every token, hostile ones included,
                m.model.norm.weight.mul_(0.0)  # is equally likely, and js > 0 everywhere
        m.save_pretrained(root / sub)
        tok.save_pretrained(root / sub)
    prompts = root / "prompts.jsonl"
    write_jsonl([{"id": f"h{i}", "prompt": f"Q: {i}+1=? A:", "answer": str(i + 1),
                  "verifier": "exact"} for i in range(4)], prompts)
    return precompute(PrecomputeConfig(base=str(root / "base"), tuned=str(root / "tuned"),
                                       prompts=str(prompts), cache=str(cache), name=name,
                                       n=3, max_new_tokens=60, seed=0),
                      log=lambda s: None, show_progress=False)
