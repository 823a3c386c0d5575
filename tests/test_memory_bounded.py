"""Memory-bounded scoring: the sparse nucleus JS equals the dense one, chunked and
segmented scoring equals the unchunked full forward, and the cross-sampling decoder's
per-step math gives the same decodes in row chunks."""

from __future__ import annotations

import pytest
import torch

from core.metrics import js_from_logprobs, js_top_p, top_p_logprobs


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
