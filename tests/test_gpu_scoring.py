"""GPU scoring path. The CUDA tests skip cleanly without a GPU (they have never run on the
development machine); the batch-size formula is tested everywhere."""

import numpy as np
import pytest
import torch

from core.engine.scoring import ScoreSettings, auto_batch_size, score_traces
from core.engine.sequential import score_traces_sequential
from tests.mockpair import mock_pair

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _traces(v=12, n=9, seed=2):
    g = np.random.default_rng(seed)
    return [(g.integers(1, v, size=3).tolist(), g.integers(1, v, size=15).tolist())
            for _ in range(n)]


@pytest.mark.unit
def test_auto_batch_size_formula():
    gib = 1024**3
    # 1.5B-class: vocab 151936, hidden 1536, 1024-token traces, 60 GiB free
    kv = 2 * 28 * 2 * 128 * 2  # Qwen2-1.5B: 28 layers, 2 KV heads of 128, bf16
    bs = auto_batch_size(60 * gib, 1024, 151_936, 1536, kv_per_token=kv, budget=4 * gib)
    per_token = kv + 80 * 1536
    assert bs == min(256, int(0.5 * (60 * gib - 4 * gib) // (1024 * per_token)))
    # logits exist one chunk at a time: the vocabulary no longer sizes the batch
    assert bs == auto_batch_size(60 * gib, 1024, 25, 1536, kv_per_token=kv, budget=4 * gib)
    assert auto_batch_size(0, 1024, 151_936, 1536) == 1
    assert auto_batch_size(10**15, 8, 25, 16) == 256
    assert auto_batch_size(80 * gib, 16_384, 151_936, 1536, kv_per_token=kv) > \
        auto_batch_size(40 * gib, 16_384, 151_936, 1536, kv_per_token=kv)


@pytest.mark.gpu
@cuda
def test_cuda_matches_cpu():
    base, tuned = mock_pair(shift_rows=(1, 3, 5))
    tr = _traces()
    ref = score_traces(base, tuned, tr, 0, ScoreSettings(batch_size=4))
    b2, t2 = mock_pair(shift_rows=(1, 3, 5))
    b2.cuda()
    t2.to("cuda:1" if torch.cuda.device_count() > 1 else "cuda:0")
    got = score_traces(b2, t2, tr, 0, ScoreSettings(batch_size=0))  # auto batch size
    for k in ("js", "kl_tb", "kl_bt", "logp_base", "entropy_tuned", "js_top_p"):
        np.testing.assert_allclose(got[k], ref[k], atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(got["top1_agree"], ref["top1_agree"])
    seq = score_traces_sequential(lambda: b2, lambda: t2, tr, 0, ScoreSettings(top_k=2), k=4)
    err = ref["js"] - seq["js"]
    assert (err >= -1e-4).all() and (err <= seq["js_bound"] + 1e-4).all()


@pytest.mark.gpu
@cuda
def test_cuda_bf16_llama_runs():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    tuned = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    out = score_traces(base, tuned, _traces(v=1000), 0, ScoreSettings(batch_size=0))
    assert np.isfinite(out["js"]).all() and (out["js"] >= 0).all()
    assert (out["js"] <= np.log(2) + 1e-6).all()
