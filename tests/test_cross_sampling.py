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

from core.experiments.cross_sampling import (
    Job,
    bootstrap_ci,
    control_positions,
    cross_decode,
    summarize,
    sweep,
)
from core.inputs.prompts import PromptRow
from core.metrics.kernels import LN2, js_from_logprobs

PAD, EOS, V = 0, 1, 12


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on one thread: with two threads on a busy 2-core machine, OpenMP
    contention made each step of a 32-wide model take ~0.1 s instead of ~1 ms."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    res = sweep(pair, ROWS, ["forward", "reverse"], [0.01, 0.3], control="random", samples=2,
                match="decisions", temperature=1.0, top_p=0.7, max_new_tokens=12, batch_size=5,
                n_boot=100)
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
    again = sweep(pair, ROWS, ["forward", "reverse"], [0.01, 0.3], control="random", samples=2,
                  match="decisions", temperature=1.0, top_p=0.7, max_new_tokens=12,
                  batch_size=16, n_boot=100)
    assert again.frame()[["tokens", "switched"]].equals(df[["tokens", "switched"]])
    assert again.summary.equals(res.summary)
    assert summarize(res.rows, 100, 0, "decisions").equals(res.summary)


@pytest.mark.unit
def test_sweep_streams_progress_and_cancels_between_batches():
    pair = mock_pair()
    stop = threading.Event()
    seen = []

    def on_batch(p):
        seen.append((p.done, p.total, len(p.new_rows)))
        assert len(p.summary(n_boot=20)) >= 1
        stop.set()

    res = sweep(pair, ROWS, ["forward"], [0.1], "random", samples=2, max_new_tokens=8,
                batch_size=2, on_batch=on_batch, cancel=stop)
    assert res.cancelled and seen == [(2, 3 * 2 * 4, 2)] and len(res.rows) == 2
    full = []
    sweep(pair, ROWS, ["forward"], [0.1], "random", samples=2, max_new_tokens=8, batch_size=2,
          on_batch=lambda p: full.append(p.done), cancel=lambda: False)
    assert full[-1] == 3 * 2 * 4 and full == sorted(full)


# --- Real (tiny, random) Llama models -------------------------------------------------------

def tiny_llama_pair(layers: int):
    from core.demo.model import build_model
    from core.demo.tokenizer import build_tokenizer

    tok = build_tokenizer()
    models = []
    for seed in (1, 2):
        m = build_model(tok, hidden=32, layers=layers, heads=2, seed=seed).eval()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # a fresh init just repeats one token; this one varies
            for name, p in m.named_parameters():
                if "norm" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 3)
                elif p.dim() == 2:
                    p.mul_(4)
        models.append(m)
    return tok, *models


@torch.no_grad()
def reference_decode(base, tuned, prompt, primary, eps, n, eos, top_p):
    """Independent greedy reference: one row, no padding, no cache, whole prefix each step."""
    from core.metrics.nucleus import top_p_logprobs

    seq, out, switched, js = list(prompt), [], [], []
    for step in range(n):
        ids = torch.tensor([seq])
        logits = {k: m(input_ids=ids).logits[0, -1].float() for k, m in
                  (("base", base), ("tuned", tuned))}
        lp = {k: top_p_logprobs(torch.log_softmax(v, -1)[None], top_p) for k, v in logits.items()}
        src = primary
        js.append(js_from_logprobs(lp["base"], lp["tuned"]).item())
        if js[-1] > eps:
            src = "tuned" if primary == "base" else "base"
            switched.append(step)
        t = int(logits[src].argmax())
        out.append(t)
        seq.append(t)
        if t == eos:
            break
    return out, switched, js


@pytest.mark.model
@pytest.mark.parametrize("layers", [1, 2])
def test_kv_cached_lockstep_equals_full_prefix_reference(layers):
    tok, base, tuned = tiny_llama_pair(layers)
    texts = ["Q: 1+2=? A:", "Q: 12-7+30=? A:", "Q: 5=? A:", "Q: 99-1+4-3=? A:"]
    prompts = [tok(p)["input_ids"] for p in texts]  # different lengths: real left padding
    n = 24
    for top_p in (1.0, 0.7):
        # Probe (never switching): eps = the median js, so about half the steps switch; and an
        # "EOS" the models do emit, so rows finish at different steps and the caches shrink.
        probe = cross_decode(base, tuned, [Job(p, "base", eps=1.0) for p in prompts],
                             eos_id=None, pad_id=tok.pad_token_id, max_new_tokens=n,
                             temperature=0, top_p=top_p)
        # eps between two observed values, at the widest gap near the median: an eps equal
        # to an observed js would make that step's decision a tie that float noise between
        # the cached and the full-prefix logits may break either way
        vals = sorted(v for d in probe for v in d.js)
        k = len(vals) // 2
        lo, hi = max(((vals[i], vals[i + 1]) for i in range(max(k - 8, 0), k + 8)),
                     key=lambda ab: ab[1] - ab[0])
        eps = (lo + hi) / 2
        eos = max(range(len(tok)), key=lambda t: sum(d.tokens[1:].count(t) for d in probe))
        jobs = [Job(p, prim, eps) for p in prompts for prim in ("base", "tuned")]
        got = cross_decode(base, tuned, jobs, eos_id=eos, pad_id=tok.pad_token_id,
                           max_new_tokens=n, temperature=0, top_p=top_p)
        n_sw = sum(len(d.switched) for d in got)
        assert 0 < n_sw < sum(len(d.tokens) for d in got)  # some steps switch, not all
        assert any(d.finished for d in got) and len({len(d.tokens) for d in got}) > 1
        for d in got:
            tokens, switched, js = reference_decode(base, tuned, d.job.prompt_ids,
                                                    d.job.primary, eps, n, eos, top_p)
            assert (d.tokens, d.switched) == (tokens, switched)
            assert d.js == pytest.approx(js, abs=1e-5)  # every step's distributions agree


# --- The job on a run folder and the CLI ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tiny_pair, tmp_path_factory):
    from core.config import PrecomputeConfig
    from core.precompute.driver import precompute

    cache = tmp_path_factory.mktemp("cross_cache")
    cfg = PrecomputeConfig(base=str(tiny_pair["base"]), tuned=str(tiny_pair["tuned"]),
                           prompts=str(tiny_pair["prompts"]), cache=str(cache), name="tiny",
                           max_prompts=3, n=1, max_new_tokens=16)
    return precompute(cfg, log=lambda s: None, show_progress=False)


@pytest.mark.model
def test_cli_cross_sample_smoke(tiny_run, capsys):
    import json

    import duckdb
    import pyarrow.parquet as pq

    from core.cli.main import main
    from core.experiments.cross_sampling import get_sweep

    rc = main(["cross-sample", "tiny", "--cache", str(tiny_run.parent), "--direction",
               "forward,reverse", "--eps", "0.001,0.01", "--control", "random", "--prompts", "2",
               "--samples", "2", "--bootstrap", "50", "--batch-size", "8", "--match",
               "decisions", "--target-budget", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "accuracy %" in out and "forward" in out and "random" in out
    info = get_sweep(tiny_run)
    samples, summary = info.samples, info.summary
    con = duckdb.connect()

    def one(sql):
        return con.execute(sql).fetchall()[0][0]

    n = one(f"SELECT count(*) FROM '{samples}'")
    assert n == 2 * 2 * (2 * 2 * 2 + 2)
    groups = con.execute(f"SELECT direction, eps, control, n FROM '{summary}'").fetchall()
    assert len(groups) == 2 + 2 * 2 * 2 and all(g[3] == 4 for g in groups)
    bad = one(f"SELECT count(*) FROM '{samples}' WHERE control AND n_tokens >= 16 "
              "AND n_switched <> n_requested")
    assert bad == 0
    meta = json.loads(pq.read_schema(summary).metadata[b"shiftlens.manifest"])
    assert meta["run_manifest"]["name"] == "tiny"
    assert meta["cross_sample_config"]["config"]["eps"] == "0.001,0.01"
    assert meta["packages"]["torch"]
    # A run folder path works as well as a name; a missing run is a clear error.
    assert main(["cross-sample", str(tiny_run), "--prompts", "1", "--eps", "0.1",
                 "--direction", "reverse", "--control", "none", "--no-endpoints",
                 "--target-budget", "0"]) == 0
    assert one(f"SELECT count(*) FROM '{get_sweep(tiny_run).samples}'") == 1
    assert main(["cross-sample", "nope", "--cache", str(tiny_run.parent)]) == 2
    assert "no complete run" in capsys.readouterr().err


@pytest.mark.model
def test_cancelled_job_writes_nothing(tiny_run):
    from core.experiments.cross_sampling import CrossSampleConfig, run_cross_sample

    def files():
        return {f: f.stat().st_mtime_ns for f in tiny_run.rglob("*") if f.is_file()}

    before = files()
    res, written = run_cross_sample(
        CrossSampleConfig(run="tiny", cache=str(tiny_run.parent), prompts=1, eps="0.1"),
        log=lambda s: None, show_progress=False, cancel=lambda: True)
    assert res.cancelled and written is None and res.rows == []
    assert files() == before


@pytest.mark.unit
def test_help_explains_every_option(capsys):
    import dataclasses

    from core.cli.main import build_parser
    from core.experiments.cross_sampling import CrossSampleConfig

    with pytest.raises(SystemExit):
        build_parser().parse_args(["cross-sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(CrossSampleConfig):
        assert f.metadata["help"]
        flag = f.name if f.name == "run" else "--" + f.name.replace("_", "-")
        assert flag in text and " ".join(f.metadata["help"].split())[:30] in text
