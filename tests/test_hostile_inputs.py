"""Hostile prompt and rollout files, chat templates and live-scoring texts: each attack is
refused with one clean line (exception type and message asserted), before the work it would
cost (the tokenizer is made to fail if it sees the text), with the cache untouched (listing
and bytes) and no temporary or upload files left; and the inputs that looked hostile but are
valid (a byte-order mark, U+2028 inside a string) are read as given."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import PreTrainedTokenizerBase

from core.engine.chat_render import render_chat
from core.errors import InputError, PromptSetError
from core.inputs import user_parquet
from core.inputs.prompts import load_prompts
from core.inputs.rollouts import load_rollouts
from core.inputs.text_limits import TextLimits
from core.jobs.upload import prompts_dir, rollouts_dir, save_prompt_set, save_rollouts
from tests.hostile import hostile_tokenizer

pytestmark = pytest.mark.unit
MB = 1024**2
OK = {"id": "p1", "prompt": "Q: 1+1=? A:", "answer": "2", "verifier": "exact"}


def snapshot(root: Path) -> list[tuple]:
    """Every path under `root` with its size, mtime and bytes: equal means untouched."""
    return [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns,
             p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))]


def files_under(root: Path) -> list[str]:
    """Files (hidden temporary or staging ones included) under `root`."""
    return [str(p) for p in root.rglob("*") if p.is_file()] if root.exists() else []


def line(rec: dict) -> bytes:
    return (json.dumps(rec, ensure_ascii=False) + "\n").encode()


def rows(*recs) -> bytes:
    return b"".join(line(r) for r in recs)


def parquet_bytes(tmp: Path, recs: list[dict]) -> bytes:
    p = tmp / "in.parquet"
    pq.write_table(pa.Table.from_pylist(recs), p)
    return p.read_bytes()


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A cache with a run in it, the uploads beside it, a private temp dir, and tokenizers
    that fail the test if they are handed a text over 1 MiB."""
    cache = tmp_path / "cache"
    (cache / "demo-rl").mkdir(parents=True)
    (cache / "demo-rl" / "manifest.json").write_text('{"schema": 1}')
    (cache / "demo-rl" / "tokens.parquet").write_bytes(b"PAR1" + bytes(range(256)) + b"PAR1")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    monkeypatch.setenv("SHIFTLENS_UPLOADS", str(tmp_path / "uploads"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    real_call = PreTrainedTokenizerBase.__call__

    def guarded(self, text=None, *a, **kw):
        texts = text if isinstance(text, list) else [text]
        if any(isinstance(t, str) and len(t) > MB for t in texts):
            raise AssertionError("a tokenizer was handed a text over 1 MiB")
        return real_call(self, text, *a, **kw)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", guarded)
    return {"cache": cache, "tmp": tmp, "root": tmp_path}


def with_template(template: str):
    tok = hostile_tokenizer()
    tok.chat_template = template
    return tok


CHAT = [{"role": "user", "content": "Q: 1+1=? A:"}]
FAST = TextLimits(template_seconds=0.5)
# A template that must hit the output cap, not the clock: rendering its million characters
# can take over 0.5 s on a busy machine (the suite runs a worker per core).
SLOW = TextLimits(template_seconds=20)


class FakePair:
    """Just enough of a Pair for live scoring to reach its limits (models are never used)."""

    def __init__(self, tok):
        self.tokenizer = tok


def live(prompt: str, response: str, template: str | None = None):
    from core.api import score_text

    tok = hostile_tokenizer()
    tok.chat_template = template
    return lambda w: score_text(FakePair(tok), response, prompt)


# (id, call(world) that must raise, exception type, message pattern)
CASES = [
    ("prompt-50MB-one-line",
     lambda w: save_prompt_set(big_line(w["root"]).read_bytes(), "big.jsonl",
                               prompts_dir(w["cache"])),
     PromptSetError, r"^big\.jsonl line 1: longer than 4\.0 MiB, the limit for one line"),
    ("rollout-50MB-one-line",
     lambda w: save_rollouts(big_line(w["root"]).read_bytes(), "big.jsonl",
                             rollouts_dir(w["cache"])),
     PromptSetError, r"^big\.jsonl line 1: longer than 4\.0 MiB"),
    ("field-2MB-not-echoed",
     lambda w: save_prompt_set(rows(OK, dict(OK, id="p2", verifier="v" * 2 * MB)), "f.jsonl",
                               prompts_dir(w["cache"])),
     PromptSetError, r"(?s)f\.jsonl line 2: field 'verifier' is 2\.0 MiB, over the limit of "
                     r"1\.0 MiB per field .*'vvvv[v]*… \(2,097,152 characters\)"),
    ("parquet-field-2MB",
     lambda w: save_prompt_set(parquet_bytes(w["root"], [dict(OK, prompt="7" * 2 * MB)]),
                               "p.parquet", prompts_dir(w["cache"])),
     PromptSetError, r"^invalid prompt set: p\.parquet row 1: field 'prompt' is 2\.0 MiB"),
    *[(f"answer-{name}",
       lambda w, raw=raw: save_prompt_set(
           b'{"id": "a", "prompt": "Q: 1+1=? A:", "answer": ' + raw + b'}\n', "a.jsonl",
           prompts_dir(w["cache"])),
       PromptSetError, r"^invalid prompt set: a\.jsonl line 1: field 'answer' must be a "
                       r"non-empty string or finite number")
      for name, raw in [("NaN", b"NaN"), ("Infinity", b"Infinity"), ("-Infinity", b"-Infinity"),
                        ("1e400", b"1e400"), ("empty", b'""'), ("blank", b'" \\t "')]],
    ("deep-nesting",
     lambda w: save_prompt_set(b'{"id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
                               "n.jsonl", prompts_dir(w["cache"])),
     PromptSetError, r"^invalid prompt set: n\.jsonl line 1: nested too deeply to read"),
    ("integer-of-5000-digits",
     lambda w: save_prompt_set(b'{"id": "a", "prompt": "Q", "answer": ' + b"7" * 5000 + b"}\n",
                               "d.jsonl", prompts_dir(w["cache"])),
     PromptSetError, r"^invalid prompt set: d\.jsonl line 1: not valid JSON \(Exceeds the "),
    ("lone-surrogate",
     lambda w: save_rollouts(b'{"prompt": "Q \\ud800", "response": "1"}\n', "s.jsonl",
                             rollouts_dir(w["cache"])),
     PromptSetError, r"^invalid rollout file: s\.jsonl line 1: field 'prompt' holds a lone "
                     r"surrogate"),
    ("verifier-a-list",
     lambda w: save_prompt_set(line(dict(OK, verifier=["exact"])), "v.jsonl",
                               prompts_dir(w["cache"])),
     PromptSetError, r"^invalid prompt set: v\.jsonl line 1: field 'verifier' is \['exact'\]"),
    ("template-nested-range-loops",
     lambda w: render_chat(with_template(
         "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
         CHAT, limits=FAST),
     InputError, r"^the chat template ran for more than 0\.5 s rendering one chat"),
    ("template-memory-bomb",
     lambda w: render_chat(with_template("{% set x = 'a' * 10000000000 %}{{ x }}"), CHAT,
                           limits=FAST),
     InputError, r"^the chat template cannot render a chat: it needs more than 512 MiB"),
    ("template-output-flood",
     lambda w: render_chat(with_template("{% for i in range(100000) %}0123456789{% endfor %}"),
                           CHAT, limits=SLOW),
     InputError, r"^the chat template renders 1,000,000 characters for a chat of 11: more "
                 r"than the 65,536 it may add"),
    ("template-recursion",
     lambda w: render_chat(with_template("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"),
                           CHAT, limits=FAST),
     InputError, r"^the chat template cannot render a chat: it recurses too deeply"),
    ("live-text-over-cap",
     live("Q: 1+1=? A:", "7" * 2 * MB),
     InputError, r"^live scoring: the response is 2,097,152 characters, over the limit of "
                 r"100,000 \(SHIFTLENS_LIVE_MAX_CHARS\)"),
    ("live-template-runaway",
     live("Q: 1+1=? A:", "2",
          "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
     InputError, r"^the chat template ran for more than 1 s"),
]


def big_line(root: Path) -> Path:
    """A 50 MB prompt file of one line (written once per test in its tmp_path)."""
    p = root / "big.jsonl"
    if not p.exists():
        with open(p, "wb") as f:
            f.write(b'{"id": "big", "answer": "2", "prompt": "')
            block = b"7+8" * (MB // 3)
            for _ in range(50):
                f.write(block)
            f.write(b'"}\n')
    return p


@pytest.mark.parametrize("call,exc,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_refused_cleanly(world, call, exc, message):
    before = snapshot(world["cache"])
    with pytest.raises(exc, match=message) as info:
        call(world)
    text = str(info.value)
    assert "Traceback" not in text and len(text) < 600, text
    assert snapshot(world["cache"]) == before
    assert not (world["cache"] / ".staging").exists()
    assert files_under(world["root"] / "uploads") == [] and files_under(world["tmp"]) == []


def test_bom_u2028_and_crlf_are_read_as_given(world):
    """A UTF-8 byte-order mark, raw U+2028/U+2029/U+0085 inside strings and CRLF line ends
    are valid JSONL: every line is read, the separators stay in the text."""
    text = "Q: 1\u2028+1\u2029=?\x85 A:"
    data = b"\xef\xbb\xbf" + line(dict(OK, prompt=text)).replace(b"\n", b"\r\n") \
        + line(dict(OK, id="p2"))
    saved = save_prompt_set(data, "bom.jsonl", prompts_dir(world["cache"]))
    ps = load_prompts(saved)
    assert [r.prompt for r in ps.rows] == [text, OK["prompt"]]
    roll = save_rollouts(b"\xef\xbb\xbf" + line({"prompt": text, "response": "x\u2028y"}),
                         "r.jsonl", rollouts_dir(world["cache"]))
    assert load_rollouts(roll).rows[0].response == "x\u2028y"


def test_finite_numeric_answers_still_pass(world, tmp_path):
    p = tmp_path / "n.jsonl"
    p.write_bytes(rows(dict(OK, answer=12), dict(OK, id="p2", answer=0.5)))
    assert [r.answer for r in load_prompts(p).rows] == ["12", "0.5"]
    assert not math.isnan(float(load_prompts(p).rows[1].answer))


def test_the_child_renders_what_apply_chat_template_renders():
    tok = with_template("{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}"
                        "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    want = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert render_chat(tok, CHAT) == want
    from core.engine.sampling import encode_prompts

    assert encode_prompts(tok, ["Q: 1+1=? A:"], limits=TextLimits()) == \
        encode_prompts(tok, ["Q: 1+1=? A:"])


@pytest.mark.model
def test_validation_refuses_50mb_prompt_before_tokenising_and_a_runaway_template(world,
                                                                                 copy_model):
    """The crash of the issue: validating a pair with a 50 MB one-line prompt tokenised it
    in the app process (SIGABRT). Now the line cap refuses it first; a tuned checkpoint whose
    chat template runs away fails its template check; a prompt over the token cap fails."""
    from core.jobs.validate import validate_pair
    from tests.conftest import DEMO

    tuned = copy_model(DEMO / "rl", "rl")
    cfg = json.loads((tuned / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{% for i in range(100000) %}{% for j in range(100000) %}" \
                           "{% endfor %}{% endfor %}"
    (tuned / "tokenizer_config.json").write_text(json.dumps(cfg))
    rep = validate_pair(str(DEMO / "base"), str(tuned), prompts=str(big_line(world["root"])))
    failed = {c.name: c.message for c in rep.failures()}
    assert failed["prompt set"].startswith("big.jsonl line 1: longer than 4.0 MiB")
    assert failed["chat template (tuned)"].startswith("tuned's chat template ran for more "
                                                      "than 1 s")
    long = world["root"] / "long.jsonl"
    long.write_bytes(rows(OK, dict(OK, id="p2", prompt="7" * 20_000)))
    rep = validate_pair(str(DEMO / "base"), str(DEMO / "rl"), prompts=str(long))
    assert {c.name: c.message for c in rep.failures()} == {
        "prompt tokens": "long.jsonl: prompt id 'p2': the prompt is 20,000 tokens, over the "
                         "limit of 16,384 (SHIFTLENS_MAX_PROMPT_TOKENS); shorten it"}


def _bomb(root: Path, kind: str) -> bytes:
    """A small Parquet rollout file that holds far more than its size: 'compressed', 10 MiB
    of one byte in plain-encoded zstd pages; 'dictionary', one 1 KiB response repeated in
    200,000 rows through a dictionary (200 MiB once decoded, a few KiB uncompressed)."""
    p = root / f"{kind}.parquet"
    if kind == "compressed":
        t = pa.table({"prompt": ["Q"] * 10, "response": ["7" * MB] * 10})
        pq.write_table(t, p, compression="zstd", use_dictionary=False)
    else:
        t = pa.table({"prompt": ["Q"] * 200_000, "response": ["7" * 1024] * 200_000})
        pq.write_table(t, p, compression="zstd")
    return p.read_bytes()


@pytest.mark.parametrize("kind,limit", [("compressed", 4 * MB), ("dictionary", 16 * MB)])
def test_parquet_bombs_are_refused_before_their_rows_are_read(world, monkeypatch, kind,
                                                               limit):
    """Each file is under 1 MiB but holds 10 or 200 MiB: refused from its footer, or from its
    dictionaries' lengths, before any row becomes a Python record (was: read whole first)."""
    data = _bomb(world["root"], kind)
    assert len(data) < MB
    monkeypatch.setenv("SHIFTLENS_MAX_FILE_TEXT_BYTES", str(limit))

    def never(table):
        raise AssertionError("rows were read into Python before the size check")

    monkeypatch.setattr(user_parquet, "_rows", never)
    before = snapshot(world["cache"])
    with pytest.raises(PromptSetError, match=rf"^{kind}\.parquet: its values take "
                       rf"{'10' if kind == 'compressed' else '19[0-9]'}\.\d MiB once "
                       rf"decompressed, more than {limit // MB}\.0 MiB, the limit for one "
                       r"file \(SHIFTLENS_MAX_FILE_TEXT_BYTES\); split it$"):
        save_rollouts(data, f"{kind}.parquet", rollouts_dir(world["cache"]))
    assert snapshot(world["cache"]) == before
    assert files_under(world["root"] / "uploads") == [] and files_under(world["tmp"]) == []


def test_a_jsonl_file_over_the_text_limit_is_refused_before_reading(world, monkeypatch):
    monkeypatch.setenv("SHIFTLENS_MAX_FILE_TEXT_BYTES", str(MB))
    with pytest.raises(PromptSetError, match=r"^r\.jsonl: 2\.\d MiB, more than 1\.0 MiB, "
                                             r"the limit for one file"):
        save_rollouts(rows(*[{"prompt": "Q", "response": "7" * 1000}] * 2100), "r.jsonl",
                      rollouts_dir(world["cache"]))


def test_parquet_rollouts_under_the_limit_read_as_written(world, monkeypatch):
    """Dictionary-kept reading changes nothing: nested chat messages, ids and repeated
    strings come back as the plain values written (limit just above the file's values)."""
    recs = [{"messages": [{"role": "user", "content": f"Q {i % 3}"}], "response": "7" * 50,
             "response_ids": None, "answer": "7", "sampled_from": "base"} for i in range(30)]
    recs[4] = dict(recs[4], response=None, response_ids=[5, 6, 7])
    data = parquet_bytes(world["root"], recs)
    monkeypatch.setenv("SHIFTLENS_MAX_FILE_TEXT_BYTES", str(10_000))
    saved = save_rollouts(data, "ok.parquet", rollouts_dir(world["cache"]))
    got = load_rollouts(saved).rows
    assert [r.messages for r in got[:3]] == [(("user", "Q 0"),), (("user", "Q 1"),),
                                             (("user", "Q 2"),)]
    assert got[0].response == "7" * 50 and got[4].response_ids == (5, 6, 7)
    assert {r.sampled_from for r in got} == {"base"}
    monkeypatch.setenv("SHIFTLENS_MAX_FILE_TEXT_BYTES", str(1000))
    with pytest.raises(PromptSetError, match="the limit for one file"):
        load_rollouts(saved)
