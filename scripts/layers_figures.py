"""Regenerate the README's layer-view figures on the demo pair.

    .venv/bin/python scripts/layers_figures.py [--prompts 24] [--traces 8] [--top 3] [--rollouts 8]

Computes a demo-pair run (base vs rl, --prompts held-out prompts x 2 tuned samples, 96 new
tokens) in a temporary cache, then on the --traces traces with the highest js: the layer view at the
token of highest js, the high- vs low-js profile, the attribution averaged over the tokens
with js >= 0.1, and the critical-token scan; writes assets/screenshots/layers-*.png (needs
Chromium for kaleido) and prints the numbers the README quotes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import PrecomputeConfig  # noqa: E402
from core.experiments import attribution as A  # noqa: E402
from core.experiments import critical as C  # noqa: E402
from core.experiments import layers as L  # noqa: E402
from core.figures import layers as F  # noqa: E402
from core.figures.export import figure_bytes  # noqa: E402
from core.precompute.driver import precompute  # noqa: E402
from core.store.run import Run  # noqa: E402

DEMO = ROOT / "assets" / "demo"
OUT = ROOT / "assets" / "screenshots"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--traces", type=int, default=8)
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        precompute(PrecomputeConfig(
            base=str(DEMO / "base"), tuned=str(DEMO / "rl"), name="demo-rl-layers", kind="rl",
            prompts=str(ROOT / "assets" / "prompts" / "arith-heldout.jsonl"), cache=tmp,
            max_prompts=a.prompts, n=2, max_new_tokens=96), log=lambda s: None,
            show_progress=False)
        run = Path(tmp) / "demo-rl-layers"
        opened = Run.open(run).require()
        pair = opened.load_pair(device="cpu")
        tok = pq.read_table([str(f) for f in opened.table_files("tokens")]).to_pandas()
        # the traces that hold the run's most divergent tokens (0.4% of the demo's tokens are
        # above 0.1: the first few traces may hold none)
        traces = sorted(tok.groupby("trace_id").js.max().nlargest(a.traces).index.tolist())
        tok = tok[tok.trace_id.isin(traces)]
        peak = tok.loc[tok.js.idxmax()]
        view = L.layer_view(run, int(peak.trace_id), int(peak.pos), pair=pair)
        prof = L.layer_profile(run, traces, pair=pair)
        rows = pd.concat([A.attribute(run, t, pair=pair) for t in traces], ignore_index=True)
        table = A.attribution_table(rows, high=0.1)
        scan = C.scan(run, traces, top=a.top, rollouts=a.rollouts, pair=pair)
        pos = C.positions(scan)
        corr = C.criticality(pos)
        specs = {"layers-lens": F.lens_figure(view, "demo-rl"),
                 "layers-profile": F.profile_figure(prof, "demo-rl"),
                 "layers-attribution": F.attribution_figure(
                     table, "demo-rl", what=f"{int(table.n.max())} tokens with js >= 0.1"),
                 "layers-critical": F.critical_figure(pos, corr, "demo-rl")}
        for name, spec in specs.items():
            (OUT / f"{name}.png").write_bytes(figure_bytes(spec, "png"))
            print(f"{name}: {spec.caption}")
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(view[["layer", "js", "base_kl_final", "tuned_kl_final", "base_top1_token",
                        "tuned_top1_token"]].to_string(index=False))
            print(prof.to_string(index=False))
            print(table.to_string(index=False))
            print(pos.to_string(index=False))
            print(corr.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
