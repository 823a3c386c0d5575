"""Regenerate the README's cross-sampling table and figure on the demo pair: one command.

    SHIFTLENS_CACHE=/tmp/c .venv/bin/python -m core demo-runs build   # the demo runs, once
    SHIFTLENS_CACHE=/tmp/c .venv/bin/python scripts/cross_figure.py [--prompts 120]
        [--samples 1] [--eps 0.01,0.05] [--control random,entropy,untreated]
        [--decisions-control] [--decoding paper|run] [--threads 1]

Runs the README's sweep on demo-rl through the same function as `shiftlens cross-sample`
(forward and reverse, each eps plus the eps of the 5% target budget, base alone and tuned
alone, the controls matched on changed tokens, at the paper's decoding (top-p 0.7, T = 1;
`--decoding run`: the run's own, top-p 1 for the demo); paired tests, Holm, gap intervals,
same_as_ref and changed_overlap are computed by the sweep's summary). `--decisions-control`
adds a second sweep with a random control matched on decisions (its columns join the table).
Each sweep is stored as <cache>/demo-rl/cross/<key>/ (a second call with the same settings re-
decodes and replaces it). Then it writes assets/screenshots/cross-sampling.png (needs Chromium
for kaleido) and prints the settings line, the README's Markdown table
(core.experiments.cross_sampling.report) and the figure's caption. `--key KEY` (and
`--decisions-key KEY`) draw sweeps already stored instead of running them (`shiftlens cross-
sweeps demo-rl` lists them).

The default size, 120 prompts x 1 sample (one sample per prompt: each comparison gets
McNemar's exact test and Tango's interval), eps 0.01 and 0.05 plus the target's, three
controls: 3,120 samples (92k tokens), 2.6 CPU-minutes; with one thread on a 2-core machine
shared at a load average of about 14 it took 12 minutes (the decisions sweep, 1,680 samples,
another 8). --prompts scales both.
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
from core.experiments.cross_sampling.report import markdown_table  # noqa: E402
from core.figures.cross import cross_sampling  # noqa: E402
from core.figures.export import figure_bytes  # noqa: E402
from core.paths import default_cache  # noqa: E402

RUN = "demo-rl"


def _sweep(cache: Path, a, control: str, match: str, key: str | None):
    """Run one sweep (or take the stored `key`): its SweepInfo and summary."""
    if key is None:
        cfg = CrossSampleConfig(run=RUN, cache=str(cache), prompts=a.prompts,
                                samples=a.samples, eps=a.eps, control=control, match=match,
                                decoding=a.decoding, seed=a.seed)
        _, written = run_cross_sample(cfg, log=lambda m: print(m, file=sys.stderr))
        key = written.parent.name
    info = get_sweep(cache / RUN, key)
    return info, read_summary(cache / RUN, info.key)


def settings_line(info, match: str) -> str:
    s = info.settings
    target = s.get("target_eps")
    realised = s.get("target_realised")
    parts = [f"sweep {info.key}: {s.get('n_prompts')} prompts x {s.get('samples')} samples",
             f"top-p {s.get('top_p'):g}, temperature {s.get('temperature'):g}",
             f"eps {', '.join(f'{e:g}' for e in s.get('eps_grid', []))}",
             f"controls {', '.join(s.get('controls', [])) or 'none'} matched on {match}"]
    if target is not None:
        parts.append(f"target budget {100 * s.get('target_budget', 0):g}% -> eps {target:g}"
                     + (f" ({100 * realised:.2f}% of the run's stored tokens exceed it)"
                        if realised is not None else ""))
    return "; ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=120)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--eps", default="0.01,0.05")
    ap.add_argument("--control", default="random,entropy,untreated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decoding", default="paper", choices=["paper", "run"],
                    help="paper: top-p 0.7, T = 1 (the paper's); run: the run's own decoding")
    ap.add_argument("--decisions-control", action="store_true",
                    help="also a sweep with a random control matched on decisions")
    ap.add_argument("--out", default=str(ROOT / "assets" / "screenshots" / "cross-sampling.png"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a busy 2-core machine more threads spin-wait)")
    ap.add_argument("--key", default=None, help="draw this stored sweep; run nothing")
    ap.add_argument("--decisions-key", default=None,
                    help="the stored decisions-matched sweep (with --decisions-control)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    cache = default_cache()  # $SHIFTLENS_CACHE, else cache/ in the repository, as the app
    info, summary = _sweep(cache, a, a.control, "changed", a.key)
    extra, lines = [], [settings_line(info, "changed")]
    if a.decisions_control or a.decisions_key:
        d_info, d_summary = _sweep(cache, a, "random", "decisions", a.decisions_key)
        extra.append((d_summary, "decisions"))
        lines.append(settings_line(d_info, "decisions"))
    spec = cross_sampling(summary, RUN, info.settings, sweep=info.key)
    if a.out:
        Path(a.out).write_bytes(figure_bytes(spec, "png"))
        lines.append(f"wrote {a.out}")
    print(format_summary(summary), file=sys.stderr)
    print("\n".join(lines) + "\n")
    print(markdown_table(summary, info.settings.get("target_eps"), "changed", extra))
    print("\n" + spec.caption)
    return 0


if __name__ == "__main__":
    sys.exit(main())
