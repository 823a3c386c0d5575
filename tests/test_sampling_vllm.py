"""The vLLM sampling adapter against a fake `vllm` module.

Honest scope: this checks OUR mapping (parameters in, `Sample` objects out), not vLLM itself,
which cannot be installed on the development machine.
"""

import sys
import types
from types import SimpleNamespace

import pytest

from core.engine import sampling

pytestmark = pytest.mark.unit

EOS = 2


class FakeTokenizer:
    eos_token_id = EOS
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids if not (skip_special_tokens and i == EOS))


def fake_vllm(calls):
    mod = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            calls["init"] = kw

        def generate(self, requests, params, use_tqdm=True):
            calls["requests"], calls["params"] = requests, [p.kw for p in params]
            outs = []
            for r, p in zip(requests, params):
                comps = []
                for j in reversed(range(p.kw["n"])):  # out of order on purpose
                    if j == 0:  # stopped on EOS, EOS left out of token_ids
                        comps.append(SimpleNamespace(index=j, token_ids=[7, 8],
                                                     finish_reason="stop"))
                    elif j == 1:  # EOS present, followed by junk
                        comps.append(SimpleNamespace(index=j, token_ids=[5, EOS, 9],
                                                     finish_reason="stop"))
                    else:  # hit the length cap
                        comps.append(SimpleNamespace(index=j, token_ids=[4] * p.kw["max_tokens"],
                                                     finish_reason="length"))
                outs.append(SimpleNamespace(prompt_token_ids=r["prompt_token_ids"],
                                            outputs=comps))
            return outs

    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    return mod


def test_vllm_adapter_maps_parameters_and_outputs(monkeypatch):
    calls: dict = {}
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(calls))
    monkeypatch.setattr(sampling, "vllm_available", lambda: True)
    monkeypatch.setattr(sampling, "_LLM_CACHE", {})
    model = SimpleNamespace(name_or_path="/models/x")
    got = sampling.sample(model, FakeTokenizer(), [[1, 5], [1, 6, 6]], n=3, temperature=0.7,
                          top_p=0.9, max_new_tokens=4, seed=3, engine="vllm")
    assert calls["init"]["model"] == "/models/x"
    assert calls["requests"] == [{"prompt_token_ids": [1, 5]}, {"prompt_token_ids": [1, 6, 6]}]
    p0 = calls["params"][0]
    assert (p0["n"], p0["temperature"], p0["top_p"], p0["max_tokens"]) == (3, 0.7, 0.9, 4)
    assert p0["stop_token_ids"] == [EOS]
    assert p0["seed"] != calls["params"][1]["seed"]
    assert [(s.prompt_index, s.sample_index) for s in got] == [(i, j) for i in range(2)
                                                                 for j in range(3)]
    s0, s1, s2 = got[:3]
    assert (s0.response_ids, s0.finished, s0.text) == ([7, 8, EOS], True, "7 8")
    assert (s1.response_ids, s1.finished) == ([5, EOS], True)
    assert (s2.response_ids, s2.finished) == ([4, 4, 4, 4], False)
    assert all(s.prompt_ids == [1, 6, 6] for s in got[3:])


def test_greedy_maps_to_temperature_zero(monkeypatch):
    calls: dict = {}
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(calls))
    monkeypatch.setattr(sampling, "vllm_available", lambda: True)
    monkeypatch.setattr(sampling, "_LLM_CACHE", {})
    sampling.sample(SimpleNamespace(name_or_path="m"), FakeTokenizer(), [[1]], n=2,
                    max_new_tokens=3, greedy=True, engine="vllm")
    assert calls["params"][0]["temperature"] == 0.0


def test_engine_choice(monkeypatch):
    monkeypatch.setattr(sampling, "vllm_available", lambda: False)
    assert sampling.choose_engine("auto") == "transformers"
    with pytest.raises(RuntimeError, match="not installed"):
        sampling.choose_engine("vllm")
    with pytest.raises(ValueError):
        sampling.choose_engine("sglang")
