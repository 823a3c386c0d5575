"""Cross-sampling: the lockstep decoder, the control, sweeps, storage and the CLI.

Mock tests use `CachedBigram`: a bigram model (logits = W[last token]) that speaks the
decoder's cache protocol honestly. Its "KV cache" is the ids it has seen per row, and each
call checks what a real model relies on: the attention mask covers cache + new tokens,
padding is on the left only, and position ids count real tokens.
"""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import pytest
import torch

from core.cross_sampling import (
    Job,
    bootstrap_ci,
    control_positions,
    cross_decode,
    summarize,
    sweep,
)
from core.metrics import LN2, js_from_logprobs
from core.prompts import PromptRow

PAD, EOS, V = 0, 1, 12


class HistoryCache:
    """A bigram's KV cache: the ids seen so far per row, (B, L)."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def get_seq_length(self) -> int:
        return self.ids.shape[1]

    def batch_select_indices(self, rows: torch.Tensor) -> None:
        self.ids = self.ids[rows]


class CachedBigram(torch.nn.Module):
    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.W = torch.nn.Parameter(table.clone(), requires_grad=False)
        self.calls = 0

    def forward(self, input_ids, attention_mask, position_ids, past_key_values=None,
                use_cache=False, logits_to_keep=0):
        self.calls += 1
        past = past_key_values.ids if past_key_values is not None else input_ids[:, :0]
        seen = torch.cat([past, input_ids], 1)
        assert attention_mask.shape == seen.shape, "mask must cover cache + new tokens"
        m = attention_mask.long()
        assert torch.all(m[:, 1:] >= m[:, :-1]), "padding must be on the left only"
        n = input_ids.shape[1]
        want = (m.cumsum(-1) - 1)[:, -n:]
        real = m[:, -n:].bool()
        assert torch.equal(position_ids.expand_as(want)[real], want[real]), "position ids"
        assert not torch.any(seen[m.bool()] == PAD), "a pad token fed as a real token"
        return SimpleNamespace(logits=self.W[input_ids],
                               past_key_values=HistoryCache(seen) if use_cache else None)


def tables(seed: int = 0, shift_rows=(3,), eos_logit: float | None = -30.0):
    """Base and tuned bigram tables (V, V); tuned differs only in `shift_rows`."""
    g = torch.Generator().manual_seed(seed)
    wb = torch.randn(V, V, generator=g) * 2
    wt = wb.clone()
    for r in shift_rows:
        wt[r] = torch.randn(V, generator=g) * 4
    for w in (wb, wt):
        w[:, PAD] = -30.0  # never generate the pad
        if eos_logit is not None:
            w[:, EOS] = eos_logit
    return wb, wt


def mock_models(**kw):
    wb, wt = tables(**kw)
    return CachedBigram(wb), CachedBigram(wt)


def greedy_alone(table: torch.Tensor, prompt: list[int], n: int) -> list[int]:
    out, last = [], prompt[-1]
    for _ in range(n):
        last = int(table[last].argmax())
        out.append(last)
        if last == EOS:
            break
    return out


def decode(base, tuned, jobs, **kw):
    kw = dict(eos_id=EOS, pad_id=PAD, max_new_tokens=20, temperature=0.0, top_p=1.0) | kw
    return cross_decode(base, tuned, jobs, **kw)


PROMPTS = [[2, 5, 7], [4], [9, 3], [6, 6, 6, 2, 11]]


@pytest.mark.unit
@pytest.mark.parametrize("primary", ["base", "tuned"])
def test_eps_above_ln2_reproduces_the_primary(primary):
    base, tuned = mock_models(shift_rows=(3, 5, 8))
    table = (base if primary == "base" else tuned).W
    got = decode(base, tuned, [Job(p, primary, eps=LN2 + 0.01) for p in PROMPTS])
    for p, d in zip(PROMPTS, got):
        assert d.tokens == greedy_alone(table, p, 20)
        assert d.switched == []


@pytest.mark.unit
@pytest.mark.parametrize("primary", ["base", "tuned"])
def test_negative_eps_reproduces_the_intervention(primary):
    base, tuned = mock_models(shift_rows=(3, 5, 8))
    other = (tuned if primary == "base" else base).W
    got = decode(base, tuned, [Job(p, primary, eps=-0.01) for p in PROMPTS])
    for p, d in zip(PROMPTS, got):
        assert d.tokens == greedy_alone(other, p, 20)
        assert d.switched == list(range(len(d.tokens)))


@pytest.mark.unit
def test_switches_exactly_where_the_distributions_differ():
    base, tuned = mock_models(shift_rows=(3,))
    lp = torch.log_softmax(base.W, -1), torch.log_softmax(tuned.W, -1)
    assert js_from_logprobs(lp[0][3:4], lp[1][3:4]).item() > 1e-3  # row 3 really differs
    jobs = [Job(p, prim, eps=1e-4, seed=s) for s, p in enumerate(PROMPTS * 3)
            for prim in ("base", "tuned")]
    got = decode(base, tuned, jobs, temperature=1.0, max_new_tokens=60)
    hits = 0
    for d in got:
        seq = d.job.prompt_ids + d.tokens
        after3 = [t for t in range(len(d.tokens)) if seq[len(d.job.prompt_ids) + t - 1] == 3]
        assert d.switched == after3
        hits += len(after3)
    assert hits > 10  # the trajectories do visit token 3


@pytest.mark.unit
def test_random_control_switches_exactly_the_requested_number():
    base, tuned = mock_models()  # EOS logit -30: every row runs to the cap
    for seed, (n, length) in enumerate([(0, 10), (1, 10), (7, 30), (30, 30), (12, 50)]):
        pos = control_positions(n, length, seed)
        assert len(pos) == n and all(0 <= p < length for p in pos)
        assert pos == control_positions(n, length, seed)  # seeded
        jobs = [Job(p, prim, positions=pos, seed=seed) for p in PROMPTS
                for prim in ("base", "tuned")]
        for d in decode(base, tuned, jobs, temperature=1.0, max_new_tokens=length):
            assert d.switched == sorted(pos)


@pytest.mark.unit
def test_control_stops_short_only_when_the_sample_ends_first():
    base, tuned = mock_models()
    pos = frozenset({2, 5, 9})
    (d,) = decode(base, tuned, [Job([4], "base", positions=pos)], max_new_tokens=6)
    assert d.switched == [2, 5]  # step 9 is past the cap


@pytest.mark.unit
@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (1.0, 1.0), (1.0, 0.7)])
def test_batched_equals_unbatched(temperature, top_p):
    base, tuned = mock_models(shift_rows=(3, 5, 8), eos_logit=-3.0)  # EOS may happen
    for m in (base, tuned):
        m.W[7, EOS] = 20.0  # ... and always after token 7, so greedy rows finish too
    jobs = []
    for i, p in enumerate(PROMPTS):
        jobs += [Job(p, "base", 0.05, seed=i), Job(p, "tuned", 0.2, seed=i + 10),
                 Job(p, "base", math.inf, seed=i), Job(p, "tuned", -1.0, seed=3),
                 Job(p, "base", positions=frozenset({0, 4, 7}), seed=i)]
    kw = dict(temperature=temperature, top_p=top_p, max_new_tokens=30)
    together = decode(base, tuned, jobs, **kw)
    alone = [decode(base, tuned, [j], **kw)[0] for j in jobs]
    assert any(d.finished for d in together) and any(not d.finished for d in together)
    for a, b in zip(together, alone):
        assert (a.tokens, a.switched, a.finished) == (b.tokens, b.switched, b.finished)
    nocache = decode(base, tuned, jobs, use_cache=False, **kw)
    assert [d.tokens for d in nocache] == [d.tokens for d in together]


@pytest.mark.unit
def test_sampling_is_seeded_and_common_across_settings():
    base, tuned = mock_models(shift_rows=(3, 5, 8), eos_logit=0.0)
    jobs = [Job(p, "base", 0.1, seed=7) for p in PROMPTS]
    a = decode(base, tuned, jobs, temperature=1.0, top_p=0.7)
    b = decode(base, tuned, jobs, temperature=1.0, top_p=0.7)
    assert [d.tokens for d in a] == [d.tokens for d in b]
    # Common random numbers: forward at eps = inf is the base-alone sample.
    inf = decode(base, tuned, [Job(p, "base", math.inf, seed=7) for p in PROMPTS],
                 temperature=1.0)
    alone = decode(base, tuned, [Job(p, "base", seed=7) for p in PROMPTS], temperature=1.0)
    assert [d.tokens for d in inf] == [d.tokens for d in alone]


@pytest.mark.unit
def test_a_model_no_row_needs_is_never_run():
    base, tuned = mock_models()
    decode(base, tuned, [Job(p, "base") for p in PROMPTS])
    assert base.calls > 0 and tuned.calls == 0


@pytest.mark.unit
def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    for n in (3, 10, 40, 200):
        acc = (torch.rand(n, generator=g) < 0.3).double().numpy()
        est, lo, hi = bootstrap_ci(acc, n_boot=500, seed=4)
        assert est == pytest.approx(acc.mean())
        assert lo <= est <= hi and 0 <= lo and hi <= 1
        assert (est, lo, hi) == bootstrap_ci(acc, n_boot=500, seed=4)
    assert bootstrap_ci([1.0], seed=1) == (1.0, 1.0, 1.0)


class MockTokenizer:
    eos_token_id, pad_token_id, chat_template = EOS, PAD, None

    def __call__(self, text):
        return {"input_ids": [2 + (ord(c) % (V - 2)) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join("#" if i == 3 else str(i % 10) for i in ids if i not in (PAD, EOS))


def mock_pair(**kw):
    b, t = mock_models(**kw)
    return SimpleNamespace(base=SimpleNamespace(model=b), tuned=SimpleNamespace(model=t),
                           tokenizer=MockTokenizer())


ROWS = [PromptRow(f"p{i}", s, "7", verifier="exact") for i, s in enumerate(["ab", "q", "xyz"])]


@pytest.mark.unit
def test_sweep_rows_summary_control_and_endpoints():
    pair = mock_pair(shift_rows=(3, 5, 8))
    res = sweep(pair, ROWS, ["forward", "reverse"], [0.01, 0.3], control=True, samples=2,
                temperature=1.0, top_p=0.7, max_new_tokens=12, batch_size=5, n_boot=100)
    assert not res.cancelled and len(res.rows) == 3 * 2 * (2 * 2 * 2 + 2)
    df = res.frame()
    ctrl = df[df.control]
    assert (ctrl.n_switched == ctrl.n_requested).all()  # no EOS: every sample hits the cap
    cross = df[~df.control & df.direction.isin(["forward", "reverse"])]
    assert sorted(ctrl.n_requested) == sorted(cross.n_switched)
    ends = df[df.direction.isin(["base", "tuned"])]
    assert (ends.eps == math.inf).all() and (ends.n_switched == 0).all()
    assert set(res.summary.direction) == {"base", "tuned", "forward", "reverse"}
    assert len(res.summary) == 2 + 2 * 2 * 2
    assert (res.summary.ci_lo <= res.summary.accuracy).all()
    assert (res.summary.accuracy <= res.summary.ci_hi).all()
    again = sweep(pair, ROWS, ["forward", "reverse"], [0.01, 0.3], control=True, samples=2,
                  temperature=1.0, top_p=0.7, max_new_tokens=12, batch_size=16, n_boot=100)
    assert again.frame()[["tokens", "switched"]].equals(df[["tokens", "switched"]])
    assert again.summary.equals(res.summary)
    assert summarize(res.rows, 100, 0).equals(res.summary)


@pytest.mark.unit
def test_sweep_streams_progress_and_cancels_between_batches():
    pair = mock_pair()
    stop = threading.Event()
    seen = []

    def on_batch(p):
        seen.append((p.done, p.total, len(p.new_rows)))
        assert len(p.summary(n_boot=20)) >= 1
        stop.set()

    res = sweep(pair, ROWS, ["forward"], [0.1], samples=2, max_new_tokens=8, batch_size=2,
                on_batch=on_batch, cancel=stop)
    assert res.cancelled and seen == [(2, 3 * 2 * 4, 2)] and len(res.rows) == 2
    full = []
    sweep(pair, ROWS, ["forward"], [0.1], samples=2, max_new_tokens=8, batch_size=2,
          on_batch=lambda p: full.append(p.done), cancel=lambda: False)
    assert full[-1] == 3 * 2 * 4 and full == sorted(full)
