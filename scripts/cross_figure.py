"""Regenerate the README's cross-sampling figure and table on the demo pair.

    .venv/bin/python scripts/cross_figure.py [--prompts 200] [--samples 2] [--match changed]
        [--top-p 0.7]

Runs the README's sweep on cache/demo-rl (`python -m core demo-runs` builds it) through the
same function as `shiftlens cross-sample` (stored as cache/demo-rl/cross/<key>/, so a second
call with the same settings re-decodes and replaces it), then writes
assets/screenshots/cross-sampling.png (needs Chromium for kaleido) and prints the summary.
`--key KEY` draws a sweep already stored in cache/demo-rl instead (`shiftlens cross-sweeps
demo-rl` lists them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.experiments.cross_sampling import (  # noqa: E402
    CrossSampleConfig,
    format_summary,
    get_sweep,
    read_summary,
    run_cross_sample,
)
from core.figures.cross import cross_sampling  # noqa: E402
from core.figures.export import figure_bytes  # noqa: E402
from core.paths import default_cache  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--eps", default="0.01,0.02,0.05")
    ap.add_argument("--match", default="changed", choices=["changed", "decisions"])
    ap.add_argument("--top-p", type=float, default=0.7,
                    help="nucleus of both models, at T=1 (default: the paper's 0.7; 1: the "
                         "full distributions)")
    ap.add_argument("--out", default=str(ROOT / "assets" / "screenshots" / "cross-sampling.png"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a busy 2-core machine more threads spin-wait)")
    ap.add_argument("--key", default=None, help="draw this stored sweep; run nothing")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    cache = default_cache()  # $SHIFTLENS_CACHE, else cache/ in the repository, as the app
    cfg = CrossSampleConfig(run="demo-rl", cache=str(cache), prompts=a.prompts,
                            samples=a.samples, eps=a.eps, top_p=a.top_p, temperature=1.0,
                            match=a.match)
    if a.key is None:
        run_cross_sample(cfg)
    run_dir = cache / "demo-rl"
    info = get_sweep(run_dir, a.key)
    summary = read_summary(run_dir, info.key)
    spec = cross_sampling(summary, "demo-rl", info.settings, sweep=info.key)
    Path(a.out).write_bytes(figure_bytes(spec, "png"))
    print(format_summary(summary))
    print(spec.caption)
    print(f"wrote {a.out} from sweep {info.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
