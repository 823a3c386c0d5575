"""A word-level tokenizer in Hugging Face format for the demo task.

Every space-separated word of the task is one token, with its leading space (` First`,
` 23`, ` ####`), and the numbers 0..199 each have their own entry, so the vocabulary has a
few hundred entries and a top-k of 10 is a real set of alternatives. Built with `tokenizers`
(WordLevel vocabulary, a pre-tokenizer that isolates each word with its leading space, a Fuse
decoder, a BOS template: decoding gives back the exact text) and wrapped in
`PreTrainedTokenizerFast`, so `AutoTokenizer.from_pretrained(folder)` loads it with
transformers alone. It does not spell text outside the task's words (`<unk>`).
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from core.demo.task import MAX_VALUE, vocabulary_words

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


def words() -> list[str]:
    """The vocabulary after the specials: each word bare (first word of a text) and with its
    leading space."""
    base = vocabulary_words() + [str(i) for i in range(MAX_VALUE + 1)]
    return base + [" " + w for w in base]


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + words())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(" ?[^ ]+| "), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=512,
    )
