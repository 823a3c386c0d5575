"""The controls of a cross-sample: where a control row switches, and how many times.

A control decodes the same primary with the same sampling seed as its reference row (a
forward or reverse cross-sample at some eps) and switches to the intervention at positions
of its own instead of where js > eps. Two things are chosen:

- How many. `match="changed"` (default): as many *changed tokens* as the reference made
  (core.engine.lockstep: a switch changes the token only where the intervention's draw
  differs from the primary's). Each drawn position arms one change, made at the first step
  from there on where the two draws differ, so every switch of the control changes a token.
  `match="decisions"`: as many switch *decisions* as the reference made, exactly at the
  drawn positions, whether or not they change the token (the original control).
- Where. `random`: positions drawn uniformly from the reference's steps 0..L-1. `entropy`:
  drawn without replacement with probability proportional to the primary's entropy at each
  step of the reference (the high-entropy "forking" tokens of "Beyond the 80/20 Rule",
  arXiv 2506.01939, as the alternative explanation of what the divergent tokens do).
  `untreated`: like `entropy`, but only at steps the reference did NOT switch at (its
  treated steps are excluded, also for the armed changes that wait for differing draws).
  A change can only land where the two models' draws differ, and the treatment takes most
  such steps, so `random` and `entropy` controls often land on the treated steps and decode
  the treatment's own sequence (the summary's same_as_ref says how often); `untreated`
  tells "the high-js tokens matter" from "any differing draw matters".

The coupling: both models' draws at a step use the same uniform u of the row (inverse CDF
over the token ids in id order), so where the two distributions are close the draws agree
and a switch changes nothing; "changed" is this coupling's count, not a property of the
models alone.

A change-matched control row falls short when its sample ends before the armed changes
find steps whose draws differ (on the demo, where the models' draws differ at about one step
in a hundred, a few percent of rows). Such a row is redrawn: new positions of the same kind,
the same sampling seed, up to REDRAWS times; then once more with every change armed at step
0 (the changes land on the first steps whose draws differ). `redraws` records how many
draws it took (REDRAWS + 1: the last). A row still short after that (its own sample has
fewer steps whose draws differ than it must change) is kept as it is and counted
(n_changed < n_requested; the summary's n_short).
A decision-matched control is never redrawn (it falls short only when its sample is
shorter than its largest position).
"""

from __future__ import annotations

import math

import numpy as np

from core.engine.batching import derive_seed
from core.engine.lockstep import Decoded, Job

CONTROL_KINDS = ("random", "entropy", "untreated")
MATCH = ("changed", "decisions")
REDRAWS = 4


def control_positions(n: int, length: int, seed: int) -> frozenset[int]:
    """`n` distinct steps drawn uniformly from 0..length-1 (all of them when n >= length)."""
    n, length = max(0, int(n)), max(0, int(length))
    if n >= length:
        return frozenset(range(length))
    rng = np.random.default_rng(seed)
    return frozenset(int(x) for x in rng.choice(length, size=n, replace=False))


def entropy_positions(n: int, entropy, seed: int) -> frozenset[int]:
    """`n` distinct steps of 0..len(entropy)-1 drawn without replacement, each draw with
    probability proportional to `entropy` at the remaining steps. Steps with zero or
    undefined entropy are drawn only after every step with positive entropy (they get
    weight 1e-12 of the total), so `n` <= len(entropy) steps are always returned."""
    w = np.nan_to_num(np.asarray(entropy, dtype=np.float64), nan=0.0).clip(min=0.0)
    n, length = max(0, int(n)), len(w)
    if n >= length:
        return frozenset(range(length))
    w = w + max(float(w.sum()), 1.0) * 1e-12
    rng = np.random.default_rng(seed)
    return frozenset(int(x) for x in rng.choice(length, size=n, replace=False, p=w / w.sum()))


def positions_for(kind: str, n: int, length: int, entropy, seed: int,
                  exclude: frozenset[int] = frozenset()) -> frozenset[int]:
    if kind == "random":
        return control_positions(n, length, seed)
    if kind == "entropy":
        return entropy_positions(n, list(entropy)[:length], seed)
    if kind == "untreated":  # entropy-weighted over the steps outside `exclude`
        w = [0.0 if i in exclude else float(e) if e == e else 0.0
             for i, e in enumerate(list(entropy)[:length])]
        free = [i for i in range(length) if i not in exclude]
        got = entropy_positions(min(n, len(free)), [w[i] for i in free], seed)
        return frozenset(free[i] for i in got)
    raise ValueError(f"unknown control {kind!r}; use {', '.join(CONTROL_KINDS)}")


def control_job(ref: Decoded, kind: str, match: str, seed_parts: tuple, redraw: int = 0) -> Job:
    """The control row of kind `kind` for the decoded reference row `ref`: the same prompt,
    primary and sampling seed; positions seeded by `seed_parts` (seed, prompt id, k,
    direction, eps), the kind and the redraw number (REDRAWS + 1: all armed at step 0)."""
    n = len(ref.changed) if match == "changed" else len(ref.switched)
    # The random kind's first draw keeps its original seed (decision-matched sweeps repeat).
    extra = ("control",) if kind == "random" else ("control", kind)
    if redraw:
        extra += ("redraw", redraw)
    exclude = frozenset(ref.switched) if kind == "untreated" else frozenset()
    if redraw > REDRAWS:
        pos = (0,) * n  # a change-matched control arms one change per entry
    else:
        pos = positions_for(kind, n, len(ref.tokens), ref.entropy,
                            derive_seed(*seed_parts, *extra), exclude)
    return Job(ref.job.prompt_ids, ref.job.primary, math.inf, pos, ref.job.seed,
               dict(ref.job.tag, control_kind=kind, n_requested=n, redraws=redraw,
                    ref=ref, seed_parts=seed_parts),
               match_changes=match == "changed", exclude=exclude)


def short(d: Decoded) -> bool:
    """A control row that made fewer changes (or decisions) than it was asked to."""
    made = d.changed if d.job.match_changes else d.switched
    return len(made) < d.job.tag["n_requested"]


def redraw_job(d: Decoded, attempt: int) -> Job | None:
    """The next draw for a short change-matched control row (None: keep it as it is)."""
    if not d.job.match_changes or not short(d) or attempt > REDRAWS + 1:
        return None
    t = d.job.tag
    return control_job(t["ref"], t["control_kind"], "changed", t["seed_parts"], attempt)
