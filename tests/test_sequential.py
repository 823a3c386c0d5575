"""Sequential (one model at a time) scoring: JS within its recorded bound of the exact JS."""

import numpy as np
import pytest
import torch

from core.engine.scoring import ScoreSettings, score_traces
from core.engine.sequential import bound_summary, js_tail_bound, score_traces_sequential
from tests.conftest import DEMO, HELDOUT
from tests.mockpair import mock_pair

TOL = 1e-6  # float rounding on top of the exact-arithmetic bound


def _traces(v, n=6, seed=1):
    g = np.random.default_rng(seed)
    return [(g.integers(1, v, size=g.integers(1, 6)).tolist(),
             g.integers(1, v, size=g.integers(1, 20)).tolist()) for _ in range(n)]


def _check(base, tuned, tr, ks, vocab):
    st = ScoreSettings(batch_size=4, top_k=2)
    exact = score_traces(base, tuned, tr, 0, st)
    prev = None
    for k in ks:
        seq = score_traces_sequential(lambda: base, lambda: tuned, tr, 0, st, k=k)
        err = exact["js"].astype(np.float64) - seq["js"].astype(np.float64)
        assert (err >= -TOL).all()  # the approximation never overshoots
        assert (err <= seq["js_bound"] + TOL).all()
        # exact columns
        np.testing.assert_allclose(seq["logp_base"], exact["logp_base"], atol=1e-5)
        np.testing.assert_allclose(seq["logp_tuned"], exact["logp_tuned"], atol=1e-5)
        np.testing.assert_array_equal(seq["rank_tuned"], exact["rank_tuned"])
        np.testing.assert_array_equal(seq["top1_agree"], exact["top1_agree"])
        np.testing.assert_array_equal(seq["base_topk_ids"], exact["base_topk_ids"])
        kk = max(k, st.top_k)  # the kept support is never smaller than the stored top-k
        kept = exact["rank_base"] <= kk
        np.testing.assert_array_equal(seq["rank_base"][kept], exact["rank_base"][kept])
        assert (seq["rank_base"][~kept] == kk + 1).all()
        if prev is not None:
            assert (seq["js_bound"] <= prev + 1e-12).all()
        prev = seq["js_bound"]
        assert bound_summary(seq)["js_bound_max"] == pytest.approx(float(prev.max()))
    full = score_traces_sequential(lambda: base, lambda: tuned, tr, 0, st, k=vocab)
    assert full["js_bound"].max() < 1e-7
    np.testing.assert_allclose(full["js"], exact["js"], atol=1e-6)
    for c in ("kl_tb", "kl_bt", "entropy_base", "rank_base", "tuned_top1_rank_base"):
        np.testing.assert_allclose(full[c], exact[c], atol=1e-5)
    return prev


@pytest.mark.unit
def test_mock_pair_within_bound():
    base, tuned = mock_pair(v=12, shift_rows=(1, 3, 5, 7))
    _check(base, tuned, _traces(12), ks=(1, 3, 5, 8), vocab=12)


@pytest.mark.unit
def test_bound_formula():
    a = torch.tensor([0.0, 0.1, 0.3, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, 0.2, 0.0, 0.5], dtype=torch.float64)
    got = js_tail_bound(a.log(), b.log())
    # (a + b) ln2 / 2 - f(a, b), f the JS summand
    def f(p, q):
        return sum(0.5 * x * np.log(2 * x / (p + q)) for x in (p, q) if x > 0)
    want = [(x + y) * np.log(2) / 2 - f(x, y) if x + y > 0 else 0.0 for x, y in zip(a, b)]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


@pytest.mark.model
def test_demo_pair_within_bound():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.engine.sampling import encode_prompts

    tok = AutoTokenizer.from_pretrained(DEMO / "base")
    base = AutoModelForCausalLM.from_pretrained(DEMO / "base").eval()
    tuned = AutoModelForCausalLM.from_pretrained(DEMO / "rl").eval()
    import json
    prompts = [json.loads(line)["prompt"] for line in open(HELDOUT)][:3]
    ids = encode_prompts(tok, prompts)
    g = np.random.default_rng(0)
    v = base.config.vocab_size
    tr = [(p, g.integers(3, v, size=12).tolist()) for p in ids]
    bound5 = _check(base, tuned, tr, ks=(3, 5), vocab=v)
    assert bound5.max() > 0  # small K really truncates on this pair


@pytest.mark.model
def test_precompute_sequential_mode_stays_within_its_recorded_bound(tmp_path):
    """The whole job in sequential mode (one model resident at a time, K=3 of a 25-token
    vocabulary): the traces are the same as in joint mode, and every position's js is below
    the exact js by no more than the bound the manifest records."""
    import json

    import pandas as pd

    from core.config import PrecomputeConfig
    from core.precompute.driver import precompute
    from tests.conftest import DEMO, HELDOUT

    common = dict(base=str(DEMO / "base"), tuned=str(DEMO / "rl"), prompts=str(HELDOUT),
                  cache=str(tmp_path), max_prompts=4, n=2, max_new_tokens=48, shard_size=2)
    quiet = dict(log=lambda s: None, show_progress=False)
    joint = precompute(PrecomputeConfig(name="joint", **common), **quiet)
    seq = precompute(PrecomputeConfig(name="seq", scoring="sequential", sequential_k=3,
                                      **common), **quiet)
    m = json.loads((seq / "manifest.json").read_text())["sequential"]
    assert m["k"] == 3 and 0 < m["js_bound_mean"] <= m["js_bound_max"]
    assert "js" in m["approximate_columns"]
    a = pd.read_parquet(joint / "tokens.parquet").sort_values(["trace_id", "pos"])
    b = pd.read_parquet(seq / "tokens.parquet").sort_values(["trace_id", "pos"])
    assert (a.token_id.to_numpy() == b.token_id.to_numpy()).all()  # same traces
    gap = a.js.to_numpy() - b.js.to_numpy()
    assert gap.min() >= -1e-5 and gap.max() <= m["js_bound_max"] + 1e-5
    assert gap.max() > 0  # K=3 really truncates: the approximation is not vacuous
    for col in ("logp_base", "logp_tuned", "entropy_tuned", "rank_tuned"):
        assert abs(a[col].to_numpy() - b[col].to_numpy()).max() < 1e-4, col
