"""Sweeps: accuracy against switch budget for forward, reverse and their controls.

For every prompt and sample k the sweep decodes:
- forward (primary base, intervention tuned) and reverse (primary tuned, intervention
  base) at each eps of the grid;
- the controls of each of those samples (controls.py: `random` and/or `entropy` positions,
  matched on the reference's changed tokens or on its switch decisions);
- the two endpoints, base alone and tuned alone (eps = inf: the primary only).
Every row of (prompt, k) shares one sampling seed (common random numbers, see
core.engine.lockstep), so the endpoints equal forward/reverse at eps = inf and curves
differ only by decisions.

Each row records its switch decisions (`switched`, `n_switched`, `budget`) and the tokens
they actually changed (`changed`, `n_changed`, `budget_changed`; lockstep's docstring
defines "changed"). A control row's `n_requested` is the reference's count it was asked to
match; it performs fewer only when its sample ends first (see controls.py).

Work runs in chunks of prompts (every direction, eps, control and endpoint of a chunk
before the next chunk), so a progress callback sees every curve fill in together.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import pandas as pd

from core.engine.batching import derive_seed
from core.engine.lockstep import Job, cross_decode
from core.engine.sampling import encode_prompts
from core.experiments.cross_sampling.controls import (
    CONTROL_KINDS,
    MATCH,
    REDRAWS,
    control_job,
    redraw_job,
)
from core.experiments.cross_sampling.summary import _direction_order, summarize
from core.inputs import verifiers
from core.inputs.prompts import PromptRow

DIRECTIONS = {"forward": "base", "reverse": "tuned"}  # direction -> primary model
ENDPOINTS = ("base", "tuned")  # each model alone


@dataclass
class Progress:
    """What a progress callback receives after each batch."""

    done: int  # samples finished so far
    total: int  # samples the whole sweep will produce
    new_rows: list[dict]  # rows of the batch just finished
    rows: list[dict]  # every row so far (the same list object throughout the sweep)
    seconds: float
    tokens: int  # tokens generated so far

    match: str = "changed"

    def summary(self, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
        return summarize(self.rows, n_boot, seed, self.match)


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


def _kinds(control) -> list[str]:
    """True -> every control kind, False/None -> none, else the kinds given."""
    if control is True:
        return list(CONTROL_KINDS)
    if not control:
        return []
    kinds = [control] if isinstance(control, str) else list(control)
    bad = [k for k in kinds if k not in CONTROL_KINDS]
    if bad:
        raise ValueError(f"unknown control(s) {bad}; use {', '.join(CONTROL_KINDS)}")
    return kinds


def sweep(pair, prompts: Sequence[PromptRow], directions: Sequence[str] = ("forward", "reverse"),
          eps_grid: Sequence[float] = (0.02, 0.05, 0.1, 0.2),
          control: bool | str | Sequence[str] = True, samples: int = 1, *,
          match: str = "changed", endpoints: bool = True, temperature: float = 1.0,
          top_p: float = 0.7, max_new_tokens: int = 128, seed: int = 0, batch_size: int = 32,
          chat_template: bool = True, n_boot: int = 1000,
          on_batch: Callable[[Progress], None] | None = None,
          cancel: threading.Event | Callable[[], bool] | None = None,
          on_step: Callable[[int], None] | None = None) -> SweepResult:
    """Cross-sample `prompts` under `pair` (.base.model, .tuned.model, .tokenizer) over
    directions x eps_grid x samples, with controls and both endpoints.

    `control`: the control kinds (controls.CONTROL_KINDS; True: all, False: none); `match`:
    "changed" (each control row changes as many tokens as its reference) or "decisions"
    (as many switch decisions).

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
    kinds = _kinds(control)
    if match not in MATCH:
        raise ValueError(f"unknown match {match!r}; use {', '.join(MATCH)}")
    tok = pair.tokenizer
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    ids = encode_prompts(tok, [r.prompt for r in prompts], chat_template)
    eps_grid = [float(e) for e in eps_grid]
    per_prompt = samples * (len(directions) * len(eps_grid) * (1 + len(kinds))
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
        kind = tag.get("control_kind", "")
        return {"prompt_id": p.id, "sample_index": tag["k"], "direction": tag["direction"],
                "eps": tag["eps"], "control": bool(kind), "control_kind": kind,
                "switched": list(d.switched), "n_switched": len(d.switched),
                "changed": list(d.changed), "n_changed": len(d.changed),
                "n_requested": tag.get("n_requested"), "redraws": tag.get("redraws"),
                "n_tokens": n,
                "budget": len(d.switched) / max(1, n), "budget_changed": len(d.changed) / max(1, n),
                "tokens": list(d.tokens), "js": d.js, "entropy": d.entropy, "text": text,
                "answer": answer, "correct": bool(ok), "finished": d.finished,
                "seed": d.job.seed}

    def decode(jobs: list[Job]) -> list:
        return cross_decode(pair.base.model, pair.tuned.model, jobs, **dec_kw)

    def run(jobs: list[Job]) -> list | None:
        """Decode `jobs` in batches (short controls redrawn, controls.py); None when
        cancelled."""
        nonlocal n_tok, cancelled
        got = []
        for s in range(0, len(jobs), batch_size):
            if _cancelled(cancel):
                cancelled = True
                return None
            dec = decode(jobs[s:s + batch_size])
            for attempt in range(1, REDRAWS + 2):
                again = [(i, j) for i, d in enumerate(dec)
                         if (j := redraw_job(d, attempt)) is not None]
                if not again:
                    break
                for (i, _), d in zip(again, decode([j for _, j in again])):
                    dec[i] = d
            new = [row_of(d) for d in dec]
            rows.extend(new)
            n_tok += sum(r["n_tokens"] for r in new)
            got.extend(dec)
            if on_batch is not None:
                on_batch(Progress(len(rows), total, new, rows, time.perf_counter() - t0, n_tok,
                                  match))
        return got

    for c0 in range(0, len(prompts), chunk):
        idx = range(c0, min(c0 + chunk, len(prompts)))
        row_seed = {(i, k): derive_seed(seed, prompts[i].id, k) for i in idx
                    for k in range(samples)}
        cross = [Job(ids[i], DIRECTIONS[d], e, None, row_seed[i, k],
                     {"i": i, "k": k, "direction": d, "eps": e})
                 for i in idx for k in range(samples) for d in directions for e in eps_grid]
        got = run(cross)
        if got is None:
            break
        ctrl = [control_job(d, kind, match, (seed, prompts[d.job.tag["i"]].id, d.job.tag["k"],
                                             d.job.tag["direction"], d.job.tag["eps"]))
                for kind in kinds for d in got]
        if ctrl and run(ctrl) is None:
            break
        if endpoints:
            # One batch family per model: each batch then runs a single model.
            ends = [Job(ids[i], m, math.inf, None, row_seed[i, k],
                        {"i": i, "k": k, "direction": m, "eps": math.inf})
                    for m in ENDPOINTS for i in idx for k in range(samples)]
            if run([j for j in ends if j.primary == "base"]) is None:
                break
            if run([j for j in ends if j.primary == "tuned"]) is None:
                break
    seconds = time.perf_counter() - t0
    # A canonical order, whatever the batch size: prompt, sample, direction, control, eps.
    where = {p.id: i for i, p in enumerate(prompts)}
    rows.sort(key=lambda r: (where[r["prompt_id"]], r["sample_index"],
                             _direction_order(r["direction"]), r["control_kind"], r["eps"]))
    settings = dict(directions=list(directions), eps_grid=eps_grid, controls=kinds, match=match,
                    samples=samples, endpoints=endpoints, temperature=temperature, top_p=top_p,
                    max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                    chat_template=chat_template, n_boot=n_boot, n_prompts=len(prompts))
    return SweepResult(rows, summarize(rows, n_boot, seed, match), cancelled, seconds, n_tok,
                       settings)
