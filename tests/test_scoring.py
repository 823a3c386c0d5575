"""Teacher-forced scoring on a mock pair whose next-token distributions are known exactly."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from core.engine.scoring import ScoreSettings, score_traces
from tests.mockpair import mock_pair

pytestmark = pytest.mark.unit


def traces(v=12, n=7, seed=1):
    g = np.random.default_rng(seed)
    return [(g.integers(1, v, size=g.integers(1, 6)).tolist(),
             g.integers(1, v, size=g.integers(1, 20)).tolist()) for _ in range(n)]


def test_every_position_matches_the_table():
    base, tuned = mock_pair(shift_rows=(3, 5))
    tr = traces()
    out = score_traces(base, tuned, tr, pad_id=0, settings=ScoreSettings(batch_size=3, top_k=4))
    p_all = torch.softmax(base.W.double(), -1).numpy()
    q_all = torch.softmax(tuned.W.double(), -1).numpy()
    row = 0
    for prompt, resp in tr:
        seq = prompt + resp
        for j, tok in enumerate(resp):
            prev = seq[len(prompt) + j - 1]  # the token whose logits predict `tok`
            p, q = p_all[prev], q_all[prev]
            assert out["js"][row] == pytest.approx(jensenshannon(p, q) ** 2, abs=1e-6)
            assert out["logp_base"][row] == pytest.approx(np.log(p[tok]), abs=1e-5)
            assert out["rank_tuned"][row] == 1 + (q > q[tok]).sum()
            assert out["token_id"][row] == tok
            assert list(out["base_topk_ids"][row]) == list(np.argsort(-p, kind="stable")[:4])
            assert out["tuned_top1_prob_base"][row] == pytest.approx(p[q.argmax()], abs=1e-6)
            # divergence sits exactly after the shifted rows
            assert (out["js"][row] > 1e-6) == (prev in (3, 5))
            row += 1
    assert row == len(out["js"]) == out["offsets"][-1]


def test_identical_models_give_zero_divergence():
    base, tuned = mock_pair(same=True)
    out = score_traces(base, tuned, traces(), pad_id=0)
    assert np.abs(out["js"]).max() < 1e-7
    assert np.abs(out["dlogp"]).max() < 1e-6
    assert out["top1_agree"].all()


def test_batch_size_and_chunking_do_not_change_results():
    base, tuned = mock_pair(shift_rows=(1, 2, 3))
    tr = traces(n=11)
    a = score_traces(base, tuned, tr, 0, ScoreSettings(batch_size=1, chunk_rows=3))
    b = score_traces(base, tuned, tr, 0, ScoreSettings(batch_size=8, chunk_rows=4096))
    for k in ("js", "kl_tb", "rank_base", "base_topk_ids", "tuned_top1_rank_base"):
        np.testing.assert_allclose(a[k], b[k], atol=1e-6)
