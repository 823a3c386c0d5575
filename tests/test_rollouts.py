"""Bring your own rollouts: `precompute --traces FILE` scores given prompts and responses
without sampling (text or token-id responses, text or chat-list prompts), keeps `correct`
when given and verifies it otherwise, counts responses that do not survive re-tokenising,
and refuses a malformed file naming the line and field."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from core.config import PrecomputeConfig
from core.errors import PromptSetError
from core.precompute.driver import precompute
from tests.test_bpe import bpe  # noqa: F401  (the byte-level BPE pair with a chat template)

pytestmark = pytest.mark.model
QUIET = dict(log=lambda s: None, show_progress=False)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


def run(pair, traces, cache, **kw):
    return precompute(PrecomputeConfig(base=str(pair["base"]), tuned=str(pair["tuned"]),
                                       traces=traces, cache=str(cache), name="byo", **kw),
                      **QUIET)


def test_text_and_id_responses_correct_kept_or_verified_and_retokenisation(tiny_pair,
                                                                          tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_pair["base"])
    ids = tok.encode("1+2=3 #### 3", add_special_tokens=False)
    rows = [
        # text response, answer given, correct given (False although the answer matches)
        {"id": "a", "prompt": "Q: 1+2=? A:", "response": "1+2=3 #### 3", "answer": "3",
         "verifier": "exact", "correct": False, "sampled_from": "step-300"},
        # token-id response, no correct: verified against the answer
        {"prompt_id": "a", "prompt": "Q: 1+2=? A:", "response_ids": ids, "answer": "3",
         "verifier": "exact"},
        # 'é' is not in the demo vocabulary: decode(encode(text)) != text
        {"id": "b", "prompt": "Q: 2+2=? A:", "response": "2+2=4 é #### 4", "answer": "4",
         "verifier": "exact"},
        # no answer, no correct: left empty
        {"id": "c", "prompt": "Q: 5+5=? A:", "response": "#### 10"},
    ]
    folder = run(tiny_pair, write_jsonl(tmp_path / "r.jsonl", rows), tmp_path / "cache")
    traces = pd.read_parquet(folder / "traces.parquet").sort_values("trace_id")
    assert traces["correct"].tolist() == [False, True, True, None]
    assert traces["sampled_from"].tolist() == ["step-300", "tuned", "tuned", "tuned"]
    assert traces["prompt_id"].tolist() == ["a", "a", "b", "c"]
    assert traces["sample_index"].tolist() == [0, 0, 0, 0]  # distinct sampled_from for "a"
    toks = pd.read_parquet(folder / "tokens.parquet")
    assert toks[toks.trace_id == 1].sort_values("pos")["token_id"].tolist() == ids
    assert len(toks) == traces["length"].sum()
    m = json.loads((folder / "manifest.json").read_text())
    assert m["rollouts"]["retokenization_mismatches"] == 1
    assert m["rollouts"]["text_responses"] == 3
    assert m["prompt_set"]["kind"] == "rollouts" and len(m["prompt_set"]["fingerprint"]) == 64
    assert m["stats"]["n_traces"] == 4 and m["scoring"]["memory_budget_bytes"] > 0


def test_chat_list_prompts_go_through_the_chat_template(bpe, tmp_path):  # noqa: F811
    tok = bpe["tok"]
    messages = [{"role": "user", "content": "Q: 3+4=? A:"}]
    response = "3+4=7 #### 7"
    folder = run(bpe, write_jsonl(tmp_path / "r.jsonl", [
        {"messages": messages, "response": response, "answer": "7", "verifier": "exact"}]),
        tmp_path / "cache")
    toks = pd.read_parquet(folder / "tokens.parquet").sort_values("pos")
    # independent: the base model's log-prob of each response token after the templated prompt
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(bpe["base"]).eval()
    prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(prompt_ids, "keys"):
        prompt_ids = prompt_ids["input_ids"]
    resp = tok.encode(response, add_special_tokens=False)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([list(prompt_ids) + resp])).logits[0]
    lp = torch.log_softmax(logits.double(), -1)[len(prompt_ids) - 1:-1]
    want = lp.gather(-1, torch.tensor(resp)[:, None]).squeeze(-1).numpy()
    assert toks["token_id"].tolist() == resp
    assert abs(toks["logp_base"].to_numpy() - want).max() < 1e-4
    assert pd.read_parquet(folder / "traces.parquet")["correct"].tolist() == [True]


def test_malformed_rollouts_are_refused_naming_line_and_field(tiny_pair, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"prompt": "Q: 1+1=? A:", "response": "2"}) + "\n"
        + "{not json\n"
        + json.dumps({"prompt": "Q", "messages": [{"role": "user", "content": "x"}],
                      "response": "1"}) + "\n"
        + json.dumps({"prompt": "Q", "response_ids": [1, -2]}) + "\n"
        + json.dumps({"prompt": "Q", "response": "1", "correct": "yes"}) + "\n",
        encoding="utf-8")
    with pytest.raises(PromptSetError) as e:
        run(tiny_pair, str(path), tmp_path / "cache")
    msg = str(e.value)
    for needle in ("bad.jsonl line 2: not valid JSON", "bad.jsonl line 3: give exactly one of "
                   "'prompt'", "bad.jsonl line 4: field 'response_ids'",
                   "bad.jsonl line 5: field 'correct'"):
        assert needle in msg, msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.json"))


def test_traces_and_prompts_together_are_refused(tiny_pair, tmp_path):
    from core.errors import RunError

    with pytest.raises(RunError, match="--traces scores given rollouts"):
        run(tiny_pair, str(tmp_path / "x.jsonl"), tmp_path / "c",
            prompts=str(tiny_pair["prompts"]))
