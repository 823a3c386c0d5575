"""How long each page takes to be ready for one browser session, and the Runs page against
the slowest other page (issue 27's target: within 2x).

    python benchmarks/page_ready.py [--rounds 5] [--run demo-rl] [--cache cache]

Starts `streamlit run app/serve.py` against --cache (default: the app's cache; build the demo
runs first with `python -m core demo-runs`), warms every page once, then has one headless
Chromium session visit every page with `?run=RUN` for --rounds rounds (tests/browser.py
drive_sessions: ready = the script run finished and stayed finished 0.5 s). Prints the median
and the worst visit per page and the ratio of the Runs page's median to the slowest other
page's median, in the same process; asserts nothing.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--run", default="demo-rl")
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    with streamlit_server(args.cache or default_cache(), env={"OMP_NUM_THREADS": "1"}) as url:
        drive_sessions(url, n=1, rounds=1, run=args.run)  # warm-up: opens the runs once
        out = drive_sessions(url, n=1, rounds=args.rounds, run=args.run)
    med = {p: float(np.median(v)) for p, v in out["ready"].items() if v}
    print(f"one session, {args.rounds} rounds on {args.run}: {len(out['errors'])} errors")
    for e in out["errors"][:10]:
        print("  ", e)
    for p in PAGES:
        if p in med:
            print(f"  {p:<9} ready median {med[p]:5.2f} s  worst {max(out['ready'][p]):5.2f} s")
    others = {p: v for p, v in med.items() if p != "runs"}
    if "runs" in med and others:
        slow = max(others, key=others.get)
        print(f"runs / slowest other page ({slow}): {med['runs'] / others[slow]:.2f}x "
              f"(target <= 2x)")


if __name__ == "__main__":
    main()
