"""Cost of the notebook widget's data: the trace payload with the top-k panel's rows (what
shiftlens.Trace.show() sends to the browser) against the app's payload without them.

    python benchmarks/notebook_payload.py [--tokens 4000] [--k 10]

A synthetic trace table shaped like core.queries.trace_tokens (every metric, k-entry top-k
lists per model), built in memory. Prints build time and JSON size of both payloads and the
ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.figures.trace import trace_payload  # noqa: E402
from core.metrics import METRICS  # noqa: E402


def table(n: int, k: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"pos": range(n), "token": [f"t{i % 50}" for i in range(n)],
                       "token_id": rng.integers(0, 50, n), "rel_pos": np.arange(n) / n})
    for m in METRICS:
        df[m] = rng.integers(1, 6, n) if m.startswith("rank") else rng.uniform(0, 0.69, n)
    for who in ("base", "tuned"):
        df[f"{who}_ids"] = [list(rng.integers(0, 50, k)) for _ in range(n)]
        df[f"{who}_tokens"] = [[f"t{j}" for j in ids] for ids in df[f"{who}_ids"]]
        df[f"{who}_probs"] = [list(np.sort(rng.dirichlet(np.ones(k)))[::-1]) for _ in range(n)]
    return df


def measure(toks, with_topk: bool, repeat: int = 3) -> tuple[float, int]:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        data = trace_payload(toks, "js", with_topk=with_topk)
        best = min(best, time.perf_counter() - t)
    return best, len(json.dumps(data))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4000)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    toks = table(a.tokens, a.k)
    app_s, app_b = measure(toks, False)
    nb_s, nb_b = measure(toks, True)
    print(f"{a.tokens:,} tokens, top-{a.k}")
    print(f"  app payload (no top-k rows):    {app_s * 1000:8.1f} ms  {app_b / 1e6:6.2f} MB")
    print(f"  widget payload (with top-k):    {nb_s * 1000:8.1f} ms  {nb_b / 1e6:6.2f} MB")
    print(f"  ratio widget/app:               {nb_s / app_s:8.1f} x   {nb_b / app_b:6.1f} x")


if __name__ == "__main__":
    main()
