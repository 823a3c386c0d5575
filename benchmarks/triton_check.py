"""The fused Triton kernel against the plain float64 reference, on a GPU (or on CPU under
TRITON_INTERPRET=1, which benchmarks/gpu_check.sh --dry-run uses): the cases of
tests/f32cases.py (js ~5e-11 .. ln 2; plain, shifted, masked, bf16 logits), every exact
metric within max(1e-4 x value, 1e-10), ranks and argmaxes identical; the truncated JS
columns of near-uniform and peaked rows (nuclei beyond and inside the top-K lists: the
device search of core/metrics/fused_triton_nucleus.py, and the lists) within the same target
of the float64 Context; then, on CUDA, ms per row of the kernel against the torch float32
Context on the same rows, peaked and near-uniform.

    python benchmarks/triton_check.py [--device cuda] [--rows 8] [--vocab 151936]

Prints one line per case and exits 1 if any case misses the target.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from core.metrics import registry as M  # noqa: E402
from core.metrics.fused import fused_chunk  # noqa: E402
from tests.f32cases import EXACT, KINDS, case, graded, reference, worst  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=151_936)
    a = ap.parse_args()
    dev = torch.device(a.device)
    failed = False
    for kind in KINDS:
        lb, lt, tok = case(kind, n=a.rows, v=a.vocab)
        ref = reference(lb, lt, tok)
        out = fused_chunk(lb.to(dev), lt.to(dev), tok.to(dev), 0.7, 10, {}, "triton")
        bad = {n: worst(out[n], ref[n]) for n in EXACT}
        rank_ok = all(torch.equal(out[f"rank_{w}"].cpu(),
                                  (x > x.gather(-1, tok[:, None])).sum(-1) + 1)
                      for w, x in (("base", lb), ("tuned", lt)))
        ok = max(bad.values()) <= 1.0 and rank_ok
        failed |= not ok
        print(f"{kind:7s} {'ok  ' if ok else 'FAIL'} worst/target "
              f"{max(bad.values()):.3f} ({max(bad, key=bad.get)}), ranks "
              f"{'identical' if rank_ok else 'DIFFER'}", flush=True)
    nuclei = dict(M.TRUNCATED_JS)
    for std in (0.78, 8.0):  # near-uniform (nuclei far beyond the top-K), peaked
        lb, lt, tok = graded(std, a.rows, a.vocab)
        ref = M.compute_metrics(lb, lt, tok, ctx=M.Context(lb, lt, tok, 0.7, torch.float64, 10))
        out = fused_chunk(lb.to(dev), lt.to(dev), tok.to(dev), 0.7, 10, nuclei, "triton")
        bad = {n: worst(out[n], ref[n]) for n in ("js_top_p", *nuclei)}
        ok = max(bad.values()) <= 1.0
        failed |= not ok
        print(f"std {std:<4g} {'ok  ' if ok else 'FAIL'} truncated JS worst/target "
              f"{max(bad.values()):.3f} ({max(bad, key=bad.get)})", flush=True)
    if dev.type == "cuda":
        for label, (lb, lt, tok) in (("peaked", graded(8.0, 64, a.vocab)),
                                     ("near-uniform", graded(0.78, 64, a.vocab))):
            lb, lt, tok = lb.to(dev), lt.to(dev), tok.to(dev)
            for name, fn in (("triton kernel",
                              lambda lb=lb, lt=lt, tok=tok: fused_chunk(lb, lt, tok, 0.7, 10,
                                                                        nuclei, "triton")),
                             ("torch float32 Context",
                              lambda lb=lb, lt=lt, tok=tok: M.compute_metrics(
                                  lb, lt, tok, ctx=M.Context(lb, lt, tok, 0.7, torch.float32,
                                                             10)))):
                fn()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(3):
                    fn()
                torch.cuda.synchronize()
                print(f"{label:12s} {name:22s} {(time.perf_counter() - t0) / 3 / 64 * 1e3:.3f}"
                      f" ms/row (64 rows, vocab {a.vocab}, every column)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
