"""Cross-sampling tokens/s: the lockstep KV-cached decoder against full-prefix recompute.

    python benchmarks/cross_sample_throughput.py [--new-tokens 256] [--batch-size 16]
                                                 [--base DIR --tuned DIR] [--threads N]

- cached:   core.experiments.cross_sampling.cross_decode, both models stepping one token at a time
            through their own KV caches (the production path)
- no cache: the same decoder with use_cache=False: every step re-runs the whole left-padded
            prefix through both models (what a naive implementation does)
Both decode the same batch of forward cross-sampling rows (primary base, eps 0.1, T=1,
top-p 0.7, fixed seeds) for exactly --new-tokens tokens (EOS is ignored so every row runs
to the cap). Prints tokens/s of each, the ratio (target >= 5x at 256 new tokens) and
whether both produced the same tokens. By default the pair is two randomly initialised
demo-architecture Llamas (core.demo.model.build_model, max_positions 512), so it runs
anywhere without the demo assets; --base/--tuned load real model folders instead.
No asserts: this prints figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.demo.task import prompt_records, sample_problems  # noqa: E402
from core.engine.sampling import encode_prompts  # noqa: E402
from core.experiments.cross_sampling import Job, cross_decode  # noqa: E402


def random_pair(hidden: int, layers: int, heads: int, max_positions: int):
    from core.demo.model import build_model
    from core.demo.tokenizer import build_tokenizer

    tok = build_tokenizer()
    base = build_model(tok, hidden, layers, heads, max_positions=max_positions, seed=1).eval()
    tuned = build_model(tok, hidden, layers, heads, max_positions=max_positions, seed=2).eval()
    return tok, base, tuned


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="base model folder (default: a random demo-size Llama)")
    ap.add_argument("--tuned", help="tuned model folder (with --base)")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16, help="rows decoded in lockstep")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2, help="best of N for the cached run")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.base:
        from core.engine.pair import load_pair

        pair = load_pair(a.base, a.tuned or a.base, device=a.device)
        tok, base, tuned = pair.tokenizer, pair.base.model, pair.tuned.model
    else:
        tok, base, tuned = random_pair(a.hidden, a.layers, a.heads, a.new_tokens + 64)
        base.to(a.device), tuned.to(a.device)
    recs = prompt_records(sample_problems(a.batch_size, "heldout", seed=0), "p")
    prompts = encode_prompts(tok, [r["prompt"] for r in recs], chat_template=True)
    jobs = [Job(p, "base", a.eps, seed=i) for i, p in enumerate(prompts)]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    kw = dict(eos_id=None, pad_id=pad, max_new_tokens=a.new_tokens, temperature=1.0, top_p=0.7)

    def timed(use_cache: bool):
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = cross_decode(base, tuned, jobs, use_cache=use_cache, **kw)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t, out

    cross_decode(base, tuned, jobs[:2], use_cache=True, **dict(kw, max_new_tokens=4))  # warm-up
    runs = [timed(True) for _ in range(max(1, a.repeat))]
    t_cache, got_cache = min(runs, key=lambda r: r[0])
    t_full, got_full = timed(False)
    n_tok = sum(len(d.tokens) for d in got_cache)
    same = sum(x.tokens == y.tokens for x, y in zip(got_cache, got_full))
    n_sw = sum(len(d.switched) for d in got_cache)
    params = sum(p.numel() for p in base.parameters())
    print(f"pair: {'%s vs %s' % (a.base, a.tuned) if a.base else 'random demo-size Llamas'} "
          f"({params / 1e6:.2f} M params each), device {a.device}, "
          f"threads {torch.get_num_threads()}")
    print(f"rows {len(jobs)}, new tokens {a.new_tokens} per row, generated {n_tok}, "
          f"switched {100 * n_sw / max(1, n_tok):.1f}% at eps {a.eps}")
    print(f"cached    {n_tok / t_cache:10.0f} tokens/s  ({t_cache:.2f} s, lockstep KV caches)")
    print(f"no cache  {n_tok / t_full:10.0f} tokens/s  ({t_full:.2f} s, full prefix each step)")
    print(f"speed-up cached/no-cache: {t_full / t_cache:.1f}x   (target >= 5x)")
    print(f"rows with identical tokens both ways: {same}/{len(jobs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
