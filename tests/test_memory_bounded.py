"""Memory-bounded scoring: the sparse nucleus JS equals the dense one, chunked and
segmented scoring equals the unchunked full forward, and the cross-sampling decoder's
per-step math gives the same decodes in row chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.metrics.kernels import js_from_logprobs
from core.metrics.nucleus import js_top_p, top_p_logprobs


@pytest.mark.unit
@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0, 30.0])  # near-uniform .. very peaked
@pytest.mark.parametrize("top_p", [0.7, 0.95, 1.0])
def test_sparse_nucleus_js_equals_the_dense_one(scale, top_p):
    g = torch.Generator().manual_seed(int(scale * 10) + int(top_p * 100))
    lp = torch.log_softmax(torch.randn(40, 3000, generator=g, dtype=torch.float64) * scale, -1)
    lq = torch.log_softmax(lp + torch.randn(40, 3000, generator=g, dtype=torch.float64), -1)
    dense = js_from_logprobs(top_p_logprobs(lp, top_p), top_p_logprobs(lq, top_p))
    assert torch.allclose(js_top_p(lp, lq, top_p), dense, atol=1e-12, rtol=1e-10)
    assert torch.allclose(js_top_p(lp, lp, top_p), torch.zeros(40, dtype=torch.float64),
                          atol=1e-12)


@pytest.mark.model
def test_real_size_vocabulary_on_a_long_trace_stays_within_the_budget(tmp_path):
    """A pair with a 151,936-token vocabulary (hidden 16) scores a 2,400-token response:
    peak memory beyond the loaded models stays within the budget (plus a fixed allowance)
    and does not grow from a 64-token trace to the 2,400-token one; every column equals the
    unchunked full-forward computation on a prefix, and the segmented body (two segments)
    equals the unsegmented one around the segment boundary and at the end."""
    import json
    import subprocess
    import sys

    import numpy as np

    from core.metrics import compute_metrics, rank_of, topk
    from tests import bigvocab

    budget, length, mib = 128 * 1024**2, 2400, 1024**2
    out = subprocess.run([sys.executable, "-m", "tests.bigvocab", str(tmp_path), str(length),
                          str(budget)], capture_output=True, text=True, timeout=900,
                         cwd=bigvocab.__file__.rsplit("/tests/", 1)[0])
    assert out.returncode == 0, out.stderr[-3000:]
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    # the old path held (length x vocab) float32 logits per model: 1.5 GB each here
    assert rss["rss_peak"] - rss["rss_loaded"] <= budget + 192 * mib, rss
    assert rss["rss_peak"] - rss["rss_before"] <= 64 * mib, rss  # length does not count
    got = np.load(tmp_path / "scores.npz")
    assert got["js"].shape == (length,)

    base, tuned = bigvocab.load(tmp_path)
    prompt, resp = bigvocab.trace(length)
    n = 48
    ids = torch.tensor([prompt + resp[:n]])
    with torch.no_grad():
        lb = base(input_ids=ids).logits[0, len(prompt) - 1:-1].double()
        lt = tuned(input_ids=ids).logits[0, len(prompt) - 1:-1].double()
    tok = torch.tensor(resp[:n])
    ref = compute_metrics(lb, lt, tok, 0.7)
    for name, v in ref.items():
        a, b = got[name][:n], v.float().numpy()
        if a.dtype.kind == "f":
            assert np.allclose(a, b, atol=2e-5, rtol=1e-4), name
        else:
            assert (a == b).mean() >= 0.98, name  # ties may order differently
    b_ids, b_probs = topk(lb, 10)
    assert (got["base_topk_ids"][:n] == b_ids.numpy()).mean() > 0.99
    assert np.allclose(got["base_topk_probs"][:n], b_probs.numpy(), atol=1e-5)
    t1 = topk(lt, 1)[0][:, 0]
    logp_b = torch.log_softmax(lb, -1)
    assert (got["tuned_top1_rank_base"][:n] == rank_of(logp_b, t1).numpy()).mean() > 0.99

    full = torch.tensor([prompt + resp])  # unsegmented body, head on a few rows only
    with torch.no_grad():
        h = base.model(input_ids=full).last_hidden_state[0]
    for pos in (2030, 2040, 2047, 2048, 2060, length - 1):  # response positions
        logits = base.lm_head(h[len(prompt) - 1 + pos]).double()
        want = torch.log_softmax(logits, -1)[resp[pos]].item()
        assert abs(got["logp_base"][pos] - want) < 1e-4, pos


@pytest.mark.unit
def test_lockstep_decisions_in_row_chunks_equal_one_chunk():
    """cross_decode with a budget so small that every step's math runs one row at a time
    gives the same tokens, switches and js as with the whole batch at once."""
    from core.engine.lockstep import Job, cross_decode
    from tests.mockpair import mock_pair

    base, tuned = mock_pair(v=30, seed=3, shift_rows=(3, 5, 7))
    jobs = [Job([1 + i % 5], "base" if i % 2 else "tuned", eps=0.05, seed=i) for i in range(9)]
    kw = dict(eos_id=None, pad_id=0, max_new_tokens=12, temperature=1.0, top_p=0.9,
              use_cache=False)
    whole = cross_decode(base, tuned, jobs, memory_budget=1 << 40, **kw)
    rows = cross_decode(base, tuned, jobs, memory_budget=1, **kw)
    assert [d.tokens for d in whole] == [d.tokens for d in rows]
    assert [d.switched for d in whole] == [d.switched for d in rows]
    assert np.allclose([d.js for d in whole], [d.js for d in rows], equal_nan=True)
