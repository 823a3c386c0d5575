"""Metric functions against scipy on random distributions, and their invariants."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from core.metrics import compute_metrics, rank_of
from core.metrics.kernels import js_from_logprobs, kl_from_logprobs
from core.metrics.nucleus import top_p_logprobs

pytestmark = pytest.mark.unit


def random_logits(n=64, v=50, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g, dtype=torch.float64) * scale,
            torch.randn(n, v, generator=g, dtype=torch.float64) * scale)


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0, 20.0])
def test_against_scipy(scale):
    lb, lt = random_logits(scale=scale, seed=int(scale * 10))
    tok = torch.randint(0, lb.shape[1], (lb.shape[0],), generator=torch.Generator().manual_seed(1))
    m = compute_metrics(lb, lt, tok, top_p=0.7)
    p = torch.softmax(lb, -1).numpy()
    q = torch.softmax(lt, -1).numpy()
    for i in range(len(p)):
        assert m["js"][i].item() == pytest.approx(jensenshannon(p[i], q[i]) ** 2, abs=1e-6)
        assert m["kl_bt"][i].item() == pytest.approx(entropy(p[i], q[i]), abs=1e-6)
        assert m["kl_tb"][i].item() == pytest.approx(entropy(q[i], p[i]), abs=1e-6)
        assert m["entropy_base"][i].item() == pytest.approx(entropy(p[i]), abs=1e-6)
        assert m["entropy_tuned"][i].item() == pytest.approx(entropy(q[i]), abs=1e-6)
        t = tok[i].item()
        assert m["logp_base"][i].item() == pytest.approx(math.log(p[i, t]), abs=1e-6)
        dlogp = math.log(q[i, t]) - math.log(p[i, t])
        assert m["dlogp"][i].item() == pytest.approx(dlogp, abs=1e-6)
        assert m["rank_base"][i].item() == 1 + int((p[i] > p[i, t]).sum())
        assert m["rank_tuned"][i].item() == 1 + int((q[i] > q[i, t]).sum())
        assert bool(m["top1_agree"][i]) == (p[i].argmax() == q[i].argmax())


def _nucleus(p, top_p):
    order = np.argsort(-p, kind="stable")
    keep, mass = [], 0.0
    for j in order:
        keep.append(j)
        mass += p[j]
        if mass >= top_p:
            break
    out = np.zeros_like(p)
    out[keep] = p[keep]
    return out / out.sum()


def test_js_top_p_matches_reference_truncation():
    lb, lt = random_logits(n=32, v=40, scale=2.0, seed=3)
    tok = torch.zeros(32, dtype=torch.long)
    m = compute_metrics(lb, lt, tok, top_p=0.7)
    for i in range(32):
        p = _nucleus(torch.softmax(lb[i], -1).numpy(), 0.7)
        q = _nucleus(torch.softmax(lt[i], -1).numpy(), 0.7)
        assert m["js_top_p"][i].item() == pytest.approx(jensenshannon(p, q) ** 2, abs=1e-6)


def test_top_p_keeps_argmax_and_sums_to_one():
    lb, _ = random_logits(n=16, v=30, scale=8.0, seed=4)
    lp = torch.log_softmax(lb, -1)
    for top_p in (0.01, 0.5, 0.7, 0.99, 1.0):
        t = top_p_logprobs(lp, top_p)
        assert torch.allclose(t.exp().sum(-1), torch.ones(16, dtype=torch.float64))
        assert (t.argmax(-1) == lp.argmax(-1)).all()
        kept_mass = torch.where(torch.isfinite(t), lp.exp(), torch.zeros_like(lp)).sum(-1)
        assert (kept_mass >= min(top_p, 1.0) - 1e-9).all()


def test_invariants():
    lb, lt = random_logits(n=200, v=100, scale=4.0, seed=5)
    lp, lq = torch.log_softmax(lb, -1), torch.log_softmax(lt, -1)
    js = js_from_logprobs(lp, lq)
    assert torch.allclose(js, js_from_logprobs(lq, lp), atol=1e-12)  # symmetric
    assert (js >= 0).all() and (js <= math.log(2) + 1e-12).all()
    assert torch.allclose(js_from_logprobs(lp, lp), torch.zeros(200, dtype=torch.float64),
                          atol=1e-12)
    assert (kl_from_logprobs(lp, lq) >= -1e-12).all()
    # disjoint supports reach the upper bound ln 2
    a = torch.full((1, 4), float("-inf"), dtype=torch.float64)
    a[0, 0] = 0.0
    b = torch.full((1, 4), float("-inf"), dtype=torch.float64)
    b[0, 3] = 0.0
    assert js_from_logprobs(a, b).item() == pytest.approx(math.log(2), abs=1e-12)


def test_rank_ties_count_strictly_greater():
    lp = torch.log(torch.tensor([[0.4, 0.3, 0.3]], dtype=torch.float64))
    assert rank_of(lp, torch.tensor([1])).item() == 2
    assert rank_of(lp, torch.tensor([2])).item() == 2
    assert rank_of(lp, torch.tensor([0])).item() == 1


@pytest.mark.parametrize("response,reference,ok", [
    (r"so the answer is \boxed{\frac{1}{2}}", "0.5", True),
    (r"\boxed{7}", "7", True),
    (r"\boxed{8}", "7", False),
    ("no answer at all", "3", False),
    (" 7+8=15. #### 15", "15", True),
])
def test_math_verifier(response, reference, ok):
    from core.inputs.verifiers import get

    assert get("math")(response, reference)[1] is ok


def test_exact_verifier_wants_the_canonical_integer():
    from core.inputs.verifiers import get

    assert get("exact")(" 5-9=-4. #### -4", "-4") == ("-4", True)
    assert get("exact")(" #### -04", "-4")[1] is False
    assert get("exact")(" 5-9=-4.", "-4") == (None, False)
