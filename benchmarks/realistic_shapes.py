"""Scoring at real shapes: a random Qwen2-shaped pair (vocabulary 151,936, hidden 1,536,
2 layers, tied embeddings) scores one trace of each length, and each length runs in its own
process so its peak memory is its own.

    python benchmarks/realistic_shapes.py [--lengths 512,2048,8192,16384]
                                          [--budget-mib 0] [--head-std 0] [--floor-max 8192]
                                          [--math-dtypes float64,float32] [--device cpu]
                                          [--layers 2] [--model-dtype float32]
                                          [--peak-tflops 989] [--threads 0] [--repeat 1]
                                          [--rounds 1] [--interleave 0]

--math-dtypes: comma list of --math-dtype values, each scored in its own child (float32 on
CPU = the fused numba kernel, float64/auto = the torch Context); the floor is shared. The
default puts the float64 reference path and the fused float32 path side by side: per length
one floor child, then each path's child, and a "vs first" column (scoring time / the first
path's). The load average is printed before and after: on a shared machine only ratios
measured in one run mean anything.
--device cuda --layers 28 --model-dtype bfloat16 is the Qwen2.5-1.5B-shaped pair at full
depth that benchmarks/gpu_check.sh runs; on CUDA peak memory is torch.cuda's peak allocated
beyond the weights and a "roofline" column gives the share of the bf16 forward-pass roofline
(2 x parameters x tokens FLOPs per model, both models, at --peak-tflops) that scoring reached.

--threads N runs every child with N CPU threads (torch's and numba's; 0 = their defaults). On
a loaded shared machine one thread keeps the OpenMP threads of each path from waiting on
each other's time slices, which inflates both paths' times by different factors. --repeat N
times each child's run N times in its process and keeps the best. Each scoring child first
scores a 16-token trace, so one-off costs (loading or compiling the numba kernel, the
head/body split check) are not timed; the floor child first runs both models on 24 tokens
(before, its one-off costs were timed, which flattered the scoring at 512 tokens).
--rounds N runs each length's floor child and path children N times in turn (floor, paths,
floor, paths, ...), a line per round: on a machine whose speed drifts by 20% from one
minute to the next (this 2-core VM's did), one round's ratio is not a figure; quote the
median and the range of the rounds.
--interleave N runs one child per length that times the floor and each path in turn N times
(floor, paths, floor, paths, ... seconds apart, in one process) and prints a line per pair,
then each path's median overhead, its range and its overhead on the best times. Drift
between child processes then moves the floor and the scoring alike; it prints no peak (the
floor's logits would be in the same process's peak): take the peak from a normal run.

Per length it prints:
  peak     peak RSS of the scoring beyond the loaded weights (ru_maxrss - RSS after load)
  tok/s    scored response tokens per second (both models, every metric, top-k)
  floor    both models' bare forward passes to full logits, the same tokens (only at
           lengths up to --floor-max, where (length x vocab) logits fit in memory)
  overhead scoring time / floor time - 1
Targets (issue 24): peak beyond weights <= 1 GiB at every length; overhead <= 10% at 512,
2,048 and 8,192 tokens (issue 12's were 2 GiB and 25%).

`--head-std S` re-initialises both output heads with standard deviation S: a random init
gives near-uniform next-token distributions (the nucleus of js_top_p then spans about 40% of
the vocabulary, the slowest case of core.metrics' nucleus search), trained models are
peaked; S = 1.5 gives more peaked ones (a nucleus of about 16% of the vocabulary), a trained
model's are mostly far narrower still. The default (0) keeps the random init.
benchmarks/metric_math.py breaks the metric math's share down by part.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

VOCAB = 151_936


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _now_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def build(seed: int, head_std: float, layers: int = 2, device: str = "cpu",
          dtype: str = "float32"):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=1536, intermediate_size=8960,
                      num_hidden_layers=layers, num_attention_heads=12, num_key_value_heads=2,
                      max_position_embeddings=32_768, tie_word_embeddings=True)
    torch.manual_seed(seed)
    with torch.device(device):  # initialised where it runs: a 1.5B pair on CPU takes minutes
        model = Qwen2ForCausalLM(cfg).eval().to(dtype=getattr(torch, dtype))
    if head_std:
        with torch.no_grad():  # tied: this is also the input embedding
            model.lm_head.weight.normal_(0.0, head_std / 1536 ** 0.5)
    return model


def trace(length: int) -> tuple[list[int], list[int]]:
    """The benchmark's trace: a 64-token prompt and a `length`-token response of random ids
    (seed 0; benchmarks/scoring_phases.py scores the same one)."""
    import torch

    g = torch.Generator().manual_seed(0)
    return (torch.randint(3, VOCAB, (64,), generator=g).tolist(),
            torch.randint(3, VOCAB, (length,), generator=g).tolist())


def _setup(length: int, budget: int, head_std: float, a=None):
    """The pair and one trace of `length` tokens: (params, go, warm, cuda). go(mode) runs the
    floor (mode "floor") or the scoring with that --math-dtype once; warm(mode) runs it on a
    short trace."""
    import torch

    from core.engine.scoring import ScoreSettings, score_traces

    dev = getattr(a, "device", "cpu")
    kw = dict(layers=getattr(a, "layers", 2), device=dev, dtype=getattr(a, "model_dtype",
                                                                        "float32"))
    base, tuned = build(1, head_std, **kw), build(2, head_std, **kw)
    params = sum(p.numel() for p in base.parameters())
    prompt, resp = trace(length)
    cuda = dev == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def go(mode: str, p=prompt, r=resp):
        if mode == "floor":
            ids = torch.tensor([p + r], device=dev)
            with torch.no_grad():
                for m in (base, tuned):
                    logits = m(input_ids=ids, use_cache=False).logits
                    del logits
        else:
            score_traces(base, tuned, [(p, r)], 0,
                         ScoreSettings(batch_size=1, memory_budget=budget, math_dtype=mode))
        sync()

    def warm(mode: str):
        """One-off costs out of the timing: for a scoring mode loading (or compiling) the
        numba kernel and the head/body split check on a 16-token trace (no memory peak);
        for the floor, thread pools and first kernels on 24 tokens (before, its one-off
        costs were timed, which flattered the scoring at 512 tokens)."""
        go(mode, prompt[:8], resp[:16])

    return params, go, warm, cuda


def child(mode: str, length: int, budget: int, head_std: float, a=None) -> dict:
    import torch

    params, go, warm, cuda = _setup(length, budget, head_std, a)
    if cuda:  # warm-up (kernels, Triton compilation), then peak memory from here
        go(mode)
        torch.cuda.reset_peak_memory_stats()
    else:
        warm(mode)
    loaded = torch.cuda.memory_allocated() if cuda else _now_rss()
    seconds = math.inf
    for _ in range(max(1, getattr(a, "repeat", 1))):  # best of: the machine may be shared
        t0 = time.perf_counter()
        go(mode)
        seconds = min(seconds, time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if cuda else _rss()) - loaded
    return {"mode": mode, "length": length, "seconds": seconds, "params": params,
            "peak_beyond_weights": peak, "loaded": loaded}


def interleaved(modes: list[str], length: int, budget: int, head_std: float, a) -> dict:
    """--interleave N: one process times the floor and each scoring mode in turn, N times
    ({mode: [seconds, ...]}): the floor and the scoring of a pair run seconds apart, so a
    machine whose speed drifts between child processes moves both. No peak memory: the
    floor's logits would be in this process's peak."""
    _, go, warm, cuda = _setup(length, budget, head_std, a)
    for m in ["floor", *modes]:
        if cuda:
            go(m)
        else:
            warm(m)
    out = {m: [] for m in ["floor", *modes]}
    for _ in range(a.interleave):
        for m in out:
            t0 = time.perf_counter()
            go(m)
            out[m].append(time.perf_counter() - t0)
    return {"length": length, "seconds": out}


def run_child(mode: str, length: int, a) -> dict:
    env = dict(os.environ)
    if a.threads:
        env.update({v: str(a.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                 "NUMBA_NUM_THREADS")})
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--lengths", str(length),
                          "--budget-mib", str(a.budget_mib), "--head-std", str(a.head_std),
                          "--device", a.device, "--layers", str(a.layers),
                          "--model-dtype", a.model_dtype, "--repeat", str(a.repeat),
                          "--math-dtypes", a.math_dtypes, "--interleave", str(a.interleave)],
                         capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        return {"mode": mode, "length": length, "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="512,2048,8192,16384")
    ap.add_argument("--budget-mib", type=int, default=0, help="0 = the default budget")
    ap.add_argument("--head-std", type=float, default=0.0)
    ap.add_argument("--floor-max", type=int, default=8192)
    ap.add_argument("--math-dtypes", default="float64,float32")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--model-dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="the device's dense bf16 peak (H100 SXM: 989)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads per child (0: default)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time each child's run this many times, keep the best")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run each length's floor and path children this many times in turn")
    ap.add_argument("--interleave", type=int, default=0,
                    help="N > 0: time the floor and each path in turn N times in one process "
                         "per length (a line per pair; no peak memory)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    budget = a.budget_mib * 1024**2
    if a.child == "interleaved":
        print(json.dumps(interleaved(a.math_dtypes.split(","), lengths[0], budget,
                                     a.head_std, a)))
        return
    if a.child:
        print(json.dumps(child(a.child, lengths[0], budget, a.head_std, a)))
        return
    print(f"load average {_load()}")
    print(f"vocab {VOCAB}, hidden 1536, {a.layers} layers, {a.model_dtype} on {a.device}, "
          f"{a.threads or 'default'} threads; "
          f"budget {a.budget_mib or 'default'} MiB; head std {a.head_std or 'random init'}")
    print(f"{'length':>7} {'math':>8} {'peak GiB':>9} {'tok/s':>8} {'floor s':>8} "
          f"{'score s':>8} {'overhead':>9} {'vs first':>9} {'roofline':>9}")
    for n in lengths:
        if a.interleave:
            _interleaved(n, a)
            continue
        for rnd in range(a.rounds):
            _length(n, a, rnd)
    print(f"load average {_load()}")


def _interleaved(n: int, a) -> None:
    """--interleave: one child for length n; a line per pair (floor, each path's scoring),
    then each path's median overhead and its overhead on the best times."""
    r = run_child("interleaved", n, a)
    if "error" in r:
        print(f"{n:>7} interleaved child failed: {r['error']}")
        return
    sec = r["seconds"]
    for i, fl in enumerate(sec["floor"]):
        for md in a.math_dtypes.split(","):
            s = sec[md][i]
            print(f"{n:>7} {md:>8} {'-':>9} {n / s:>8.1f} {fl:>8.2f} {s:>8.2f} "
                  f"{100 * (s / fl - 1):>+8.0f}%  pair {i + 1}", flush=True)
    for md in a.math_dtypes.split(","):
        over = sorted(100 * (s / f - 1) for s, f in zip(sec[md], sec["floor"]))
        print(f"{n:>7} {md:>8}: overhead median {statistics.median(over):+.1f}% "
              f"(range {over[0]:+.1f}% to {over[-1]:+.1f}%), on the best times "
              f"{100 * (min(sec[md]) / min(sec['floor']) - 1):+.1f}% "
              f"(floor {min(sec['floor']):.2f} s, scoring {min(sec[md]):.2f} s)", flush=True)


def _length(n: int, a, rnd: int) -> None:
    """One round at length n: the floor child, then each path's child, printed."""
    gib = 1024**3
    f = run_child("floor", n, a) if n <= a.floor_max else None
    floor = f.get("seconds") if f and "error" not in f else None
    first = None
    for md in a.math_dtypes.split(","):
        s = run_child(md, n, a)
        if "error" in s:
            print(f"{n:>7} {md:>8} scoring failed: {s['error']}")
            continue
        over = f"{100 * (s['seconds'] / floor - 1):+.0f}%" if floor else "-"
        first = first or s["seconds"]
        vs = f"{s['seconds'] / first:.2f}x"
        flops = 2 * 2 * s["params"] * (n + 64)  # two models' forward passes
        roof = f"{100 * flops / s['seconds'] / (a.peak_tflops * 1e12):.1f}%"
        print(f"{n:>7} {md:>8} {s['peak_beyond_weights'] / gib:>9.2f} "
              f"{n / s['seconds']:>8.1f} {floor if floor else float('nan'):>8.2f} "
              f"{s['seconds']:>8.2f} {over:>9} {vs:>9} "
              f"{roof if a.device == 'cuda' else '-':>9}"
              + (f"  (floor: {f['error']})" if f and "error" in f else "")
              + (f"  round {rnd + 1}" if a.rounds > 1 else ""), flush=True)


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    main()
