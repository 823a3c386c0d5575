"""What the layer views cost against plain scoring of the same traces, in one process.

    python benchmarks/layers_cost.py [--traces 4] [--top 2] [--rollouts 4] [--repeat 2]

Builds a small demo-pair run in a temporary cache (3 prompts x 2 tuned samples, 48 new
tokens, as tests/layerrun.py), loads the pair once, then per trace times
- scoring:     core.engine.scoring.score_traces of the trace (both models, every metric)
- lens:        core.engine.lens.compare at every response row (one forward per model)
- attribution: core.experiments.attribution.attribute (2 + 2 x (2L + 2) forwards), unsaved
- scan:        core.experiments.critical.scan of the trace (--top per group, --rollouts per
               branch), unsaved
and prints seconds per trace token (scan: per scanned position) and each against scoring
(ratio). Best of --repeat. Timings are for the 4-layer demo on this machine's CPU: on a
32B model the forwards dominate and the attribution ratio tends to its forward count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.engine import lens  # noqa: E402
from core.engine.patching import components  # noqa: E402
from core.engine.scoring import ScoreSettings, score_traces  # noqa: E402
from core.experiments.attribution import attribute  # noqa: E402
from core.experiments.critical import scan  # noqa: E402
from core.experiments.run_trace import chat_template, load_trace, trace_ids  # noqa: E402
from core.store.run import Run  # noqa: E402
from tests.layerrun import build_layer_run  # noqa: E402


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def time_trace(run, pair, tid, a, pad, chat) -> dict:
    """Seconds of each of the four on one trace (best of a.repeat), and its sizes."""
    tr = load_trace(run, tid).encode(pair.tokenizer, chat)
    rows = [tr.row(p) for p in range(len(tr.response_ids))]
    t_s, _ = best(lambda: score_traces(pair.base.model, pair.tuned.model,
                                       [(tr.prompt_ids, tr.response_ids)], pad,
                                       ScoreSettings(batch_size=1)), a.repeat)
    t_l, _ = best(lambda: lens.compare(pair.base.model, pair.tuned.model, tr.ids, rows),
                  a.repeat)
    t_a, _ = best(lambda: attribute(run, tid, pair=pair, save=False), a.repeat)
    t_c, got = best(lambda: scan(run, [tid], top=a.top, rollouts=a.rollouts, pair=pair,
                                 save=False), a.repeat)
    return dict(tokens=len(rows), positions=got.pos.nunique(),
                forked=got[~got.same_choice.astype(bool)].pos.nunique(), score=t_s, lens=t_l,
                attr=t_a, scan=t_c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=int, default=4)
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = build_layer_run(Path(tmp))
        pair = Run.open(run).load_pair(device="cpu")
        tok = pair.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        chat = chat_template(run)
        n_fwd = 2 + 2 * len(components(pair.base.model))
        tot = dict(tokens=0, positions=0, forked=0, score=0.0, lens=0.0, attr=0.0, scan=0.0)
        for tid in trace_ids(run)[:a.traces]:
            for k, v in time_trace(run, pair, tid, a, pad, chat).items():
                tot[k] += v
        n, npos = tot["tokens"], tot["positions"]
        per = tot["score"] / n
        print(f"{a.traces} traces, {n} response tokens, demo pair (4 layers), CPU; "
              f"attribution = {n_fwd} forwards per trace")
        print(f"plain scoring:  {1e3 * per:8.3f} ms per token")
        print(f"layer lens:     {1e3 * tot['lens'] / n:8.3f} ms per token   "
              f"{tot['lens'] / tot['score']:6.1f} x scoring")
        print(f"attribution:    {1e3 * tot['attr'] / n:8.3f} ms per token   "
              f"{tot['attr'] / tot['score']:6.1f} x scoring")
        print(f"critical scan:  {1e3 * tot['scan'] / max(npos, 1):8.1f} ms per position "
              f"({npos} positions; {tot['forked']} where the top-1s differ get {a.rollouts} "
              "rollouts x 2 branches, the rest none)"
              f"   {tot['scan'] / max(npos, 1) / (tot['score'] / a.traces):6.1f} x scoring "
              "a whole trace")


if __name__ == "__main__":
    main()
