"""The sort-free nucleus (top-p) search and the row-dot metric forms against plain references.

The reference nucleus is written out here independently of core.metrics: order a row by
probability (most likely first, equal probabilities by lower token id), keep a token while
the mass before it is below top_p. The search in core.metrics must give the same keep mask,
ties and one-token rows included, on its sparse path (nucleus inside the top-k), its
threshold path (large nuclei) and its fallback (a bracket that misses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.metrics import kernels as K
from core.metrics import nucleus as N
from core.metrics import registry as M

pytestmark = pytest.mark.unit

V = 3000  # above NUCLEUS_SORT_VOCAB: the sort-free search runs


def ref_keep(p: np.ndarray, top_p: float) -> np.ndarray:
    """(N, V) bool: the nucleus of each row by the rule, with a stable sort and a running sum."""
    keep = np.zeros(p.shape, dtype=bool)
    for i, row in enumerate(p):
        order = np.argsort(-row, kind="stable")  # ties: lower id first
        before = 0.0
        for j in order:
            if before >= top_p and keep[i].any():
                break
            keep[i, j] = True
            before += row[j]
    return keep


def rows_of(scale: float, n: int = 12, v: int = V, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, v, generator=g, dtype=torch.float64) * scale, -1)


def test_the_search_runs_above_the_sort_vocabulary():
    assert V > N.NUCLEUS_SORT_VOCAB


@pytest.mark.parametrize("scale", [0.05, 0.8, 1.5, 4.0, 30.0])  # near-uniform .. one token
@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.7, 0.95, 0.999])
def test_search_equals_the_sorted_rule(scale, top_p):
    p = rows_of(scale, seed=int(scale * 100) + int(top_p * 1000))
    got = N.nucleus(p, top_p).dense(p).numpy()
    np.testing.assert_array_equal(got, ref_keep(p.numpy(), top_p))
    np.testing.assert_array_equal(N._nucleus_sorted(p, top_p).numpy(), ref_keep(p.numpy(), top_p))


@pytest.mark.parametrize("top_p", [0.3, 0.7, 0.9])
def test_search_equals_the_sorted_rule_on_a_real_size_vocabulary(top_p):
    p = rows_of(0.8, n=3, v=151_936, seed=7)  # the random-init benchmark's shape
    np.testing.assert_array_equal(N.nucleus(p, top_p).dense(p).numpy(),
                                  ref_keep(p.numpy(), top_p))


def test_ties_keep_the_lowest_ids():
    # uniform rows of exactly 2**-12: the mass before the i-th token is i * 2**-12 exactly,
    # so the nucleus of 0.5 is exactly the 2048 lowest ids
    p = torch.full((2, 4096), 2.0 ** -12, dtype=torch.float64)
    keep = N.nucleus(p, 0.5).dense(p)
    assert keep.sum(-1).tolist() == [2048, 2048]
    assert keep[:, :2048].all() and not keep[:, 2048:].any()
    # a tie group that straddles the boundary among other values; exact dyadic masses
    g = np.random.default_rng(3)
    vals = np.array([2.0 ** -8, 2.0 ** -10, 2.0 ** -11, 2.0 ** -12])
    rows = []
    for _ in range(6):
        counts = g.multinomial(4000, [0.05, 0.15, 0.3, 0.5])
        row = np.repeat(vals, counts)
        row = np.concatenate([row, np.zeros(4096 - len(row))])
        g.shuffle(row)
        rows.append(row / row.sum())
    p = torch.tensor(np.array(rows))
    for top_p in (0.3, 0.5, 0.71, 0.9):
        np.testing.assert_array_equal(N.nucleus(p, top_p).dense(p).numpy(),
                                      ref_keep(p.numpy(), top_p))


def test_a_top_k_nucleus_that_ends_among_tied_tokens():
    """The nucleus ends inside the top-k but the token after it has the same probability:
    the tie group (partly outside the top-k) decides, lowest ids first."""
    p = torch.zeros(2, V, dtype=torch.float64)
    tied = torch.arange(5, V, 37)[:200]  # 200 tokens of 2**-9, spread over the ids
    p[:, tied] = 2.0 ** -9
    p[:, 1] = 1.0 - 200 * 2.0 ** -9  # one likely token holds the rest
    for top_p in (0.7, 0.75, 0.8):
        n = N.nucleus(p, top_p)
        assert n.ids is None and not n.masks  # neither sparse nor the fallback sort
        np.testing.assert_array_equal(n.dense(p).numpy(), ref_keep(p.numpy(), top_p))


@pytest.mark.parametrize("top_p", [0.0, 0.7, 1.0])
def test_one_token_holds_all_the_mass(top_p):
    p = torch.zeros(3, V, dtype=torch.float64)
    p[0, 17] = p[1, V - 1] = p[2, 0] = 1.0
    keep = N.nucleus(p, top_p).dense(p)
    assert keep.sum(-1).tolist() == [1, 1, 1]
    assert keep[0, 17] and keep[1, V - 1] and keep[2, 0]


def test_peaked_rows_take_the_sparse_path_and_flat_ones_the_threshold_path():
    peaked, flat = rows_of(30.0, n=4), rows_of(0.05, n=4)
    assert N.nucleus(peaked, 0.7).ids is not None
    n = N.nucleus(flat, 0.7)
    assert n.ids is None and not n.masks  # the search found every row without the fallback


def test_a_bracket_that_misses_falls_back_to_the_sort(monkeypatch):
    """With no safety margin the selection is often too narrow; results must not change."""
    monkeypatch.setattr(N, "SAMPLE_Z", 0.0)
    monkeypatch.setattr(N, "SAMPLE_STRIDE", 64)
    missed = 0
    for scale in (0.05, 0.8, 1.5):
        for top_p in (0.5, 0.7, 0.95):
            p = rows_of(scale, n=8, seed=int(scale * 10) + int(top_p * 100))
            n = N.nucleus(p, top_p)
            missed += len(n.masks or {})
            np.testing.assert_array_equal(n.dense(p).numpy(), ref_keep(p.numpy(), top_p))
    assert missed > 0  # the fallback did run


def test_top_p_logprobs_and_js_top_p_use_the_rule():
    lp = torch.log_softmax(torch.randn(6, V, dtype=torch.float64) * 0.7, -1)
    lq = torch.log_softmax(lp + torch.randn(6, V, dtype=torch.float64) * 0.3, -1)
    keep = ref_keep(lp.exp().numpy(), 0.7)
    t = N.top_p_logprobs(lp, 0.7)
    np.testing.assert_array_equal(torch.isfinite(t).numpy(), keep)
    ref = lp.masked_fill(~torch.tensor(keep), -math.inf)
    torch.testing.assert_close(t, ref - torch.logsumexp(ref, -1, keepdim=True))
    kq = torch.tensor(ref_keep(lq.exp().numpy(), 0.7))
    tq = lq.masked_fill(~kq, -math.inf)
    want = K.js_from_logprobs(t, tq - torch.logsumexp(tq, -1, keepdim=True))
    torch.testing.assert_close(N.js_top_p(lp, lq, 0.7), want, atol=1e-14, rtol=1e-12)


def reference_metrics(lb, lt, tok, top_p):
    """Every float metric by the plain where()-guarded formulas (the pre-speed-up forms)."""
    lp, lq = torch.log_softmax(lb.double(), -1), torch.log_softmax(lt.double(), -1)
    p, q = lp.exp(), lq.exp()
    zero = torch.zeros((), dtype=p.dtype)

    def xlogy_diff(a, la, lb_):
        return torch.where(a > 0, a * (la - lb_), zero).sum(-1)

    def truncated_js(nucleus):
        """JS of each model's own nucleus, renormalised; 0 * log 0 = 0 off the support."""
        kp = torch.tensor(ref_keep(p.numpy(), nucleus))
        kq = torch.tensor(ref_keep(q.numpy(), nucleus))
        tp, tq = lp.masked_fill(~kp, -math.inf), lq.masked_fill(~kq, -math.inf)
        tp = tp - torch.logsumexp(tp, -1, keepdim=True)
        tq = tq - torch.logsumexp(tq, -1, keepdim=True)
        pt, qt = tp.exp(), tq.exp()
        logmt = torch.log(pt + qt) - math.log(2)
        return 0.5 * xlogy_diff(pt, tp, logmt) + 0.5 * xlogy_diff(qt, tq, logmt)

    logm = torch.log(p + q) - math.log(2)
    return {
        "js": 0.5 * xlogy_diff(p, lp, logm) + 0.5 * xlogy_diff(q, lq, logm),
        "js_top_p": truncated_js(top_p),
        "js_top_p90": truncated_js(0.9), "js_top_p95": truncated_js(0.95),
        "kl_bt": xlogy_diff(p, lp, lq), "kl_tb": xlogy_diff(q, lq, lp),
        "entropy_base": -torch.where(p > 0, p * lp, zero).sum(-1),
        "entropy_tuned": -torch.where(q > 0, q * lq, zero).sum(-1),
        "logp_base": lp.gather(-1, tok[:, None])[:, 0],
        "rank_base": (lp > lp.gather(-1, tok[:, None])).sum(-1) + 1,
        "top1_agree": lp.argmax(-1) == lq.argmax(-1),
    }


@pytest.mark.parametrize("scale,shift", [(0.8, 0.3), (1.5, 0.3), (6.0, 0.5), (1.5, 1e-3)])
def test_context_metrics_equal_the_plain_formulas(scale, shift):
    """float32 logits, float64 math, a large vocabulary (the scoring engine's setting)."""
    g = torch.Generator().manual_seed(int(scale * 10))
    lb = torch.randn(5, 40_000, generator=g) * scale
    lt = lb + torch.randn(5, 40_000, generator=g) * shift
    tok = torch.randint(0, 40_000, (5,), generator=g)
    ctx = M.Context(lb, lt, tok, 0.7, torch.float64, top_k=10, scratch=K.Scratch())
    got = M.compute_metrics(lb, lt, tok, ctx=ctx)
    for name, want in reference_metrics(lb, lt, tok, 0.7).items():
        if want.is_floating_point():
            torch.testing.assert_close(got[name], want, atol=1e-13, rtol=1e-9, msg=name)
        else:
            assert torch.equal(got[name], want), name
    ids, probs = ctx.topk("base", 10)
    want = torch.softmax(lb.double(), -1).topk(10, -1)
    assert torch.equal(ids, want.indices)
    torch.testing.assert_close(probs, want.values, atol=1e-15, rtol=1e-12)


def test_masked_logits_use_the_guarded_forms():
    """-inf logits (a masked vocabulary) keep 0 * -inf out of every metric."""
    lb = torch.randn(4, 3000, dtype=torch.float64)
    lt = lb + 0.2 * torch.randn(4, 3000, dtype=torch.float64)
    lb[:, 2000:] = -math.inf
    lt[:, :500] = -math.inf
    tok = torch.tensor([1, 600, 1500, 1999])
    got = M.compute_metrics(lb, lt, tok, 0.7)
    for name, want in reference_metrics(lb, lt, tok, 0.7).items():
        if want.is_floating_point():
            torch.testing.assert_close(got[name], want, atol=1e-13, rtol=1e-9, msg=name)
        else:
            assert torch.equal(got[name], want), name


def test_scratch_reuses_its_buffers():
    s = K.Scratch()
    a = s.get("x", (4, 10), torch.float64, torch.device("cpu"))
    b = s.get("x", (3, 10), torch.float64, torch.device("cpu"))
    assert b.data_ptr() == a.data_ptr() and b.shape == (3, 10)
    c = s.get("x", (5, 10), torch.float64, torch.device("cpu"))  # larger: a new buffer
    assert c.shape == (5, 10)


def test_argmax_and_counts_break_ties_like_torch():
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    assert K._argmax(x).tolist() == x.argmax(-1).tolist() == [1, 0]
    assert K._count_above(x, torch.tensor([2.0, 5.0])).tolist() == [2, 0]
