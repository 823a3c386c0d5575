"""The fused Triton kernel against the plain float64 reference, on a GPU (or on CPU under
TRITON_INTERPRET=1, which benchmarks/gpu_check.sh --dry-run uses): the cases of
tests/f32cases.py (js ~5e-11 .. ln 2; plain, shifted, masked, bf16 logits), every exact
metric within max(1e-4 x value, 1e-10), ranks and argmaxes identical; then, on CUDA, ms per
row of the kernel against the torch float32 Context on the same rows.

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
from tests.f32cases import EXACT, KINDS, case, reference, worst  # noqa: E402


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
    if dev.type == "cuda":
        lb, lt, tok = (t.to(dev) for t in case("plain", n=64, v=a.vocab))
        for name, fn in (("triton kernel", lambda: fused_chunk(lb, lt, tok, 0.7, 10, {},
                                                                "triton")),
                         ("torch float32 Context", lambda: M.compute_metrics(
                             lb, lt, tok, ctx=M.Context(lb, lt, tok, 0.7, torch.float32,
                                                        10)))):
            fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            print(f"{name:22s} {(time.perf_counter() - t0) / 3 / 64 * 1e3:.3f} ms/row "
                  f"(64 rows, vocab {a.vocab}, every column)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
