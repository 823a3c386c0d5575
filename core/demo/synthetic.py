"""A synthetic run of any size, for benchmarks and scale tests (no models needed).

`write_synthetic_run(folder, n_tokens)` writes a run folder whose tables follow core.store.schema
and whose numbers look like a real pair's: js sparse (~90% of tokens below 0.01) with a heavy
tail, entropies and ranks that rise with js, traces with prompts, verdicts and top-k lists.
Tables are written in chunks of whole traces (part files `tokens.parquet/part-NNNNN.parquet`
etc., read by core.queries like any part-file run) with the engine's own storage functions,
so memory stays bounded by one chunk. The manifest's kind is "synthetic".
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np

from core.store.schema import SCHEMA_VERSION, TOKENS_FILE, TOPK_FILE, TRACES_FILE
from core.store.storage import (
    tokens_table,
    topk_table,
    traces_table,
    write_manifest,
    write_parquet,
)

LN2 = math.log(2)
VOCAB_SIZE = 4000
_COMMON = ["the", " the", " answer", " is", "\n", " =", " +", " x", " so", ",", ".", " of",
           " we", " Let", " step", " 1", " 2", " 3", " 4", " 5", " 0", " Wait", " But",
           " therefore", "\n\n", " Therefore", " boxed", "{", "}", " check", ""]
_TOPICS = ["integer", "triangle", "sequence", "probability", "polynomial", "circle",
           "remainder", "divisor", "sum", "product", "angle", "fraction"]


def _vocab() -> np.ndarray:
    words = _COMMON + [f" w{i}" for i in range(VOCAB_SIZE - len(_COMMON))]
    return np.array(words, dtype=object)


def _lengths(n_tokens: int, mean_length: int, rng) -> np.ndarray:
    """Trace lengths (lognormal around mean_length, >= 1) summing exactly to n_tokens."""
    sigma = 0.6
    mu = math.log(max(mean_length, 1)) - sigma ** 2 / 2
    out, total = [], 0
    while total < n_tokens:
        L = np.maximum(rng.lognormal(mu, sigma, max(1024, n_tokens // max(mean_length, 1) + 16))
                       .round().astype(np.int64), 1)
        out.append(L)
        total += int(L.sum())
    L = np.concatenate(out)
    cs = np.cumsum(L)
    n = int(np.searchsorted(cs, n_tokens)) + 1
    L = L[:n].copy()
    L[-1] -= int(cs[n - 1] - n_tokens)
    return L[L > 0]


def _scores(n: int, offsets: np.ndarray, k: int, rng) -> dict:
    """Per-token metrics and top-k lists for n tokens."""
    heavy = rng.random(n) < 0.10
    js = np.where(heavy, 0.01 * (1.0 + rng.pareto(1.1, n)), rng.exponential(0.0018, n))
    js = np.minimum(js, 0.01 * (1 - 1e-3) * ~heavy + LN2 * 0.999 * heavy).astype(np.float32)
    sj = np.sqrt(js / LN2)
    entropy_base = np.maximum(0.0, 0.25 + 3.0 * sj + rng.normal(0, 0.25, n)).astype(np.float32)
    entropy_tuned = np.maximum(0.0, 0.6 * entropy_base + rng.normal(0, 0.15, n)).astype(np.float32)
    rank_base = (1 + rng.geometric(1.0 / (1.0 + 40.0 * js)) - 1).astype(np.int32)
    rank_tuned = np.where(rng.random(n) < 0.97, 1, 2).astype(np.int32)
    logp_tuned = (-rng.exponential(0.15, n) - 0.5 * np.log(rank_tuned)).astype(np.float32)
    dlogp = (rng.normal(0, 0.05, n) + 6.0 * js * np.log1p(rank_base)).astype(np.float32)
    logp_base = (logp_tuned - dlogp).astype(np.float32)
    dlogp = (logp_tuned - logp_base).astype(np.float32)
    zipf = (rng.zipf(1.3, (n, k)) - 1) % VOCAB_SIZE
    token_id = np.where(rank_tuned == 1, zipf[:, 0], (rng.zipf(1.3, n) - 1) % VOCAB_SIZE)
    base_ids = zipf.astype(np.int32)
    # the sampled token sits at base rank `rank_base` when that is within the list
    rb = np.minimum(rank_base, k) - 1
    rows = np.arange(n)
    inlist = rank_base <= k
    base_ids[rows[inlist], rb[inlist]] = token_id[inlist]
    t1r = np.where(js < 0.01, 1, 1 + rng.geometric(0.45, n) - 1 + (rng.random(n) < 0.7))
    t1r = np.maximum(t1r, 1).astype(np.int32)
    tuned_ids = base_ids.copy()
    swap = (t1r > 1) & (t1r <= k)
    c = t1r[swap] - 1
    r = rows[swap]
    tuned_ids[r, 0], tuned_ids[r, c] = base_ids[r, c], base_ids[r, 0]
    over = t1r > k
    tuned_ids[over, 0] = (rng.integers(0, VOCAB_SIZE, int(over.sum()))).astype(np.int32)
    repl = rng.random((n, k)) < np.minimum(1.0, 4.0 * js)[:, None]
    repl[:, 0] = False
    tuned_ids[repl] = rng.integers(0, VOCAB_SIZE, int(repl.sum())).astype(np.int32)

    def probs():
        p = -np.sort(-rng.dirichlet(np.full(k, 0.4), n), axis=1)
        return np.round(p, 4).astype(np.float32)

    base_probs, tuned_probs = probs(), probs()
    pb = np.where(t1r <= k, base_probs[rows, np.minimum(t1r, k) - 1],
                  np.round(rng.uniform(0, 1e-3, n), 6)).astype(np.float32)
    return {
        "offsets": offsets, "token_id": token_id.astype(np.int32), "js": js,
        "js_top_p": (js * rng.uniform(0.9, 1.0, n)).astype(np.float32),
        "js_top_p90": (js * rng.uniform(0.95, 1.0, n)).astype(np.float32),
        "js_top_p95": (js * rng.uniform(0.97, 1.0, n)).astype(np.float32),
        "kl_tb": (js * rng.uniform(2.0, 4.0, n)).astype(np.float32),
        "kl_bt": (js * rng.uniform(2.0, 4.0, n)).astype(np.float32),
        "entropy_base": entropy_base, "entropy_tuned": entropy_tuned,
        "logp_base": logp_base, "logp_tuned": logp_tuned, "dlogp": dlogp,
        "rank_base": rank_base, "rank_tuned": rank_tuned,
        "top1_agree": (rank_base == 1) & (rank_tuned == 1),
        "base_topk_ids": base_ids, "tuned_topk_ids": tuned_ids,
        "base_topk_probs": base_probs, "tuned_topk_probs": tuned_probs,
        "tuned_top1_rank_base": t1r, "tuned_top1_prob_base": pb,
    }


def _trace_rows(tids: np.ndarray, lengths: np.ndarray, responses: list[str], rng,
                seed: int, samples_per_prompt: int = 8) -> list[dict]:
    rows = []
    for tid, L, resp in zip(tids.tolist(), lengths.tolist(), responses, strict=True):
        pnum = tid // samples_per_prompt
        si = tid % samples_per_prompt
        src = "tuned" if si < samples_per_prompt // 2 else "base"
        correct = bool(rng.random() < (0.62 if src == "tuned" else 0.41))
        ref = str(pnum % 997)
        rows.append({
            "trace_id": tid, "prompt_id": f"p{pnum:06d}",
            "prompt": f"Problem {pnum}: find the {_TOPICS[pnum % len(_TOPICS)]} for n = {pnum}.",
            "response": resp, "reference": ref, "verifier": "math",
            "extracted_answer": ref if correct else (None if rng.random() < 0.2 else str(pnum)),
            "correct": correct, "length": int(L), "sampled_from": src,
            "sample_index": si % (samples_per_prompt // 2), "seed": seed * 1_000_003 + tid,
            "finished": bool(rng.random() < 0.95),
            "difficulty": ("easy", "medium", "hard")[pnum % 3],
        })
    return rows


def write_synthetic_run(folder, n_tokens: int = 10_000_000, mean_length: int = 300,
                        seed: int = 0, k: int = 10, chunk_rows: int = 1_000_000,
                        name: str | None = None) -> Path:
    """Write a synthetic run of `n_tokens` token rows into `folder` (created); returns it.

    Tables are part-file folders (one part per chunk of about `chunk_rows` rows, whole traces).
    Deterministic in `seed`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for f in (TOKENS_FILE, TOPK_FILE, TRACES_FILE):
        (folder / f).mkdir(exist_ok=True)
    vocab = _vocab()
    lengths = _lengths(int(n_tokens), mean_length, np.random.default_rng([seed, 0]))
    bounds = [0]
    cs = np.cumsum(lengths)
    while bounds[-1] < len(lengths):
        start = int(cs[bounds[-1] - 1]) if bounds[-1] else 0
        nxt = int(np.searchsorted(cs, start + chunk_rows, side="right"))
        bounds.append(max(nxt, bounds[-1] + 1))
    for part, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        rng = np.random.default_rng([seed, part + 1])
        L = lengths[a:b]
        offsets = np.concatenate([[0], np.cumsum(L)])
        n = int(offsets[-1])
        s = _scores(n, offsets, k, rng)
        tids = np.arange(a, b, dtype=np.int32)
        strings = vocab[s["token_id"]]
        responses = ["".join(strings[offsets[i]:offsets[i + 1]]) for i in range(len(L))]
        fn = f"part-{part:05d}.parquet"
        write_parquet(tokens_table(s, tids, strings), folder / TOKENS_FILE / fn)
        write_parquet(topk_table(s, tids, lambda ids: vocab[ids]), folder / TOPK_FILE / fn)
        write_parquet(traces_table(_trace_rows(tids, L, responses, rng, seed)),
                      folder / TRACES_FILE / fn)
    write_manifest(folder, {
        "name": name or folder.name, "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "synthetic", "series_step": None, "traces_from": None,
        "config": {"generator": "core.demo.synthetic", "n_tokens": int(n_tokens),
                   "mean_length": mean_length, "seed": seed, "k": k, "chunk_rows": chunk_rows},
        "models": {}, "prompt_set": {},
        "stats": {"n_traces": int(len(lengths)), "n_tokens": int(lengths.sum()),
                  "n_parts": len(bounds) - 1},
    })
    return folder
