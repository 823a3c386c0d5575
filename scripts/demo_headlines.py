"""Print the README's "What the demo shows" contrast and evolution numbers from core.queries.

    SHIFTLENS_CACHE=/tmp/c .venv/bin/python -m core demo-runs build   # the demo runs, once
    SHIFTLENS_CACHE=/tmp/c .venv/bin/python scripts/demo_headlines.py [--high 0.1]

Recomputes, on each run's tuned-sampled traces (the queries' default), with the queries'
prompt-clustered 95% intervals (core/queries/intervals.py: 1,000 resamples, fixed seed):

- the RL-vs-SFT contrast (`Q.contrast(sft-matched, rl)`): each run's share of tokens above
  --high and below 0.01, and the ratio of the shares above --high, sft-matched / rl;
- the evolution along demo-rl's checkpoints (`Q.evolution`, `Q.evolution_overlap`): each
  step's share above --high minus the final's, the thresholded Jaccard with the final's high
  set beside the largest Jaccard the two set sizes allow, and the equal-size overlap (each
  step's top-N by js against the final's, N = the final's count above --high).

Prints plain lines to paste into the README; reads the runs, writes nothing. Run names are
the demo's (core.demo.runs): a retrained demo reuses them, so this stays one command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import api  # noqa: E402
from core import queries as Q  # noqa: E402
from core.paths import default_cache  # noqa: E402

RL, SFT = "demo-rl", "demo-sft-matched"


def ci(x, lo, hi, fmt="{:.2f}") -> str:
    return f"{fmt.format(x)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def pct(x, lo, hi) -> str:
    return ci(100 * x, 100 * lo, 100 * hi, "{:.2f}%")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--high", type=float, default=0.1)
    ap.add_argument("--near-zero", type=float, default=0.01)
    a = ap.parse_args()
    cache = default_cache()
    runs = {r.name: r for r in api.list_runs(cache)}
    missing = [n for n in (RL, SFT) if n not in runs]
    if missing:
        print(f"error: {', '.join(missing)} not in {cache}: run `python -m core demo-runs "
              "build` first", file=sys.stderr)
        return 1
    series = api.series_of(list(runs.values()), runs[RL])  # its checkpoints, then demo-rl
    if not series:
        print(f"error: no checkpoint runs of {RL} in {cache}", file=sys.stderr)
        return 1
    names = list(dict.fromkeys([RL, SFT, *series]))
    con = Q.open_runs([cache / n for n in names], names=names)

    c = Q.contrast(con, SFT, RL, near_zero=a.near_zero, high=a.high).set_index("run")
    s, r = c.loc[SFT], c.loc[RL]
    print(f"contrast on tuned-sampled traces ({int(r.n_prompts)} prompts; js > {a.high:g}):")
    for name, x in ((SFT, s), (RL, r)):
        print(f"  {name}: {int(x.n_tokens):,} tokens, above {a.high:g}: "
              f"{pct(x.share_high, x.share_high_lo, x.share_high_hi)} "
              f"({round(x.share_high * x.n_tokens)} tokens); below {a.near_zero:g}: "
              f"{pct(x.share_near_zero, x.share_near_zero_lo, x.share_near_zero_hi)}")
    print(f"  ratio of the shares above {a.high:g}, {SFT} / {RL}: "
          f"{ci(s.high_ratio, s.high_ratio_lo, s.high_ratio_hi)}")
    print(f"  ratio of the shares below {a.near_zero:g}: "
          f"{ci(s.near_zero_ratio, s.near_zero_ratio_lo, s.near_zero_ratio_hi, '{:.3f}')}")

    ev = Q.evolution(con, series, high=a.high).set_index("run")
    ov = Q.evolution_overlap(con, series, high=a.high).set_index("run")
    n_final = int(ov["n_final"].iloc[0])
    print(f"\nevolution over {', '.join(series)} (final: {RL}, {n_final} tokens above "
          f"{a.high:g}; accuracy from {ev['accuracy_source'].iloc[0]}):")
    for run in series[:-1]:
        e, o = ev.loc[run], ov.loc[run]
        diff = ci(100 * e.diff_final, 100 * e.diff_final_lo, 100 * e.diff_final_hi, "{:+.2f}")
        jac = ci(e.jaccard_final, e.jaccard_final_lo, e.jaccard_final_hi)
        top = ci(o.jaccard_top_n, o.jaccard_top_n_lo, o.jaccard_top_n_hi)
        print(f"  step {int(e.step)}: share above {a.high:g} minus the final's {diff} pp; "
              f"thresholded Jaccard {jac} (size bound {o.jaccard_bound:.2f}, "
              f"{int(o.n_high)} vs {n_final}); equal-size overlap (top-{int(o.top_n)}) {top}")
    flat = " / ".join(f"{ov.loc[r_, 'jaccard_top_n']:.2f}" for r_ in series[:-1])
    print(f"  equal-size overlap by step: {flat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
