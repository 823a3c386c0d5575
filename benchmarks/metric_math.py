"""Where the metric math's time goes per row at a real vocabulary: each part of
core.metrics.Context timed on random float32 logits, walked chunk by chunk as the scoring
engine walks a block (same chunk size, reused work buffers).

    python benchmarks/metric_math.py [--vocab 151936] [--std 0.78] [--rows 48] [--chunk 0]
                                     [--paths-only] [--stds 0.78,8]

--std: standard deviation of the base logits; 0.78 is what a randomly initialised Qwen2 head
gives (near-uniform rows, a nucleus of 0.7 spanning about 40% of the vocabulary), 1.5 the
benchmark's --head-std 1.5, 5 or more peaked rows whose nucleus lies in the top-k. --chunk 0 =
core.engine.heads.chunk_rows for this vocabulary. Prints microseconds per row for each part
and in all (best of --repeat passes over the rows), then the three metric paths side by side
on the same rows, ms per row for every column the scoring stores (registered metrics, both
top-k lists, the tuned top-1's base rank and probability), ratios against the reference:

  reference  core.metrics.Context in float64 (the CPU default, golden numbers)
  float32    core.metrics.Context in float32 (core/metrics/exact.py's formulas)
  fused      core.metrics.fused.fused_chunk: the numba kernel (core/metrics/fused_numba.py)

--paths-only skips the per-part table. --stds runs the three paths on rows of each logit
std in turn, in one process (e.g. 0.78,8: near-uniform and peaked rows side by side); it
implies --paths-only. The load average is printed before and after (a shared machine: only
ratios within one run mean anything).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from core.engine import heads  # noqa: E402
from core.metrics import kernels as K  # noqa: E402
from core.metrics import registry as M  # noqa: E402

PARTS = {
    "log-softmax + exp (both)": None,  # the Context itself
    "kl (both)": lambda c: (c.kl_bt, c.kl_tb),
    "js": lambda c: c.js,
    "entropy (both)": lambda c: (c.entropy("base"), c.entropy("tuned")),
    "top-k (both)": lambda c: (c.topk("base", 10), c.topk("tuned", 10)),
    "js_top_p (nuclei + JS)": lambda c: c.js_top_p,
    **{f"{n} (nuclei + JS)": M.METRICS[n].fn for n in M.TRUNCATED_JS},
    "ranks (3)": lambda c: (c.rank("base", c.tok), c.rank("tuned", c.tok),
                            c.rank("base", c.topk("tuned", 1)[0][:, 0])),
    "argmax (both)": M.METRICS["top1_agree"].fn,
    "logp gathers": M.METRICS["dlogp"].fn,
}


def run(lb, lt, tok, step, scratch, acc):
    for s in range(0, len(tok), step):
        t0 = time.perf_counter()
        c = M.Context(lb[s:s + step], lt[s:s + step], tok[s:s + step], 0.7, torch.float64,
                      10, scratch)
        for name, part in PARTS.items():
            if part is not None:
                part(c)
            t = time.perf_counter()
            acc[name] = acc.get(name, 0.0) + t - t0
            t0 = t


def _columns(lb, lt, tok, dtype, scratch):
    c = M.Context(lb, lt, tok, 0.7, dtype, 10, scratch)
    out = M.compute_metrics(lb, lt, tok, ctx=c)
    _, t_ids = c.topk("base", 10), c.topk("tuned", 10)[0]
    out["r"] = c.rank("base", t_ids[:, 0])
    return out


def paths(lb, lt, tok, step, repeat) -> dict[str, float]:
    """Seconds per row of each path over all rows (best of `repeat`)."""
    from core.metrics.fused import fused_chunk

    scratch = K.Scratch()
    fns = {"reference (float64)": lambda a, b, t: _columns(a, b, t, torch.float64, scratch),
           "float32": lambda a, b, t: _columns(a, b, t, torch.float32, scratch),
           "fused (numba)": lambda a, b, t: fused_chunk(a, b, t, 0.7, 10, dict(M.TRUNCATED_JS))}
    best = {}
    for name, fn in fns.items():
        fn(lb[:step], lt[:step], tok[:step])  # warm-up: compile, buffers
        for _ in range(repeat):
            t0 = time.perf_counter()
            for s in range(0, len(tok), step):
                fn(lb[s:s + step], lt[s:s + step], tok[s:s + step])
            best[name] = min(best.get(name, 1e9), (time.perf_counter() - t0) / len(tok))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--std", type=float, default=0.78)
    ap.add_argument("--shift", type=float, default=0.3, help="std of tuned - base logits")
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--paths-only", action="store_true")
    ap.add_argument("--stds", default="", help="comma list of logit stds: paths only, each")
    a = ap.parse_args()
    step = a.chunk or heads.chunk_rows(a.vocab, 1 << 30)
    print(f"load average {_load()}")
    for std in [float(x) for x in a.stds.split(",")] if a.stds else [a.std]:
        a.std = std
        one(a, step)
    print(f"load average {_load()}")


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def one(a, step) -> None:
    g = torch.Generator().manual_seed(0)
    lb = torch.randn(a.rows, a.vocab, generator=g) * a.std
    lt = lb + torch.randn(a.rows, a.vocab, generator=g) * a.shift
    tok = torch.randint(0, a.vocab, (a.rows,), generator=g)
    print(f"vocab {a.vocab}, logits std {a.std}, tuned - base std {a.shift}, {a.rows} rows "
          f"in chunks of {step}, {torch.get_num_threads()} torch threads")
    best_p = paths(lb, lt, tok, step, a.repeat)
    ref = best_p["reference (float64)"]
    for name, sec in best_p.items():
        print(f"  {name:22s} {sec * 1e3:7.2f} ms/row  {ref / sec:5.2f}x the reference")
    if a.paths_only or a.stds:
        return
    scratch = K.Scratch()
    run(lb, lt, tok, step, scratch, {})  # warm-up: buffers, kernels
    best: dict[str, float] = {}
    for _ in range(a.repeat):
        acc: dict[str, float] = {}
        run(lb, lt, tok, step, scratch, acc)
        if not best or sum(acc.values()) < sum(best.values()):
            best = acc
    print("reference (float64) by part:")
    for name in PARTS:
        print(f"  {name:26s} {best[name] / a.rows * 1e6:8.0f} us/row")
    print(f"  {'all':26s} {sum(best.values()) / a.rows * 1e6:8.0f} us/row")


if __name__ == "__main__":
    main()
