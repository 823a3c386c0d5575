"""Bad input gets a clear, specific error and leaves the cache without a partial run."""

from __future__ import annotations

import json

import pytest
import torch

from core.config import PrecomputeConfig
from core.engine.pair import PairError
from core.inputs.prompts import PromptSetError, load_prompts
from core.precompute.driver import RunError, precompute

pytestmark = pytest.mark.model


def run(tiny_pair, cache, **kw):
    cfg = dict(base=str(tiny_pair["base"]), tuned=str(tiny_pair["tuned"]),
               prompts=str(tiny_pair["prompts"]), cache=str(cache), n=1, max_new_tokens=8,
               name="t")
    cfg.update(kw)
    return precompute(PrecomputeConfig(**cfg), log=lambda s: None, show_progress=False)


def cache_is_clean(cache):
    return not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def test_missing_path(tiny_pair, tmp_path):
    with pytest.raises(PairError, match="no such folder"):
        run(tiny_pair, tmp_path / "c", base=str(tmp_path / "nope"))
    assert cache_is_clean(tmp_path / "c")


def test_folder_that_is_not_a_model(tiny_pair, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairError, match="not a model folder"):
        run(tiny_pair, tmp_path / "c", tuned=str(tmp_path / "empty"))
    assert cache_is_clean(tmp_path / "c")


def test_mismatched_vocabularies(tiny_pair, tmp_path, copy_model):
    other = copy_model(tiny_pair["tuned"], "other")
    tj = json.loads((other / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    vocab["Z"] = vocab.pop("Q")  # same size, one token renamed
    (other / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(PairError, match=r"do not share a vocabulary.*only in base.*'Q'"):
        run(tiny_pair, tmp_path / "c", tuned=str(other))
    assert cache_is_clean(tmp_path / "c")


def test_pickle_only_checkpoint_is_refused(tiny_pair, tmp_path, copy_model):
    pk = copy_model(tiny_pair["tuned"], "pickled")
    from safetensors.torch import load_file
    state = load_file(pk / "model.safetensors")
    (pk / "model.safetensors").unlink()
    torch.save(state, pk / "pytorch_model.bin")
    with pytest.raises(PairError, match="only pickle weights.*--allow-pickle"):
        run(tiny_pair, tmp_path / "c", tuned=str(pk))
    assert cache_is_clean(tmp_path / "c")


def test_truncated_safetensors(tiny_pair, tmp_path, copy_model):
    bad = copy_model(tiny_pair["tuned"], "truncated")
    f = bad / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(PairError, match="corrupt checkpoint.*truncated"):
        run(tiny_pair, tmp_path / "c", tuned=str(bad))
    assert cache_is_clean(tmp_path / "c")


@pytest.mark.parametrize("lines,needle", [
    (['{"id": 1, "prompt": "Q: 1+1=? A:", "answer": "2"}', '{"id": 2, "prompt": "x"'],
     "line 2: not valid JSON"),
    (['{"id": 1, "prompt": "Q: 1+1=? A:"}'], "line 1: field 'answer' is missing"),
    (['{"id": 1, "prompt": "", "answer": "2"}'], "line 1: field 'prompt' must be"),
    (['{"id": 1, "prompt": "a", "answer": "2"}', '', '{"id": 1, "prompt": "b", "answer": 3}'],
     "line 3: field 'id' '1' repeats"),
    (['{"id": 1, "prompt": "a", "answer": "2", "verifier": "regex"}'], "field 'verifier'"),
])
def test_malformed_prompt_file_names_the_line(tiny_pair, tmp_path, lines, needle):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(PromptSetError, match=needle):
        load_prompts(p)
    with pytest.raises(PromptSetError):
        run(tiny_pair, tmp_path / "c", prompts=str(p))
    assert cache_is_clean(tmp_path / "c")


def test_bad_run_name(tiny_pair, tmp_path):
    with pytest.raises(RunError, match="run name"):
        run(tiny_pair, tmp_path / "c", name="../escape")
    assert cache_is_clean(tmp_path / "c")


def test_interrupted_run_leaves_nothing_complete_and_rerun_succeeds(tiny_pair, tmp_path,
                                                                   monkeypatch):
    import core.precompute.shard as pc

    real = pc.run_shard
    calls = {"n": 0}

    def dies_on_second_shard(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return real(*a, **k)

    cache = tmp_path / "c"
    monkeypatch.setattr(pc, "run_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_pair, cache, shard_size=2, n=2)
    assert not (cache / "t").exists()
    assert not list(cache.rglob("manifest.json"))
    assert not [p for p in cache.rglob("tokens.parquet")]  # only part files, no table
    monkeypatch.setattr(pc, "run_shard", real)
    resumed = run(tiny_pair, cache, shard_size=2, n=2)
    fresh = run(tiny_pair, tmp_path / "c2", shard_size=2, n=2)
    import pandas as pd
    for f in ("tokens.parquet", "topk.parquet", "traces.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(resumed / f), pd.read_parquet(fresh / f))
    assert not (cache / ".staging" / "t").exists()
