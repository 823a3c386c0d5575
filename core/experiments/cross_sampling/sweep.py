"""Sweeps: accuracy against switch budget for forward, reverse and the random control.

For every prompt and sample k the sweep decodes:
- forward (primary base, intervention tuned) and reverse (primary tuned, intervention
  base) at each eps of the grid;
- the random-position control of each of those samples (`control_positions`);
- the two endpoints, base alone and tuned alone (eps = inf: the primary only).
Every row of (prompt, k) shares one sampling seed (common random numbers, see decode.py),
so the endpoints equal forward/reverse at eps = inf and curves differ only by decisions.

Random-position control (the scheme): the reference is a cross-sampled sample with
`n` switches and `L` tokens. The control draws `n` distinct steps uniformly from 0..L-1
(seeded by prompt, k, direction and eps) and decodes the same primary with the same
sampling seed, switching to the intervention exactly at those steps and nowhere else.
The length of the control sample is not known in advance; switches past its end are not
performed, so it performs exactly `n` switches whenever it is at least as long as its
largest chosen step + 1 (in particular whenever it is at least L tokens long). The
performed count is `n_switched`, the requested one `n_requested`.

Work runs in chunks of prompts (every direction, eps, control and endpoint of a chunk
before the next chunk), so a progress callback sees every curve fill in together.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core import verifiers
from core.engine.batching import derive_seed
from core.engine.lockstep import Job, cross_decode
from core.engine.sampling import encode_prompts
from core.prompts import PromptRow

DIRECTIONS = {"forward": "base", "reverse": "tuned"}  # direction -> primary model
ENDPOINTS = ("base", "tuned")  # each model alone


def control_positions(n: int, length: int, seed: int) -> frozenset[int]:
    """`n` distinct steps drawn uniformly from 0..length-1 (all of them when n >= length)."""
    n, length = max(0, int(n)), max(0, int(length))
    if n >= length:
        return frozenset(range(length))
    rng = np.random.default_rng(seed)
    return frozenset(int(x) for x in rng.choice(length, size=n, replace=False))


def bootstrap_ci(per_prompt: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): percentile bootstrap of the mean over prompts (resampled with
    replacement). `per_prompt` is one value per prompt, e.g. that prompt's accuracy."""
    a = np.asarray(per_prompt, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    est = float(a.mean())
    if a.size == 1 or n_boot <= 0:
        return est, est, est
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return est, float(lo), float(hi)


def _direction_order(d: str) -> int:
    order = ["base", "tuned", "forward", "reverse"]
    return order.index(d) if d in order else len(order)


def summarize(rows: pd.DataFrame | list[dict], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (direction, eps, control): n samples, n_prompts, budget (mean share of tokens
    switched per sample), token_share (all switched / all tokens), mean_tokens, accuracy
    and its bootstrap CI over prompts (ci_lo, ci_hi). Accuracy is the mean over prompts of
    each prompt's accuracy over its samples; every group resamples prompts with the same
    seed, so groups over the same prompts share their bootstrap draws (paired)."""
    df = pd.DataFrame(rows)
    cols = ["direction", "eps", "control", "n", "n_prompts", "budget", "token_share",
            "mean_tokens", "accuracy", "ci_lo", "ci_hi"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for (d, e, c), g in df.groupby(["direction", "eps", "control"], sort=False):
        per_prompt = g.groupby("prompt_id", sort=True)["correct"].mean()
        acc, lo, hi = bootstrap_ci(per_prompt.to_numpy(), n_boot, seed)
        out.append({"direction": d, "eps": float(e), "control": bool(c), "n": len(g),
                    "n_prompts": len(per_prompt), "budget": float(g["budget"].mean()),
                    "token_share": float(g["n_switched"].sum() / max(1, g["n_tokens"].sum())),
                    "mean_tokens": float(g["n_tokens"].mean()),
                    "accuracy": acc, "ci_lo": lo, "ci_hi": hi})
    res = pd.DataFrame(out, columns=cols)
    key = res["direction"].map(_direction_order)
    return (res.assign(_k=key).sort_values(["_k", "control", "eps"])
            .drop(columns="_k").reset_index(drop=True))


@dataclass
class Progress:
    """What a progress callback receives after each batch."""

    done: int  # samples finished so far
    total: int  # samples the whole sweep will produce
    new_rows: list[dict]  # rows of the batch just finished
    rows: list[dict]  # every row so far (the same list object throughout the sweep)
    seconds: float
    tokens: int  # tokens generated so far

    def summary(self, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
        return summarize(self.rows, n_boot, seed)


@dataclass
class SweepResult:
    rows: list[dict]
    summary: pd.DataFrame
    cancelled: bool
    seconds: float
    tokens: int
    settings: dict = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def sweep(pair, prompts: Sequence[PromptRow], directions: Sequence[str] = ("forward", "reverse"),
          eps_grid: Sequence[float] = (0.02, 0.05, 0.1, 0.2), control: bool = True,
          samples: int = 1, *, endpoints: bool = True, temperature: float = 1.0,
          top_p: float = 0.7, max_new_tokens: int = 128, seed: int = 0, batch_size: int = 32,
          chat_template: bool = True, n_boot: int = 1000,
          on_batch: Callable[[Progress], None] | None = None,
          cancel: threading.Event | Callable[[], bool] | None = None,
          on_step: Callable[[int], None] | None = None) -> SweepResult:
    """Cross-sample `prompts` under `pair` (.base.model, .tuned.model, .tokenizer) over
    directions x eps_grid x samples, with the random control and both endpoints.

    `on_batch(Progress)` is called after every batch; `cancel` (an Event or a callable
    returning True) is checked before every batch and stops the sweep cleanly between
    batches (`SweepResult.cancelled`; rows hold what finished). `on_step(n_rows)` is
    passed to the decoder (tokens generated per step, for a token-level progress bar).
    """
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ValueError(f"unknown direction(s) {bad}; use {', '.join(DIRECTIONS)}")
    if samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError("samples, batch_size and max_new_tokens must be >= 1")
    tok = pair.tokenizer
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    ids = encode_prompts(tok, [r.prompt for r in prompts], chat_template)
    eps_grid = [float(e) for e in eps_grid]
    per_prompt = samples * (len(directions) * len(eps_grid) * (2 if control else 1)
                            + (len(ENDPOINTS) if endpoints else 0))
    total = per_prompt * len(prompts)
    chunk = max(1, batch_size // max(1, samples * len(directions) * len(eps_grid)))
    dec_kw = dict(eos_id=eos, pad_id=pad, max_new_tokens=max_new_tokens,
                  temperature=temperature, top_p=top_p, on_step=on_step)
    rows: list[dict] = []
    t0 = time.perf_counter()
    n_tok = 0
    cancelled = False

    def row_of(d) -> dict:
        tag = d.job.tag
        p = prompts[tag["i"]]
        text = tok.decode(d.tokens, skip_special_tokens=True)
        answer, ok = verifiers.get(p.verifier)(text, p.answer)
        n = len(d.tokens)
        return {"prompt_id": p.id, "sample_index": tag["k"], "direction": tag["direction"],
                "eps": tag["eps"], "control": tag["control"], "switched": list(d.switched),
                "n_switched": len(d.switched), "n_requested": tag.get("n_requested"),
                "n_tokens": n, "budget": len(d.switched) / max(1, n), "tokens": list(d.tokens),
                "js": d.js, "text": text, "answer": answer, "correct": bool(ok),
                "finished": d.finished, "seed": d.job.seed}

    def run(jobs: list[Job]) -> list | None:
        """Decode `jobs` in batches; None when cancelled."""
        nonlocal n_tok, cancelled
        got = []
        for s in range(0, len(jobs), batch_size):
            if _cancelled(cancel):
                cancelled = True
                return None
            dec = cross_decode(pair.base.model, pair.tuned.model, jobs[s:s + batch_size],
                               **dec_kw)
            new = [row_of(d) for d in dec]
            rows.extend(new)
            n_tok += sum(r["n_tokens"] for r in new)
            got.extend(dec)
            if on_batch is not None:
                on_batch(Progress(len(rows), total, new, rows, time.perf_counter() - t0, n_tok))
        return got

    for c0 in range(0, len(prompts), chunk):
        idx = range(c0, min(c0 + chunk, len(prompts)))
        row_seed = {(i, k): derive_seed(seed, prompts[i].id, k) for i in idx
                    for k in range(samples)}
        cross = [Job(ids[i], DIRECTIONS[d], e, None, row_seed[i, k],
                     {"i": i, "k": k, "direction": d, "eps": e, "control": False})
                 for i in idx for k in range(samples) for d in directions for e in eps_grid]
        got = run(cross)
        if got is None:
            break
        if control:
            ctrl = []
            for d in got:
                t = d.job.tag
                pos = control_positions(
                    len(d.switched), len(d.tokens),
                    derive_seed(seed, prompts[t["i"]].id, t["k"], t["direction"], t["eps"],
                                "control"))
                ctrl.append(Job(d.job.prompt_ids, d.job.primary, math.inf, pos, d.job.seed,
                                dict(t, control=True, n_requested=len(d.switched))))
            if run(ctrl) is None:
                break
        if endpoints:
            # One batch family per model: each batch then runs a single model.
            ends = [Job(ids[i], m, math.inf, None, row_seed[i, k],
                        {"i": i, "k": k, "direction": m, "eps": math.inf, "control": False})
                    for m in ENDPOINTS for i in idx for k in range(samples)]
            if run([j for j in ends if j.primary == "base"]) is None:
                break
            if run([j for j in ends if j.primary == "tuned"]) is None:
                break
    seconds = time.perf_counter() - t0
    # A canonical order, whatever the batch size: prompt, sample, direction, control, eps.
    where = {p.id: i for i, p in enumerate(prompts)}
    rows.sort(key=lambda r: (where[r["prompt_id"]], r["sample_index"],
                             _direction_order(r["direction"]), r["control"], r["eps"]))
    settings = dict(directions=list(directions), eps_grid=eps_grid, control=control,
                    samples=samples, endpoints=endpoints, temperature=temperature, top_p=top_p,
                    max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                    chat_template=chat_template, n_boot=n_boot, n_prompts=len(prompts))
    return SweepResult(rows, summarize(rows, n_boot, seed), cancelled, seconds, n_tok, settings)
