"""What a head block's size costs: the output head's (rows x hidden) @ (hidden x vocab)
product, timed per row at several block sizes over the same rows, against one product of
all of them (what the realistic-shapes floor does), in one process. Each call rereads the
whole head matrix (vocabulary x hidden float32: 0.93 GB at 151,936 x 1,536), so fewer,
larger blocks are cheaper per row; core/engine/heads.py's HEAD_BLOCK_ROWS and the memory
budget decide the size the engine uses.

    python benchmarks/head_blocks.py [--vocab 151936] [--hidden 1536] [--rows 2112]
                                     [--blocks 352,422,528,704,1056] [--repeat 2]

Prints ms per row and model for each block size (best of --repeat) and its ratio to the
single product of --rows rows. The product writes into a reused buffer, as the engine does.
"""
from __future__ import annotations

import argparse
import time

import torch


def per_row_ms(h: torch.Tensor, w: torch.Tensor, block: int, repeat: int) -> float:
    """Best ms per row over `repeat` walks of h's rows in blocks of `block`."""
    n = h.shape[0] // block * block  # whole blocks only: a short last block is another cost
    out = torch.empty(block, w.shape[0])
    torch.matmul(h[:block], w.t(), out=out)  # first touch of the buffer, not timed
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for s in range(0, n, block):
            torch.matmul(h[s:s + block], w.t(), out=out)
        best = min(best, (time.perf_counter() - t0) / n * 1e3)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--rows", type=int, default=2112)
    ap.add_argument("--blocks", default="352,422,528,704,1056")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(0)
    w = torch.randn(a.vocab, a.hidden) * 0.02
    h = torch.randn(a.rows, a.hidden)
    one = per_row_ms(h, w, a.rows, a.repeat)
    print(f"vocab {a.vocab}, hidden {a.hidden}, {torch.get_num_threads()} threads; "
          f"ms per row and model")
    print(f"{'block':>6}  {'ms/row':>7}  vs one product of {a.rows}")
    for b in (int(x) for x in a.blocks.split(",")):
        ms = per_row_ms(h, w, b, a.repeat)
        print(f"{b:>6}  {ms:7.3f}  {ms / one:.3f}x")
    print(f"{a.rows:>6}  {one:7.3f}  1.000x (one product)")


if __name__ == "__main__":
    main()
