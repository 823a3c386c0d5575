"""Scored tokens/s of the engine against a straightforward baseline, on the same traces.

    python benchmarks/score_throughput.py [--traces 64] [--base assets/demo/base] [--tuned ...]

- engine:   core.engine.scoring.score_traces (one batched forward per model) + the Parquet write
- baseline: a per-trace loop that scores position by position, each with a full-prefix
            forward of both models (no batching, no reuse), same metric functions
- floor:    the two models' bare forward passes over the engine's batches
Prints tokens/s of each, the engine/baseline ratio (target >= 5x), the engine's overhead
above the floor (target <= 25%) and bytes per token of tokens.parquet (target <= 64).
Timings are best of --repeat runs, all in this process on this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.engine.batching import length_batches  # noqa: E402
from core.engine.detok import Detokenizer  # noqa: E402
from core.engine.pair import load_pair  # noqa: E402
from core.engine.sampling import sample  # noqa: E402
from core.engine.scoring import ScoreSettings, score_traces  # noqa: E402
from core.metrics import compute_metrics, topk  # noqa: E402
from core.store.storage import tokens_table, topk_table, write_parquet  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def baseline(base, tuned, traces, top_k: int) -> None:
    with torch.no_grad():
        for prompt, resp in traces:
            for j, tok in enumerate(resp):
                ids = torch.tensor([prompt + resp[:j]])
                lb = base(input_ids=ids).logits[0, -1:].double()
                lt = tuned(input_ids=ids).logits[0, -1:].double()
                compute_metrics(lb, lt, torch.tensor([tok]))
                topk(lb, top_k), topk(lt, top_k)


def floor(base, tuned, traces, batch_size: int, pad: int) -> None:
    lengths = [len(p) + len(r) for p, r in traces]
    with torch.no_grad():
        for batch in length_batches(lengths, batch_size):
            width = max(lengths[i] for i in batch)
            ids = torch.full((len(batch), width), pad)
            attn = torch.zeros((len(batch), width), dtype=torch.long)
            for b, i in enumerate(batch):
                seq = traces[i][0] + traces[i][1]
                ids[b, :len(seq)] = torch.tensor(seq)
                attn[b, :len(seq)] = 1
            base(input_ids=ids, attention_mask=attn)
            tuned(input_ids=ids, attention_mask=attn)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=str(ROOT / "assets/demo/base"))
    ap.add_argument("--tuned", default=str(ROOT / "assets/demo/rl"))
    ap.add_argument("--prompts", default=str(ROOT / "assets/prompts/arith-heldout.jsonl"))
    ap.add_argument("--traces", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    pair = load_pair(a.base, a.tuned)
    tok = pair.tokenizer
    from core.inputs.prompts import load_prompts
    rows = load_prompts(a.prompts, limit=a.traces).rows
    got = sample(pair.tuned.model, tok, [r.prompt for r in rows], max_new_tokens=96, seed=0)
    traces = [(s.prompt_ids, s.response_ids) for s in got]
    n_tok = sum(len(r) for _, r in traces)
    pad = tok.pad_token_id
    mb, mt = pair.base.model, pair.tuned.model
    settings = ScoreSettings(batch_size=a.batch_size, top_k=a.top_k)
    tmp = Path(tempfile.mkdtemp())

    def engine():
        scores = score_traces(mb, mt, traces, pad, settings)
        tids = np.arange(len(traces))
        detok = Detokenizer(tok)
        strings = [s for p, r in traces for s in detok.response(r, p)]
        write_parquet(tokens_table(scores, tids, strings), tmp / "tokens.parquet")
        write_parquet(topk_table(scores, tids, detok.display), tmp / "topk.parquet")

    t_engine = best(engine, a.repeat)
    t_floor = best(lambda: floor(mb, mt, traces, a.batch_size, pad), a.repeat)
    t_base = best(lambda: baseline(mb, mt, traces, a.top_k), 1)
    size = (tmp / "tokens.parquet").stat().st_size
    print(f"traces {len(traces)}, scored tokens {n_tok}, threads {torch.get_num_threads()}")
    print(f"engine   {n_tok / t_engine:10.0f} tokens/s  ({t_engine:.3f} s, incl. Parquet write)")
    print(f"baseline {n_tok / t_base:10.0f} tokens/s  ({t_base:.3f} s, per-position full-prefix)")
    print(f"floor    {n_tok / t_floor:10.0f} tokens/s  ({t_floor:.3f} s, bare forward passes)")
    print(f"speed-up engine/baseline: {t_base / t_engine:.1f}x   (target >= 5x)")
    print(f"engine overhead above floor: {100 * (t_engine - t_floor) / t_floor:.1f}%   "
          f"(target <= 25%)")
    print(f"tokens.parquet: {size / n_tok:.1f} bytes/token   (target <= 64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
