"""Rollout files as RL frameworks write them (core.inputs.formats): TRL completions Parquet,
verl {step}.jsonl dumps, OpenRLHF eval samples, prime-rl / open-instruct token-id dumps and
--field mappings, each built here from the format's documented fields with the demo
tokenizer, score on the demo pair exactly as the same rows in ShiftLens's own fields do,
with the format named, verdicts from binary rewards, gold answers used and lossy decoding
counted; a chat-templated prompt is not templated twice; pickles and unknown files are
refused in one line."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import PrecomputeConfig
from core.errors import PromptSetError
from core.inputs.formats import detect, parse_fields
from core.inputs.rollouts import load_rollouts
from core.precompute.driver import precompute
from tests.conftest import DEMO
from tests.test_bpe import bpe  # noqa: F401  (byte-level BPE pair with a chat template)

QUIET = dict(log=lambda s: None, show_progress=False)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def demo():
    """Three rollouts of two demo problems: prompt, response text as a framework decodes it
    (skip_special_tokens=True drops the EOS), reward, gold answer; the third response holds
    a character the demo vocabulary cannot spell, so it does not survive re-tokenising."""
    from transformers import AutoTokenizer

    from core.demo.task import sample_problems

    tok = AutoTokenizer.from_pretrained(DEMO / "base")
    p, q = sample_problems(2, "heldout", seed=3)
    rows = [(p.prompt, p.solution, 1, str(p.answer)),
            (p.prompt, " 1+1=2. #### 2", 0, str(p.answer)),
            (q.prompt, q.solution.replace("=", "é=", 1), 1, str(q.answer))]
    out = []
    for prompt, response, reward, gold in rows:
        ids = tok.encode(response, add_special_tokens=False)
        sampled = ids + [tok.eos_token_id]  # what the policy emitted
        text = (tok.decode(sampled, skip_special_tokens=True) if "é" not in response
                else response)
        out.append({"prompt": prompt, "text": text, "ids": ids, "sampled": sampled,
                    "prompt_ids": list(tok(prompt)["input_ids"]), "reward": reward,
                    "gold": gold})
    return {"tok": tok, "rows": out}


def run(traces, cache, name, **kw):
    folder = precompute(PrecomputeConfig(base=str(DEMO / "base"), tuned=str(DEMO / "rl"),
                                         traces=traces, cache=str(cache), name=name, **kw),
                        **QUIET)
    return (folder, json.loads((folder / "manifest.json").read_text()),
            pd.read_parquet(folder / "traces.parquet").sort_values("trace_id"),
            pd.read_parquet(folder / "tokens.parquet").sort_values(["trace_id", "pos"]))


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory):
    """The same rollouts in ShiftLens's own fields: what every format must score to."""
    tmp = tmp_path_factory.mktemp("ref")
    rows = [{"prompt": r["prompt"], "response": r["text"], "correct": bool(r["reward"])}
            for r in demo["rows"]]
    return run(write_jsonl(tmp / "ref.jsonl", rows), tmp / "cache", "ref")[3]


def same_scores(tokens: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert tokens["token_id"].tolist() == reference["token_id"].tolist()
    floats = [c for c in reference if reference[c].dtype.kind == "f"]
    assert "logp_base" in floats and len(floats) > 5
    for col in floats:
        np.testing.assert_allclose(tokens[col].to_numpy(), reference[col].to_numpy(),
                                   rtol=0, atol=1e-6, err_msg=col)


@pytest.mark.unit
def test_formats_are_told_by_their_fields():
    assert detect([{"step": 6, "prompt": "x", "completion": "y", "accuracy_reward": 1.0,
                    "advantage": 0.5}]) == "trl"
    assert detect([{"input": "x", "output": "y", "gts": "1", "score": 1.0, "step": 6,
                    "acc": True}]) == "verl"
    assert detect([{"prompt": "x", "label": "1", "reward": 1.0, "response_length": 3,
                    "truncated": False, "score": 1.0, "datasource": "math"}]) == "openrlhf"
    assert detect([{"prompt_tokens": [1], "response_tokens": [2], "reward": 1.0}]) == "ids"
    assert detect([{"prompt": "x", "response": "y"}]) == "shiftlens"
    assert detect([{"question": "x", "model_output": "y"}]) is None
    assert parse_fields("prompt=input\ncorrect=score>0.5") == [
        ("prompt", "input", None, None), ("correct", "score", ">", 0.5)]
    for bad in ("prompt", "nope=input", "prompt=input>1", "prompt=a\nprompt=b"):
        with pytest.raises(PromptSetError, match="--field"):
            parse_fields(bad)


@pytest.mark.unit
def test_pickles_unknown_files_and_openrlhf_without_text_are_refused_in_one_line(tmp_path):
    import zipfile

    raw = tmp_path / "rollout_6.pt"
    raw.write_bytes(pickle.dumps({"tokens": [1, 2]}))  # written here, never loaded
    zipped = tmp_path / "rollouts.jsonl"  # torch.save's zip layout, misnamed
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps([1]))
    for path in (raw, zipped):
        with pytest.raises(PromptSetError) as e:
            load_rollouts(path)
        assert str(e.value) == (f"{path.name}: a pickle (torch.save, as slime writes rollouts),"
                                " refused unread: unpickling runs code from the file; export "
                                "the rollouts as JSONL or Parquet")
    unknown = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "model_output": "a"}])
    with pytest.raises(PromptSetError, match=r"^x.jsonl: not a rollout format ShiftLens knows "
                       r"\(fields: model_output, question\); map its fields, e\.g\. --field"):
        load_rollouts(unknown)
    upstream = write_jsonl(tmp_path / "eval_samples_step_4.jsonl", [
        {"prompt": "Q", "label": "1", "reward": 1.0, "response_length": 3, "total_length": 9,
         "truncated": False, "score": 1.0, "datasource": "math", "eval_index": 0}])
    with pytest.raises(PromptSetError) as e:
        load_rollouts(upstream)
    assert "\n" not in str(e.value) and str(e.value).startswith(
        "eval_samples_step_4.jsonl: OpenRLHF eval samples (eval_samples_step_N.jsonl) keep "
        "no response text")


@pytest.mark.unit
def test_a_reward_that_is_not_binary_gives_no_verdict_and_says_so(tmp_path):
    path = write_jsonl(tmp_path / "3.jsonl", [
        {"input": "Q", "output": "A", "gts": "1", "score": s, "step": 3} for s in (0.1, 1.0)])
    rs = load_rollouts(path)
    assert [r.correct for r in rs.rows] == [None, None]
    assert rs.mapping.verdict is None
    assert rs.mapping.notes == [
        "step 3: sampled by the policy before update 3, checkpoint-2 (validation dumps: "
        "after it)",
        "no verdict from rewards: score (0.1..1) not binary; map one with --field "
        "correct=COLUMN>THRESHOLD"]
    mapped = load_rollouts(path, fields="prompt=input\nresponse=output\ncorrect=score>0.5")
    assert [r.correct for r in mapped.rows] == [False, True]
    assert mapped.mapping.verdict == "score>0.5" and mapped.mapping.format.key == "mapped"


@pytest.mark.unit
def test_nan_rewards_give_no_verdict_and_a_mistyped_field_is_named(tmp_path):
    path = tmp_path / "completions_00002.parquet"
    pq.write_table(pa.table({"step": [2] * 3, "prompt": ["Q"] * 3, "completion": ["A"] * 3,
                             "accuracy_reward": [1.0, float("nan"), 0.0],
                             "advantage": [0.0] * 3}), path)
    rs = load_rollouts(path)
    assert [r.correct for r in rs.rows] == [True, None, False]  # TRL's NaN: no reward given
    assert rs.mapping.verdict == "accuracy_reward (binary reward: 1 = correct)"
    with pytest.raises(PromptSetError) as e:
        load_rollouts(path, fields="prompt=promt\nresponse=completion")
    assert str(e.value) == ("--field prompt=promt: completions_00002.parquet has no field "
                            "'promt'")


@pytest.mark.model
def test_trl_completions_parquet_scores_as_given(demo, reference, tmp_path):
    rows = demo["rows"]
    table = pa.table({"step": [6] * 3, "prompt": [r["prompt"] for r in rows],
                      "completion": [r["text"] for r in rows],
                      "format_reward": [0.5, 0.5, 0.0],  # not binary: passed over
                      "accuracy_reward": [float(r["reward"]) for r in rows],
                      "advantage": [0.7, -0.7, 0.0]})
    (tmp_path / "completions").mkdir()
    pq.write_table(table, tmp_path / "completions" / "completions_00006.parquet")
    _, m, traces, tokens = run(str(tmp_path / "completions" / "completions_00006.parquet"),
                               tmp_path / "cache", "trl")
    same_scores(tokens, reference)
    r = m["rollouts"]
    assert r["format"] == "trl" and r["format_name"].startswith("TRL completions Parquet")
    assert r["verdict"] == "accuracy_reward (binary reward: 1 = correct)"
    assert traces["correct"].tolist() == [True, False, True]
    assert traces["prompt_id"].tolist() == ["p0", "p0", "p1"]  # grouped by prompt
    assert traces["sample_index"].tolist() == [0, 1, 0]
    assert r["retokenization_mismatches"] == 1 and r["text_responses"] == 3
    assert "skip_special_tokens=True" in r["lossy"]
    assert r["fields"]["response"] == "completion"


@pytest.mark.model
def test_verl_dump_uses_gold_answers_and_acc(demo, reference, tmp_path):
    rows = demo["rows"]
    path = write_jsonl(tmp_path / "6.jsonl", [
        {"input": r["prompt"], "output": r["text"], "gts": r["gold"], "score": r["reward"],
         "step": 6, "acc": bool(r["reward"])} for r in rows])
    _, m, traces, tokens = run(path, tmp_path / "cache", "verl")
    same_scores(tokens, reference)
    r = m["rollouts"]
    assert r["format"] == "verl" and r["verdict"] == "acc (binary reward: 1 = correct)"
    assert traces["reference"].tolist() == [x["gold"] for x in rows]
    assert traces["correct"].tolist() == [True, False, True]
    assert traces["extracted_answer"].tolist()[:2] == [rows[0]["gold"], "2"]
    assert r["retokenization_mismatches"] == 1 and r["prompts_as_given"] == 3


@pytest.mark.model
def test_openrlhf_samples_count_the_tokens_decoding_dropped(demo, reference, tmp_path):
    rows = demo["rows"]
    path = write_jsonl(tmp_path / "eval_samples_step_6.jsonl", [
        {"prompt": r["prompt"], "response": r["text"], "label": r["gold"],
         "reward": float(r["reward"]), "response_length": len(r["sampled"]),
         "truncated": False, "score": float(r["reward"]), "datasource": "arith"}
        for r in rows])
    _, m, traces, tokens = run(path, tmp_path / "cache", "openrlhf")
    same_scores(tokens, reference)
    r = m["rollouts"]
    assert r["format"] == "openrlhf" and r["verdict"].startswith("score ")
    # every response lost its EOS to skip_special_tokens=True: one token short
    assert (r["length_mismatches"], r["responses_with_length"]) == (3, 3)
    assert traces["correct"].tolist() == [True, False, True]


@pytest.mark.model
def test_token_id_dumps_score_the_ids_and_mapped_fields_score_any_file(demo, reference,
                                                                       tmp_path):
    rows = demo["rows"]
    ids = write_jsonl(tmp_path / "rollouts.jsonl", [
        {"prompt_tokens": r["prompt_ids"], "response_tokens": r["ids"],
         "reward": float(r["reward"]), "advantage": 0.1} for r in rows])
    _, m, traces, tokens = run(ids, tmp_path / "cache", "ids")
    same_scores(tokens, reference)
    assert m["rollouts"]["format"] == "ids" and m["rollouts"]["text_responses"] == 0
    assert m["rollouts"]["verdict"] == "reward (binary reward: 1 = correct)"
    assert traces["prompt"].tolist()[0] == "<bos>" + rows[0]["prompt"]
    # any other file, through --field (given as the CLI joins repeated flags)
    other = write_jsonl(tmp_path / "mine.jsonl", [
        {"question": r["prompt"], "model_output": r["text"], "grade": 10 * r["reward"]}
        for r in rows])
    _, m, traces, tokens = run(other, tmp_path / "cache", "mapped",
                               field="prompt=question\nresponse=model_output\ncorrect=grade>5")
    same_scores(tokens, reference)
    assert m["rollouts"]["format"] == "mapped" and m["rollouts"]["verdict"] == "grade>5"
    assert m["rollouts"]["fields"]["prompt"] == "question"
    assert traces["correct"].tolist() == [True, False, True]


@pytest.mark.model
def test_a_rendered_chat_template_is_not_applied_twice(bpe, tmp_path):  # noqa: F811
    """TRL logs a conversational prompt either rendered (text carrying the template) or as a
    chat list: both score the same tokens, the rendered one taken as given."""
    tok = bpe["tok"]
    messages = [{"role": "user", "content": "Q: 3+4=? A:"}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    runs = {}
    for kind, prompt, completion in (
            ("text", rendered, "3+4=7 #### 7"),
            ("chat", messages, [{"role": "assistant", "content": "3+4=7 #### 7"}])):
        path = tmp_path / kind / "completions_00001.parquet"
        path.parent.mkdir()
        pq.write_table(pa.Table.from_pylist([{
            "step": 1, "prompt": prompt, "completion": completion, "correct_reward": 1.0,
            "advantage": 0.0}]), path)
        folder = precompute(PrecomputeConfig(base=str(bpe["base"]), tuned=str(bpe["tuned"]),
                                             traces=str(path), cache=str(tmp_path / "c"),
                                             name=kind), **QUIET)
        runs[kind] = (pd.read_parquet(folder / "tokens.parquet").sort_values("pos"),
                      json.loads((folder / "manifest.json").read_text())["rollouts"])
    (a, ma), (b, mb) = runs["text"], runs["chat"]
    assert a["token_id"].tolist() == b["token_id"].tolist()
    np.testing.assert_allclose(a["logp_base"].to_numpy(), b["logp_base"].to_numpy(), atol=1e-6)
    assert (ma["prompts_as_given"], mb["prompts_as_given"]) == (1, 0)
    assert mb["fields"]["messages"] == "prompt (chat list)"
    assert mb["fields"]["response"] == "completion (assistant turns' content)"


@pytest.mark.unit
def test_repeated_field_flags_reach_the_config(tmp_path):
    from core.cli.main import build_parser
    from core.config import from_args

    argv = ["precompute", "--base", "b", "--tuned", "t", "--traces", "x.jsonl",
            "--field", "prompt=question", "--field", "correct=grade>5"]
    cfg = from_args(PrecomputeConfig, build_parser().parse_args(argv))
    assert cfg.field == "prompt=question\ncorrect=grade>5"
    assert from_args(PrecomputeConfig, build_parser().parse_args(argv[:7])).field == ""


@pytest.mark.unit
def test_the_add_pair_page_says_which_format_an_upload_was_read_as(tmp_path, monkeypatch):
    from tests.test_byo_rollouts import add_page, unescape

    at = add_page(tmp_path / "cache", monkeypatch)
    dump = [{"input": "Q: 1+2=? A:", "output": " 1+2=3. #### 3", "gts": "3", "score": 1.0,
             "step": 2, "acc": True, "my_reward": 1.0}]
    at.file_uploader(key="ap_rollout_file").set_value(
        ("2.jsonl", "".join(json.dumps(r) + "\n" for r in dump).encode(),
         "application/jsonl")).run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    shown = [unescape(c.value) for c in at.caption]
    assert any("read as verl generation/validation dump ({step}.jsonl); verdicts from acc "
               "(binary reward: 1 = correct)" in c for c in shown), shown
