"""Where the scoring's time goes against the floor, phase by phase, in one process: the
realistic-shapes pair (benchmarks/realistic_shapes.py: vocabulary 151,936, hidden 1,536,
random init) scores one trace, and the floor runs both models' bare forward passes on the
same tokens, alternating, best of --repeat per phase.

    python benchmarks/scoring_phases.py [--length 2048] [--head-std 0] [--repeat 3]
                                        [--math-dtype float32] [--layers 2]

Floor phases: both bodies (`model.model`), both heads (`lm_head` on all prompt+response rows,
one product per model, as the full forward does) and the full forward itself (what
realistic_shapes.py times). Scoring phases, from cProfile's cumulative times inside one
`score_traces` call: the bodies (heads.ResponseLogits._hidden_rows), the heads' blocks
(heads._head) and the metric math (the fused kernel's wrapper, or the torch Context path:
whatever else is left). Each phase's best is taken on its own, so the phases need not add
up to the best total. A scoring total above the floor by more than the metric math says the
rest of the overhead is in the heads' blocks or the bodies.

realistic_shapes.py gives the end-to-end overhead and the peak memory; this script says
which phase an overhead comes from (the README's 2,048-token analysis of issue 24 is its
output).
"""
from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import realistic_shapes as R  # noqa: E402
import torch  # noqa: E402

from core.engine.scoring import ScoreSettings, score_traces  # noqa: E402

PHASES = {"bodies": "_hidden_rows", "heads": "_head"}


def _cum(stats: pstats.Stats, name: str) -> float:
    """Cumulative seconds of the functions called `name` (outermost calls only)."""
    return sum(v[3] for (_, _, fn), v in stats.stats.items() if fn == name)


def floor_phases(models, ids) -> dict:
    with torch.no_grad():
        t0 = time.perf_counter()
        hidden = [m.model(input_ids=ids, use_cache=False).last_hidden_state for m in models]
        t1 = time.perf_counter()
        for m, h in zip(models, hidden):
            logits = m.lm_head(h)
            del logits
        t2 = time.perf_counter()
        del hidden
        for m in models:
            m(input_ids=ids, use_cache=False)
        t3 = time.perf_counter()
    return {"bodies": t1 - t0, "heads": t2 - t1, "total": t3 - t2}


def scoring_phases(models, prompt, resp, dtype: str) -> dict:
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    score_traces(*models, [(prompt, resp)], 0, ScoreSettings(batch_size=1, math_dtype=dtype))
    prof.disable()
    total = time.perf_counter() - t0
    st = pstats.Stats(prof)
    out = {k: _cum(st, fn) for k, fn in PHASES.items()}
    out["metric math"] = _cum(st, "fused_chunk") or total - out["bodies"] - out["heads"]
    out["total"] = total
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--head-std", type=float, default=0.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--math-dtype", default="float32")
    ap.add_argument("--layers", type=int, default=2)
    a = ap.parse_args()
    load_before = R._load()
    models = (R.build(1, a.head_std, a.layers), R.build(2, a.head_std, a.layers))
    prompt, resp = R.trace(a.length)
    ids = torch.tensor([prompt + resp])
    # one-off costs out of the timing (thread pools, the kernel's load or compilation)
    floor_phases(models, ids[:, :24])
    scoring_phases(models, prompt[:8], resp[:16], a.math_dtype)
    best = {"floor": {}, "scoring": {}}
    for _ in range(max(1, a.repeat)):
        for side, got in (("floor", floor_phases(models, ids)),
                          ("scoring", scoring_phases(models, prompt, resp, a.math_dtype))):
            for k, v in got.items():
                best[side][k] = min(best[side].get(k, math.inf), v)
    f, s = best["floor"], best["scoring"]
    print(f"load average {load_before} (before), {R._load()} (after)")
    print(f"length {a.length} (+64 prompt), vocab {R.VOCAB}, hidden 1536, {a.layers} layers, "
          f"head std {a.head_std or 'random init'}, math {a.math_dtype}, "
          f"{torch.get_num_threads()} threads, best of {a.repeat} per phase")
    print(f"{'phase':>12} {'floor s':>9} {'scoring s':>10} {'share of floor':>15}")
    for k in ("bodies", "heads", "metric math", "total"):
        fv = f.get(k)
        share = f"{s[k] / f['total']:.1%}" if k == "metric math" else ""
        print(f"{k:>12} {'-' if fv is None else f'{fv:9.2f}':>9} {s[k]:10.2f} {share:>15}")
    print(f"overhead (best totals): {s['total'] / f['total'] - 1:+.1%}")


if __name__ == "__main__":
    main()
