"""Latency of every analysis query on large synthetic runs, and the memory they take.

    python benchmarks/query_latency.py [--folder /tmp/syn10m] [--tokens 10000000] [--repeat 7]
                                       [--runs 1] [--target-ms 50] [--check] [--no-materialize]

Generates --runs synthetic runs of --tokens rows each (core.demo.synthetic; a checkpoint
series: <folder>/step-0 .. step-N-1, seeds 0..N-1) unless they are there already, opens them
together with core.queries.open_runs (materialised by default above the row threshold: each
run's on-disk query index, built on first open and timed separately, plus the order indexes
and per-cell aggregates of core/queries/order_index.py and aggregated.py), runs each query
once (printed as "first": it may build an index or a per-cell aggregate for its parameters)
and then --repeat times, and prints p50 / p95 per query, whether p50 meets --target-ms, and
the process's RSS (now and peak). --check compares every result with the same query on lazy
Parquet views (the SQL reference; slow at this size). Targets (issue 12): p50 <= 50 ms on one
10M-row run; p50 < 1 s and RSS <= 8 GiB for ten (100M rows). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
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
from core.queries.run_index import ensure_index  # noqa: E402
from core.store.cache import run_exists  # noqa: E402


def _rss_gib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in GiB."""
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[1]) * resource.getpagesize()
    return now / 2**30, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def query_set(con, run: str, trace_id: int, series: list[str]) -> dict:
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
        "evolution": lambda: Q.evolution(con, series),
        "contrast": lambda: Q.contrast(con, series[0], series[-1]),
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
                    help="folder of the runs to reuse or create (default: a temporary one, "
                         "deleted)")
    ap.add_argument("--tokens", type=int, default=10_000_000, help="token rows per run")
    ap.add_argument("--runs", type=int, default=1, help="runs in the collection")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--target-ms", type=float, default=50.0)
    ap.add_argument("--check", action="store_true",
                    help="compare every result with lazy Parquet views (the SQL reference)")
    ap.add_argument("--no-materialize", action="store_true",
                    help="keep lazy Parquet views (the pre-materialisation behaviour)")
    args = ap.parse_args()

    tmp = None
    folder = args.folder
    if folder is None:
        tmp = Path(tempfile.mkdtemp(prefix="shiftlens-latency-"))
        folder = tmp / "synthetic"
    try:
        dirs = [folder] if args.runs == 1 else [folder / f"step-{i}" for i in range(args.runs)]
        for i, d in enumerate(dirs):
            if not run_exists(d.parent, d.name):
                t = time.perf_counter()
                write_synthetic_run(d, n_tokens=args.tokens, seed=i)
                print(f"generated {d.name}: {args.tokens:,} token rows in "
                      f"{time.perf_counter() - t:.1f} s", flush=True)
        size = sum(f.stat().st_size for d in dirs for f in d.rglob("*.parquet") if f.is_file())
        print(f"{len(dirs)} run(s) in {folder}: {size / 2**20:.0f} MiB of Parquet")
        if not args.no_materialize:
            for d in dirs:
                t = time.perf_counter()
                p = ensure_index(d)
                print(f"query index of {d.name}: {time.perf_counter() - t:.1f} s "
                      f"({p.stat().st_size / 2**20:.0f} MiB; reused when already built)",
                      flush=True)
        now, peak = _rss_gib()
        print(f"RSS before open: {now:.2f} GiB (peak so far {peak:.2f} GiB, index builds "
              "included)")
        base_peak = peak

        t = time.perf_counter()
        con = Q.open_runs(dirs, materialize=False if args.no_materialize else None)
        n = con.execute("SELECT count(*) FROM tokens").fetchall()[0][0]
        now, peak = _rss_gib()
        print(f"open_runs: {time.perf_counter() - t:.2f} s ({n:,} token rows, "
              f"{'lazy views' if args.no_materialize else 'materialised if large'}); "
              f"RSS {now:.2f} GiB, peak {peak:.2f} GiB", flush=True)
        names = Q.opened_runs(con)["run"].tolist()
        run = names[-1]
        tid = int(Q.trace_list(con, run, limit=1)["trace_id"].iloc[0])
        ref = None
        if args.check:
            ref = query_set(Q.open_runs(dirs, materialize=False), run, tid, names)

        rows, bad = [], []
        for name, fn in query_set(con, run, tid, names).items():
            t = time.perf_counter()
            got = fn()  # first call: may build an order index or a per-cell aggregate
            first = (time.perf_counter() - t) * 1000
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000)
            p50, p95 = np.percentile(times, 50), np.percentile(times, 95)
            rows.append((name, p50, p95))
            same = ""
            if ref is not None:
                import pandas as pd
                try:
                    want = ref[name]()
                    if isinstance(want, pd.DataFrame):
                        pd.testing.assert_frame_equal(want, got, check_exact=False, rtol=1e-9)
                    else:
                        assert want == got, f"{want!r} != {got!r}"
                    same = "  = SQL"
                except AssertionError as e:
                    same = "  DIFFERS from SQL"
                    bad.append((name, str(e).splitlines()[:3]))
            print(f"  {name:<32} first {first:8.1f} ms  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
                  f"{'ok' if p50 <= args.target_ms else 'SLOW'}{same}", flush=True)
        slow = [r[0] for r in rows if r[1] > args.target_ms]
        now, peak = _rss_gib()
        print(f"{len(rows) - len(slow)}/{len(rows)} queries meet p50 <= {args.target_ms:.0f} ms"
              + (f"; slow: {', '.join(slow)}" if slow else ""))
        print(f"RSS after the queries: {now:.2f} GiB; peak since open "
              f"{max(peak, base_peak):.2f} GiB (ru_maxrss is the process's peak)")
        if ref is not None:
            print(f"{len(rows) - len(bad)}/{len(rows)} results equal the SQL reference"
                  + "".join(f"\n  {n}: {e}" for n, e in bad))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
