"""The fused kernels against the plain float64 reference at vocabulary 151,936 over js
~5e-11..ln 2 (tests/f32cases.py): the numba CPU kernel in process, the Triton kernel under
Triton's interpreter (TRITON_INTERPRET=1 must be set before triton is imported, so in a
subprocess). Every exact metric within max(1e-4 x value, 1e-10); ranks, argmaxes and top-k
identical (top-k by value where bf16 rounding makes exact ties); the truncated JS columns of
fused_chunk within the target of the float64 Context, for peaked rows (nuclei inside the
top-K), near-uniform ones (nuclei of up to ~90% of the vocabulary, far beyond the top-K), ties
at the nucleus edge and masked logits; both kernels find every nucleus themselves (no row
goes to the Context; the Triton one under the interpreter too)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.metrics import registry as M
from core.metrics.fused import fused_chunk, metric_path
from tests.f32cases import EXACT, KINDS, case, graded, reference, worst

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


def _check(kind, lb, lt, tok, out) -> dict:
    ref = reference(lb, lt, tok)
    bad = {n: worst(out[n], ref[n]) for n in EXACT}
    assert max(bad.values()) <= 1.0, (kind, bad)
    for which, x in (("base", lb), ("tuned", lt)):
        rank = (x > x.gather(-1, tok[:, None])).sum(-1) + 1
        assert torch.equal(out[f"rank_{which}"].cpu(), rank), which
        vals, ids = x.topk(10, -1)
        got = out[f"{which}_topk_ids"].cpu()
        assert torch.equal(x.gather(-1, got), vals)  # same values, largest first
        if kind != "bf16":  # no exact ties: the same ids
            assert torch.equal(got, ids)
    assert torch.equal(out["top1_agree"].cpu(), lb.argmax(-1) == lt.argmax(-1))
    return bad


@pytest.mark.parametrize("kind", KINDS)
def test_numba_kernel_within_target(kind):
    lb, lt, tok = case(kind)
    _check(kind, lb, lt, tok, fused_chunk(lb, lt, tok, 0.7, 10, {}, "fused-numba"))


@pytest.mark.parametrize("std", [0.78, 6.0, 10.0])  # 10: every nucleus in the top-K lists
def test_truncated_columns_match_the_float64_context(std):
    lb, lt, tok = graded(std, 4)
    out = fused_chunk(lb, lt, tok, 0.7, 10, dict(M.TRUNCATED_JS))
    ref = M.compute_metrics(lb, lt, tok, ctx=M.Context(lb, lt, tok, 0.7, torch.float64, 10))
    for name in ("js_top_p", *M.TRUNCATED_JS):
        assert worst(out[name], ref[name]) <= 1.0, name


def _edge_cases():
    """Rows whose nuclei end in groups of equal logits (lower ids first decides which are
    kept), some larger than fused_nucleus.CAP, others small, and masked rows."""
    g = torch.Generator().manual_seed(5)
    v = 151_936
    lb = torch.zeros(6, v)  # row 0: uniform (every nucleus ends inside one tie group)
    lb[1, ::3] = 1.0  # two levels
    lb[2] = (torch.randn(v, generator=g) * 2).round()  # a few levels, large tie groups
    lb[3] = (torch.randn(v, generator=g) * 6).round() * 0.25 + 40.0  # peaked, small groups
    lb[4:] = torch.randn(2, v, generator=g) * 0.8 - 30.0
    lt = lb + (torch.randn(lb.shape, generator=g) * 0.6).round() * 0.5  # ties in tuned too
    m = torch.rand(2, v, generator=g) < 0.3
    lb[4:][m] = lt[4:][m] = -math.inf
    lb[4, 5] = -math.inf  # masked in one model only
    lt[5, 9] = -math.inf
    return lb, lt, torch.arange(6) * 7


def test_numba_nuclei_ties_and_masks_match_the_float64_context(monkeypatch):
    lb, lt, tok = _edge_cases()
    ref = M.compute_metrics(lb, lt, tok, ctx=M.Context(lb, lt, tok, 0.7, torch.float64, 10))

    def no_context(*a, **k):
        raise AssertionError("a row went to the reference Context")

    monkeypatch.setattr(M, "Context", no_context)
    out = fused_chunk(lb, lt, tok, 0.7, 10, dict(M.TRUNCATED_JS), "fused-numba")
    for name in ("js_top_p", *M.TRUNCATED_JS):
        assert worst(out[name], ref[name]) <= 1.0, (name, out[name], ref[name])
    assert float(ref["js_top_p95"].min()) > 1e-3  # the kept ids matter: a wrong tie shows


def test_numba_nucleus_keeps_the_lower_ids_of_a_tie():
    """Uniform base, tuned favouring high ids: a nucleus of the low ids gives a large
    truncated JS, one of the high ids a small one; top-p 0.5 keeps exactly half."""
    v = 151_936
    lb = torch.zeros(1, v)
    lt = torch.zeros(1, v)
    lt[0, v // 2:] = 0.01
    tok = torch.zeros(1, dtype=torch.long)
    out = fused_chunk(lb, lt, tok, 0.5, 10, {}, "fused-numba")
    ref = M.compute_metrics(lb, lt, tok, names=["js_top_p"],
                            ctx=M.Context(lb, lt, tok, 0.5, torch.float64, 10))
    assert float(ref["js_top_p"][0]) == pytest.approx(math.log(2.0), rel=1e-6)  # disjoint
    assert worst(out["js_top_p"], ref["js_top_p"]) <= 1.0


def test_metric_path_choice(monkeypatch):
    cpu = torch.device("cpu")
    assert metric_path(cpu, torch.float32) == "fused-numba"
    assert metric_path(cpu, torch.float64) == "torch"
    monkeypatch.setenv("SHIFTLENS_METRIC_PATH", "torch")
    assert metric_path(cpu, torch.float32) == "torch"


CHILD = """
import json, os, sys
os.environ["TRITON_INTERPRET"] = "1"
import torch
from core.metrics.fused import fused_chunk
from tests.f32cases import case
from tests.test_fused import _check
out = {}
for kind in sys.argv[1:]:
    lb, lt, tok = case(kind, n=4)
    out[kind] = _check(kind, lb, lt, tok, fused_chunk(lb, lt, tok, 0.7, 10, {}, "triton"))
print(json.dumps(out))
"""


def test_triton_kernel_under_the_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, *KINDS], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    worst_by_kind = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(worst_by_kind) == set(KINDS)
    assert max(max(v.values()) for v in worst_by_kind.values()) <= 1.0


TRUNC_CHILD = """
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from core.metrics import registry as M
from core.metrics.fused import fused_chunk
from tests.f32cases import worst
from tests.test_fused import _edge_cases, _near_uniform, _lower_ids
cases = {"edge": (*_edge_cases(), 0.7), "near-uniform": (*_near_uniform(), 0.7),
         "lower-ids": (*_lower_ids(), 0.5)}
refs = {k: M.compute_metrics(lb, lt, tok, ctx=M.Context(lb, lt, tok, tp, torch.float64, 10))
        for k, (lb, lt, tok, tp) in cases.items()}
def no_context(*a, **k):
    raise AssertionError("a row went to the reference Context")
M.Context = no_context
out = {}
for k, (lb, lt, tok, tp) in cases.items():
    got = fused_chunk(lb, lt, tok, tp, 10, dict(M.TRUNCATED_JS), "triton")
    out[k] = {n: float(worst(got[n], refs[k][n])) for n in ("js_top_p", *M.TRUNCATED_JS)}
print(json.dumps(out))
"""


def _near_uniform():
    """Two rows of a random init's near-uniform distributions: nuclei of ~40-90% of the
    vocabulary, far beyond the top-K lists."""
    g = torch.Generator().manual_seed(3)
    lb = torch.randn(2, 151_936, generator=g) * 0.78
    lt = lb + torch.tensor([[1e-3], [0.3]]) * torch.randn(lb.shape, generator=g)
    return lb, lt, torch.zeros(2, dtype=torch.long)


def _lower_ids():
    """A uniform base and a tuned model favouring the upper half (see the numba test)."""
    v = 151_936
    lb, lt = torch.zeros(1, v), torch.zeros(1, v)
    lt[0, v // 2:] = 0.01
    return lb, lt, torch.zeros(1, dtype=torch.long)


def test_triton_nuclei_under_the_interpreter():
    """The Triton path's truncated JS columns for rows whose nuclei end beyond the top-K
    lists (ties at the nucleus edge, masked logits, near-uniform rows, a tie that only the
    lower-ids rule decides), searched on the device: within the target of the float64
    Context, and no row handed to the Context."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", TRUNC_CHILD], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    worst_by_case = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(worst_by_case) == {"edge", "near-uniform", "lower-ids"}
    assert max(max(v.values()) for v in worst_by_case.values()) <= 1.0, worst_by_case


def _both_searches(x: torch.Tensor, tps=(0.7, 0.9, 0.95)):
    """(linear search's result or None when it declines, radix search's) on one row."""
    import numpy as np

    from core.metrics import fused_nucleus as N
    from core.metrics.fused_nucleus import key_hist

    a = x.numpy().astype(np.float32)
    mx = np.float32(a.max())
    w = np.exp(a - mx).astype(np.float32)
    s = float(w.astype(np.float64).sum())
    tp = np.asarray(tps, np.float64)
    hm = np.zeros(N.NL, np.float64)
    bins = np.empty(len(a), np.uint16)
    N.lbins(a, mx, bins)
    N.lhist(bins, w, hm)
    lin = [np.empty(len(tp), np.int64), np.empty(len(tp), np.int64), np.empty(len(tp))]
    ok = N.nuclei_linear(bins, a.view(np.int32), w, s, tp, hm, *lin)
    kc, km = np.zeros(N.NB1, np.int64), np.zeros(N.NB1, np.float64)
    key_hist(a.view(np.int32), w, kc, km)
    rad = [np.empty(len(tp), np.int64), np.empty(len(tp), np.int64), np.empty(len(tp))]
    N.nuclei(a.view(np.int32), w, s, tp, kc, km, *rad)
    return (lin if ok else None), rad


@pytest.mark.parametrize("row", ["near-uniform", "peaked", "bf16", "small-ties", "masked"])
def test_the_linear_nucleus_search_agrees_with_the_radix_search(row):
    """The first level on a linear scale below the maximum (fused_nucleus.nuclei_linear)
    finds the same last kept token and kept mass as the radix search on the keys, for
    every kind of row it accepts; rows of one logit it declines (the radix search runs)."""
    g = torch.Generator().manual_seed(11)
    v = 151_936
    x = {"near-uniform": lambda: torch.randn(v, generator=g) * 0.78,
         "peaked": lambda: torch.randn(v, generator=g) * 8,
         "bf16": lambda: (torch.randn(v, generator=g) * 1.5).bfloat16().float(),
         "small-ties": lambda: (torch.randn(v, generator=g) * 40).round() / 16,
         "masked": lambda: torch.where(torch.rand(v, generator=g) < 0.5, -math.inf,
                                       torch.randn(v, generator=g))}[row]()
    lin, rad = _both_searches(x)
    assert lin is not None, "declined a row it should search"
    for a, b in zip(lin, rad, strict=True):
        assert a.tolist() == b.tolist() if a.dtype.kind == "i" else a == pytest.approx(b)
    none, _ = _both_searches(torch.zeros(v))
    assert none is None  # one bin of 151,936 equal logits: the radix search's counting


def test_the_linear_search_serves_any_number_of_nuclei():
    """Four and five nuclei (two sharing a bin) give what the radix search gives."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(151_936, generator=g) * 0.78
    lin, rad = _both_searches(x, (0.5, 0.7, 0.9, 0.95, 0.95000001))
    for a, b in zip(lin, rad, strict=True):
        assert a.tolist() == b.tolist() if a.dtype.kind == "i" else a == pytest.approx(b)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 151_936 + 37])
def test_the_block_gather_finds_every_token_of_the_chosen_bins(n):
    """fused_nucleus._gather_bins tests 64-token blocks as a whole before walking them: it
    returns the ids of every token in the three chosen bins, in id order, wherever they
    lie (the first and last token of a block, a short last block) and counts past the
    capacity of its output without writing past it."""
    from core.metrics.fused_nucleus import _gather_bins

    rng = np.random.default_rng(n)
    bins = rng.integers(0, 8192, n).astype(np.uint16)
    want_bins = (5, 77, 8191)
    for i in {0, n - 1, 63 % n, 64 % n, (n // 64) * 64 % n}:  # block edges, the tail
        bins[i] = want_bins[i % 3]
    want = np.flatnonzero(np.isin(bins, want_bins))
    gi = np.full(len(want) + 3, -1, np.int64)
    assert _gather_bins(bins, *want_bins, gi) == len(want)
    assert gi[:len(want)].tolist() == want.tolist() and (gi[len(want):] == -1).all()
    small = np.full(2, -1, np.int64)
    assert _gather_bins(bins, *want_bins, small) == len(want)
    assert small.tolist() == (want[:2].tolist() + [-1, -1])[:2]


def test_nan_logits_stay_inside_the_kernels_histograms():
    """A NaN logit (a broken checkpoint) lands in an end bin of the linear histogram: before,
    its bin index came from int(NaN), a write far outside the histogram."""
    import numpy as np

    from core.metrics import fused_nucleus as N

    x = np.array([1.0, np.nan, 0.5, -np.inf, 3.0], np.float32)
    bins = [N.lbin(np.float32(v), np.float32(1.0)) for v in x]
    assert all(0 <= b < N.NL for b in bins), bins
    binned = np.empty(5, np.uint16)
    N.lbins(x, np.float32(1.0), binned)
    assert binned.tolist() == bins
    hm = np.zeros(N.NL, np.float64)
    N.lhist(binned, np.ones(5, np.float32), hm)
    assert hm.sum() == 5


def test_a_peaked_rows_nuclei_come_from_its_top_k_list():
    """nuclei_topk gives the radix search's nuclei for a peaked row, and declines when a
    nucleus would end past the list or inside a tie that runs to the list's edge."""
    import numpy as np

    from core.metrics import fused_nucleus as N

    g = torch.Generator().manual_seed(13)
    for x, expect in ((torch.randn(151_936, generator=g) * 8, True),
                      (torch.randn(151_936, generator=g) * 0.78, False),
                      (torch.zeros(151_936), False)):
        a = x.numpy().astype(np.float32)
        w = np.exp(a - a.max()).astype(np.float32)
        s = float(w.astype(np.float64).sum())
        order = np.lexsort((np.arange(len(a)), -a))[:64]  # largest first, lower id first
        tps = np.asarray([0.7, 0.9, 0.95])
        top = [np.empty(3, np.int64), np.empty(3, np.int64), np.empty(3)]
        ok = N.nuclei_topk(order.astype(np.int64), a[order], a.view(np.int32), w, s, tps, *top)
        assert ok is expect
        if ok:
            _, rad = _both_searches(x)
            for p, q in zip(top, rad, strict=True):
                assert p.tolist() == q.tolist() if p.dtype.kind == "i" else p == pytest.approx(q)


@pytest.mark.parametrize("std", [0.78, 6.0, 10.0])
def test_more_than_three_nuclei_in_the_kernel(std):
    """Five truncated JS columns: the first three ride on the kernel's JS/KL pass, the
    other two on a further pass; each matches the float64 Context at its top-p."""
    g = torch.Generator().manual_seed(14)
    lb = torch.randn(3, 151_936, generator=g) * std
    lt = lb + torch.logspace(-3, 0, 3)[:, None] * torch.randn(lb.shape, generator=g)
    tok = torch.zeros(3, dtype=torch.long)
    extra = {"p50": 0.5, "p80": 0.8, "p90": 0.9, "p95": 0.95}
    out = fused_chunk(lb, lt, tok, 0.7, 10, extra, "fused-numba")
    ctx = M.Context(lb, lt, tok, 0.7, torch.float64, 10)
    for name, tp in {"js_top_p": 0.7, **extra}.items():
        assert worst(out[name], ctx.js_at(tp)) <= 1.0, name


@pytest.mark.parametrize("seed", range(4))
def test_truncated_js_from_the_top_k_lists_is_pass_3s_sum(seed):
    """When both models' nuclei lie in their top-K lists the kernel sums the truncated JS
    over those lists (fused_trunc.trunc_topk) instead of in pass 3: the same terms, so the
    same float32 terms (up to the last bits of a division: the vectorised pass may use
    a reciprocal, fastmath arcp), summed in another order; with tokens kept by both models,
    by one, and ties. Far inside the columns' target (1e-4 relative)."""
    import numpy as np

    from core.metrics import fused_nucleus as N
    from core.metrics import fused_terms as T
    from core.metrics.fused_trunc import trunc_params, trunc_topk

    g = torch.Generator().manual_seed(40 + seed)
    v, k = 151_936, 64
    xb = (torch.randn(v, generator=g) * 10).numpy().astype(np.float32)
    xt = (xb + torch.randn(v, generator=g).numpy() * (0.5 + seed)).astype(np.float32)
    if seed == 3:  # a tie at the top of both lists (kept lowest id first)
        top = np.argsort(-xb)[:2]
        xb[top[1]] = xb[top[0]]
        xt[top] = xt.max() + 1.0
    tps = np.asarray([0.7, 0.9, 0.95])
    side = []
    for x in (xb, xt):
        w = np.exp(x - x.max()).astype(np.float32)
        order = np.lexsort((np.arange(v), -x))[:k].astype(np.int64)
        got = [np.empty(3, np.int64), np.empty(3, np.int64), np.empty(3)]
        s = float(w.astype(np.float64).sum())
        assert N.nuclei_topk(order, x[order], x.view(np.int32), w, s, tps, *got)
        side.append((w, order, got, s))
    (wb, ob, (_, lb_, kb), sb), (wt, ot, (_, lt_, kt), st) = side
    prm = trunc_params(xb, xt, float(xb.max()) - float(xt.max()), lb_, kb, lt_, kt, 0)
    listed = trunc_topk(xb, xt, wb, wt, ob, ot, *prm)
    full = T._terms(xb, xt, wb, wt, np.float32(1 / sb), np.float32(1 / st), 0.0, 0.0, 0.0,
                    1.0, 1.0, np.float32(1.0), np.float32(1.0), 3, *prm)[11:]
    assert max(listed) > 0  # (a nucleus of one shared token has truncated JS 0)
    assert np.allclose(listed, full, rtol=1e-6, atol=0), (listed, full)
