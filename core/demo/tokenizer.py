"""A word-level tokenizer in Hugging Face format for the demo task, with a character fallback.

Every word the task writes is one token, with its leading space (` First`, ` 23`, ` ####`),
and the numbers 0..199 each have their own entry, so the vocabulary has a few hundred entries
and a top-k of 10 is a real set of alternatives. Any other printable ASCII text is spelled
one character at a time (so hand-written prompts and rollouts in other formats still
encode); anything else is `<unk>`. Built with `tokenizers` (WordLevel vocabulary, a
pre-tokenizer that isolates a known word with its leading space when it ends at a space or the
end, else one character; a Fuse decoder, so decoding gives back the exact text; a BOS
template) and wrapped in `PreTrainedTokenizerFast`, so `AutoTokenizer.from_pretrained(folder)`
loads it with transformers alone.
"""

from __future__ import annotations

import re

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from core.demo.task import MAX_VALUE, vocabulary_words

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = [chr(c) for c in range(32, 127)]


def words() -> list[str]:
    """The task's words: each bare (the first word of a text) and with its leading space;
    single characters are in CHARS."""
    base = vocabulary_words() + [str(i) for i in range(MAX_VALUE + 1)]
    return [w for w in base if len(w) > 1] + [" " + w for w in base]


def build_tokenizer() -> PreTrainedTokenizerFast:
    ws = words()
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS + ws)}
    bare = sorted({w.lstrip(" ") for w in ws}, key=lambda w: (-len(w), w))
    pattern = " ?(?:" + "|".join(re.escape(w) for w in bare) + ")(?= |$)|."
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
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
