"""The real-model path with a byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen style).

One token can hold part of a multi-byte UTF-8 character, so decoding tokens one by one
gives U+FFFD. These tests train a small byte-level BPE tokenizer on task text plus
non-ASCII text, so that characters really are split across tokens, and check that
`core.engine.detok.token_strings` and the precompute job give faithful per-token text.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from core.config import PrecomputeConfig
from core.engine.detok import token_strings
from core.engine.sampling import encode_prompts

pytestmark = pytest.mark.model

FFFD = "\ufffd"
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
NON_ASCII = [
    "Café, naïve, façade, résumé, Ångström, über, straße.",
    "中文的数据和中文的文本，中文。",
    "日本語のテキストです。",
    "😀😃😄😁 🎉🎉 👍🏽",
    "👨\u200d👩\u200d👧\u200d👦 family, 👩🏽\u200d💻 coder, 🏳️\u200d🌈 flag",
    "مرحبا بالعالم، هذا نص عربي.",
    "שלום עולם, זה טקסט בעברית.",
    "<script>alert(1)</script> &amp; zero\u200dwidth \u200d",
]
# strings for the unit checks: seen in training, unseen mixes, markup, ZWJ, RTL
TEST_STRINGS = [
    "<script>alert(1)</script>",
    "Q: 12+3=? A: 中文数据 ½ 15 #### 15",
    "👨\u200d👩\u200d👧\u200d👦👩🏽\u200d💻🏳️\u200d🌈",
    "مرحبا بالعالم",
    "שלום, café ñandú — ½ € 𝔘𝔫𝔦",
    "naïve résumé 日本語のテキスト 😀",
    "a\u200db \u200d\u200d end ‰",
]


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte <-> printable-character table that the ByteLevel pre-tokenizer uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_OF = {c: b for b, c in bytes_to_unicode().items()}


def token_bytes(tok, i: int) -> bytes:
    return bytes(BYTE_OF[c] for c in tok.convert_ids_to_tokens(i))


def expected_strings(tok, ids: list[int]) -> list[str]:
    """Oracle for valid UTF-8: each character goes to the token that holds its last byte."""
    pieces = [token_bytes(tok, i) for i in ids]
    ends, pos = [], 0
    for p in pieces:
        pos += len(p)
        ends.append(pos)
    text = b"".join(pieces).decode("utf-8")  # strict: the oracle is for valid text only
    out = [""] * len(ids)
    k, at = 0, 0
    for ch in text:
        at += len(ch.encode("utf-8"))
        while ends[k] < at:
            k += 1
        out[k] += ch
    return out


@pytest.fixture(scope="module")
def bpe(tmp_path_factory) -> dict:
    """A byte-level BPE tokenizer (360 tokens) and two random tiny Llama models using it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from core.demo.model import build_model
    from core.demo.task import sample_problems

    corpus = [p.prompt + p.solution for p in sample_problems(40, "train", seed=0)]
    corpus += NON_ASCII * 20
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=360, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=["<|user|>", "<|assistant|>"],
        padding_side="left", chat_template=CHAT_TEMPLATE)
    root = tmp_path_factory.mktemp("bpe_pair")
    for name, seed in (("base", 11), ("tuned", 12)):
        build_model(tok, hidden=32, layers=1, heads=2, seed=seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return {"tok": tok, "base": root / "base", "tuned": root / "tuned"}


def test_tokenizer_really_splits_characters(bpe):
    """Guards against passing vacuously: merged tokens and the test text split characters."""
    tok = bpe["tok"]
    partial_merges = [i for i in range(len(tok)) if i not in tok.all_special_ids
                      and len(token_bytes(tok, i)) >= 2 and FFFD in tok.decode([i])]
    assert partial_merges, "no merged token holds a partial character"
    for s in TEST_STRINGS[1:]:
        ids = tok.encode(s, add_special_tokens=False)
        assert tok.decode(ids) == s
        assert any(FFFD in tok.decode([i]) for i in ids), f"no split character in {s!r}"
    # a token that ends one character and starts the next (e.g. 'na' + first byte of 'ï')
    ids = tok.encode("naïve", add_special_tokens=False)
    assert any(FFFD in tok.decode([i]) and tok.decode([i]).strip(FFFD) for i in ids)


@pytest.mark.parametrize("text", TEST_STRINGS)
def test_token_strings_on_non_ascii(bpe, text):
    tok = bpe["tok"]
    ids = tok.encode(text, add_special_tokens=False)
    prompt = encode_prompts(tok, ["Q: 1+2=? A: ½"])[0]
    for prefix in (None, prompt):
        got = token_strings(tok, ids, prefix)
        assert len(got) == len(ids)
        assert "".join(got) == tok.decode(ids, skip_special_tokens=True) == text
        assert not any(FFFD in s for s in got), got
        # exact: each character on the token that completes it, "" on the others
        assert got == expected_strings(tok, ids)
    if text.isascii():
        assert all(got)
    else:
        assert "" in got, "a split character should leave an empty string"
    # special tokens get their literal text and add nothing to the response text
    with_eos = ids + [tok.eos_token_id]
    got = token_strings(tok, with_eos, prompt)
    assert got[-1] == "<eos>" and "".join(got[:-1]) == text


def test_token_strings_cut_mid_character(bpe):
    """A response capped inside a character decodes with a U+FFFD at the end; so do the
    token strings, and the U+FFFD lands on the last token, not before it."""
    tok = bpe["tok"]
    ids = tok.encode("中文的数据 👨\u200d👩\u200d👧", add_special_tokens=False)
    cuts = 0
    for k in range(1, len(ids) + 1):
        head = ids[:k]
        want = tok.decode(head, skip_special_tokens=True)
        got = token_strings(tok, head + [tok.eos_token_id])
        assert "".join(got[:-1]) == want, (k, got, want)
        if want.endswith(FFFD):
            cuts += 1
            assert got[-2].endswith(FFFD) and FFFD not in "".join(got[:-2])
    assert cuts, "no prefix ended inside a character"


def test_token_strings_on_random_ids(bpe):
    """Random ids (invalid byte runs, specials in between, random context): the contract
    still holds; this is what a random model samples."""
    import random

    tok = bpe["tok"]
    special = set(tok.all_special_ids)
    rng = random.Random(0)
    for _ in range(300):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randrange(1, 24))]
        prefix = [rng.randrange(len(tok)) for _ in range(rng.randrange(0, 6))]
        got = token_strings(tok, ids, prefix)
        assert len(got) == len(ids)
        text = "".join(s for s, i in zip(got, ids) if i not in special)
        assert text == tok.decode(ids, skip_special_tokens=True), (prefix, ids, got)
        assert all(s == tok.convert_ids_to_tokens(i) for s, i in zip(got, ids) if i in special)


@pytest.mark.parametrize("which", ["bpe", "demo"])
def test_fast_detokenizer_equals_incremental(bpe, which):
    """Detokenizer's shortcut (standalone pieces, checked against one decode) gives exactly
    what the incremental decoder gives, on real text and random ids, for both tokenizers."""
    import random

    from core.demo.tokenizer import build_tokenizer
    from core.engine.detok import Detokenizer

    tok = bpe["tok"] if which == "bpe" else build_tokenizer()
    fast = Detokenizer(tok)
    rng = random.Random(1)
    texts = TEST_STRINGS + [" 7+8=15; 15-3=12. #### 12"] if which == "bpe" else [
        " 7+8=15; 15-3=12. #### 12", " 1-9=-8. #### -8"]
    seqs = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    seqs += [[rng.randrange(len(tok)) for _ in range(rng.randrange(1, 24))] for _ in range(200)]
    for ids in seqs:
        assert fast.response(ids) == token_strings(tok, ids), ids
    shown = fast.display(list(range(len(tok))))
    assert all("\ufffd" not in s for s in shown)


def test_precompute_with_byte_level_bpe(bpe, tmp_path, monkeypatch):
    import core.precompute.driver as pc
    import core.precompute.shard as shard

    tok = bpe["tok"]
    special = set(tok.all_special_ids)
    assistant = tok.convert_tokens_to_ids("<|assistant|>")
    prompts = tmp_path / "prompts.jsonl"
    recs = [
        {"id": "p0", "prompt": "Q: 12+30=? A:", "answer": "42"},
        {"id": "p1", "prompt": "Q: 中文 7+8=? A:", "answer": "15"},
        {"id": "p2", "prompt": "Q: 👨\u200d👩\u200d👧 café 5-2=? A:", "answer": "3"},
        {"id": "p3", "prompt": "مرحبا <script>alert(1)</script> 1+1=?", "answer": "2"},
    ]
    prompts.write_text("".join(json.dumps(dict(r, verifier="exact"), ensure_ascii=False) + "\n"
                               for r in recs), encoding="utf-8")

    encoded: list[list[int]] = []  # what the job actually fed the sampler and the scorer

    def spy(tokenizer, texts, chat_template=True):
        out = encode_prompts(tokenizer, texts, chat_template)
        encoded.extend(out)
        return out

    monkeypatch.setattr(shard, "encode_prompts", spy)
    cfg = PrecomputeConfig(base=str(bpe["base"]), tuned=str(bpe["tuned"]), prompts=str(prompts),
                           cache=str(tmp_path / "cache"), name="bpe", n=2, max_new_tokens=24,
                           batch_size=8, device="cpu")
    run = pc.precompute(cfg, log=lambda s: None, show_progress=False)

    # the prompts went through the chat template
    assert len(encoded) == len(recs)
    for r, ids in zip(recs, encoded):
        assert ids[-1] == assistant and ids[0] == tok.convert_tokens_to_ids("<|user|>")
        assert tok.decode(ids) == f"<|user|>{r['prompt']}\n<|assistant|>"
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["chat_template"] is True
    assert assistant in encode_prompts(tok, [recs[1]["prompt"]])[0]

    traces = pq.read_table(run / "traces.parquet").to_pylist()
    toks = pq.read_table(run / "tokens.parquet",
                         columns=["trace_id", "pos", "token_id", "token"]).to_pandas()
    assert len(traces) == len(recs) * cfg.n
    assert {t["prompt"] for t in traces} == {r["prompt"] for r in recs}
    partial_seen = empty_seen = 0
    for t in traces:
        g = toks[toks.trace_id == t["trace_id"]].sort_values("pos")
        ids, strings = g.token_id.tolist(), g.token.tolist()
        assert len(ids) == t["length"] and g.pos.tolist() == list(range(len(ids)))
        assert tok.decode(ids, skip_special_tokens=True) == t["response"]
        text = "".join(s for s, i in zip(strings, ids) if i not in special)
        assert text == t["response"], (ids, strings)
        for s, i in zip(strings, ids):
            if i in special:
                assert s == tok.convert_ids_to_tokens(i)
        # U+FFFD only where the sampled bytes themselves are not valid UTF-8
        body = b"".join(token_bytes(tok, i) for i in ids if i not in special)
        assert t["response"] == body.decode("utf-8", errors="replace")
        if FFFD not in t["response"]:
            assert not any(FFFD in s for s in strings)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:  # valid text: the exact per-character oracle applies
            body_ids = [i for i in ids if i not in special]
            assert [s for s, i in zip(strings, ids) if i not in special] == \
                expected_strings(tok, body_ids)
        partial_seen += sum(FFFD in tok.decode([i]) for i in ids if i not in special)
        empty_seen += sum(s == "" for s, i in zip(strings, ids) if i not in special)
    assert partial_seen and empty_seen, "the run never exercised a split character"
