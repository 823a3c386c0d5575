"""Latency of every analysis query on a large synthetic run (target: p50 < 100 ms).

    python benchmarks/query_latency.py [--folder /tmp/syn10m] [--tokens 10000000] [--repeat 7]
                                       [--no-materialize]

Generates a synthetic run (core.demo.synthetic) into --folder unless one is there already, opens
it with core.queries.open_runs (materialised by default above the row threshold: in-memory
tables plus the order indexes of core/queries/order_index.py), runs each query once (printed as
"first") and then --repeat times, and prints p50 / p95 per query and whether p50 meets the
target. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import queries as Q  # noqa: E402
from core.demo.synthetic import write_synthetic_run  # noqa: E402
from core.store.manifest import read_manifest  # noqa: E402

TARGET_MS = 100.0


def query_set(con, run: str, trace_id: int) -> dict:
    """name -> zero-argument callable: every analysis query, with the app's defaults."""
    return {
        "sparsity_summary": lambda: Q.sparsity_summary(con),
        "sparsity_summary by=sampled_from": lambda: Q.sparsity_summary(con, by="sampled_from"),
        "histogram js": lambda: Q.histogram(con),
        "histogram js log": lambda: Q.histogram(con, log=True),
        "histogram entropy_base": lambda: Q.histogram(con, metric="entropy_base"),
        "entropy_by_js_bin": lambda: Q.entropy_by_js_bin(con),
        "js_entropy_hist2d": lambda: Q.js_entropy_hist2d(con),
        "position_profile": lambda: Q.position_profile(con),
        "token_identity": lambda: Q.token_identity(con),
        "topk_overlap": lambda: Q.topk_overlap(con),
        "reallocation": lambda: Q.reallocation(con),
        "tuned_top1_base_rank_hist": lambda: Q.tuned_top1_base_rank_hist(con),
        "urial_categories": lambda: Q.urial_categories(con),
        "evolution": lambda: Q.evolution(con, [run]),
        "contrast": lambda: Q.contrast(con, run, run),
        "headline": lambda: Q.headline(con),
        "eps_for_budget": lambda: Q.eps_for_budget(con, [0.01, 0.05, 0.1]),
        "trace_list page 1": lambda: Q.trace_list(con, run),
        "trace_list page 50 by length": lambda: Q.trace_list(con, run, sort_by="length",
                                                             offset=4900),
        "trace_list search": lambda: Q.trace_list(con, run, search="triangle"),
        "trace_count": lambda: Q.trace_count(con, run),
        "trace_position (a link's page)": lambda: Q.trace_position(con, run, trace_id),
        "trace_tokens": lambda: Q.trace_tokens(con, run, trace_id),
        "token_search js>=0.3": lambda: Q.token_search(con, js_min=0.3),
        "token_search text": lambda: Q.token_search(con, text_contains="wait", js_min=0.05),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=None,
                    help="run folder to reuse or create (default: a temporary one, deleted)")
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-materialize", action="store_true",
                    help="keep lazy Parquet views (the pre-materialisation behaviour)")
    args = ap.parse_args()

    tmp = None
    folder = args.folder
    if folder is None:
        tmp = Path(tempfile.mkdtemp(prefix="shiftlens-latency-"))
        folder = tmp / "synthetic"
    try:
        if read_manifest(folder) is None:
            t = time.perf_counter()
            write_synthetic_run(folder, n_tokens=args.tokens)
            print(f"generated {args.tokens:,} token rows in {time.perf_counter() - t:.1f} s")
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"run folder {folder}: {size / 2**20:.0f} MiB on disk")

        t = time.perf_counter()
        con = Q.open_runs([folder], materialize=False if args.no_materialize else None)
        n = con.execute("SELECT count(*) FROM tokens").fetchone()[0]
        print(f"open_runs: {time.perf_counter() - t:.2f} s ({n:,} token rows, "
              f"{'lazy views' if args.no_materialize else 'materialised if large'})")
        run = Q.opened_runs(con)["run"].iloc[0]
        tid = int(Q.trace_list(con, run, limit=1)["trace_id"].iloc[0])

        rows = []
        for name, fn in query_set(con, run, tid).items():
            t = time.perf_counter()
            fn()  # warm-up (first call: may build an order index for non-default parameters)
            first = (time.perf_counter() - t) * 1000
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000)
            p50, p95 = np.percentile(times, 50), np.percentile(times, 95)
            rows.append((name, p50, p95))
            print(f"  {name:<32} first {first:7.1f} ms  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
                  f"{'ok' if p50 < TARGET_MS else 'SLOW'}", flush=True)
        slow = [r[0] for r in rows if r[1] >= TARGET_MS]
        print(f"{len(rows) - len(slow)}/{len(rows)} queries meet p50 < {TARGET_MS:.0f} ms"
              + (f"; slow: {', '.join(slow)}" if slow else ""))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
