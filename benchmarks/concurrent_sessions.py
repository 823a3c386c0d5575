"""Many browser sessions on one ShiftLens server at once: errors (target 0) and how long each
page takes to be ready (p50 / p95), while every session walks through every page.

    python benchmarks/concurrent_sessions.py [--sessions 8] [--seconds 60] [--run demo-rl]
                                              [--cache cache] [--baseline]

Starts `streamlit run app/serve.py` (as scripts/app.sh does) on a free port against --cache
(default: the app's cache; build the demo runs first with `python -m core demo-runs`), opens
--sessions headless
Chromium contexts at once (Debian's /usr/bin/chromium through Playwright) and has each visit
traces, overview, search, cross, live, add and runs with `?run=RUN`, round after round, for
--seconds. A visit counts as an error when its script run does not finish, when the page
shows a Streamlit exception, or when it shows another run than its URL names. --baseline
first runs one session alone for the same time, so the ratios show what sharing costs.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.paths import default_cache  # noqa: E402
from tests.browser import PAGES, drive_sessions, streamlit_server  # noqa: E402


def _stats(out: dict) -> dict:
    return {p: (np.percentile(v, 50), np.percentile(v, 95), len(v))
            for p, v in out["ready"].items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--run", default="demo-rl")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--baseline", action="store_true",
                    help="measure one session alone first, in the same process")
    args = ap.parse_args()
    cache = args.cache or default_cache()
    with streamlit_server(cache, env={"OMP_NUM_THREADS": "1"}) as url:
        drive_sessions(url, n=1, rounds=1, run=args.run)  # warm-up: opens the runs once
        base = None
        if args.baseline:
            base = _stats(drive_sessions(url, n=1, seconds=args.seconds, run=args.run))
        out = drive_sessions(url, n=args.sessions, seconds=args.seconds, run=args.run)
    st = _stats(out)
    print(f"{args.sessions} sessions for {args.seconds:.0f} s on {args.run} "
          f"({sum(v[2] for v in st.values())} page visits): {len(out['errors'])} errors")
    for e in out["errors"][:10]:
        print("  ", e)
    for p in PAGES:
        if p not in st:
            print(f"  {p:<9} no finished visit")
            continue
        p50, p95, n = st[p]
        line = f"  {p:<9} ready p50 {p50:5.2f} s  p95 {p95:5.2f} s  ({n} visits)"
        if base and p in base:
            line += f"   alone p50 {base[p][0]:5.2f} s: x{p50 / base[p][0]:.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
