"""The lockstep cross-sampler: base and tuned decode one shared (mixed) prefix per row.

A row (`Job`) names its primary model ("base" or "tuned"); the other is the intervention.
At every step both models score the row's current prefix, each through its own KV cache,
and the row takes its next token from the intervention model when

    js(primary, intervention) > eps        (cross-sampling; eps = inf never switches), or
    step in positions                      (a control matched on decisions; eps ignored), or
    a change is pending and the draws differ  (a control matched on changed tokens: each
                                            step in positions arms one change, made at the
                                            first step from there on where it changes the token)

else from the primary. Rows stop at EOS or after `max_new_tokens` tokens.

Decisions and changed tokens. A switch is a decision; it changes the token only when the
intervention's draw differs from the token the primary would have taken at that step. "Would
have taken" is defined with the row's own random number: at every step both models' tokens
are drawn from the same prefix (the row's mixed prefix so far) with the same uniform u, the
same temperature and the same top-p (greedy: both argmaxes), and the row keeps the one its
decision picks. `Decoded.changed` lists the switched steps whose two draws differ; a switch
whose draws agree (the intervention took the primary's token anyway) changes nothing. It is
a per-step counterfactual on the mixed prefix, not a comparison with the primary-alone trace
(which diverges after the first changed token). `Decoded.entropy` is the primary's entropy
(nats, temperature 1, full vocabulary: the run's entropy_base / entropy_tuned) per step.

Shapes: B rows in a batch, A <= B rows still running, W prompt width after left padding,
V vocabulary size. Prompts are left padded; the 2-D attention mask (A, W + t) hides the
pads and position ids count only real tokens, so a padded row sees exactly the positions
and keys it would see alone. Finished rows are dropped from both caches
(`Cache.batch_select_indices`), so a long row does not keep paying for short ones.

Distributions (why this way):
- The switch decision compares the temperature-1 distributions, each truncated to the
  top-p nucleus and renormalised (`top_p=1`: the full distributions). That is the same
  quantity as the run's `js_top_p` column (or `js` at top_p=1), so an eps read off a run's
  histogram means the same here, whatever the sampling temperature.
- The token is then drawn from the chosen model at `temperature`, with the same top-p
  truncation; `temperature=0` is greedy (argmax).
- Each row draws one uniform per step from its own `torch.Generator(seed)` and inverts the
  CDF. A row's result is therefore independent of batch size and batch mates, and rows
  that share a seed share their random numbers (common random numbers): the forward row
  at eps = inf reproduces the base-alone row token for token, and a sweep's eps values
  differ only where the decisions differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Collection

import torch
import torch.nn.functional as F

from core.engine.batching import left_pad
from core.engine.heads import chunk_rows, resolve_budget
from core.metrics.kernels import js_from_logprobs
from core.metrics.nucleus import top_p_logprobs

MODELS = ("base", "tuned")


@dataclass
class Job:
    """One row to decode. `tag` is free for the caller (e.g. prompt id, direction)."""

    prompt_ids: list[int]
    primary: str = "base"  # "base" or "tuned"; the other model is the intervention
    eps: float = math.inf  # switch when js > eps (inf: never, negative: always)
    positions: Collection[int] | None = None  # control: switch at these steps (see match)
    seed: int = 0
    tag: object = None
    # Control matched on changed tokens: each entry of `positions` arms one change (a step
    # may repeat), made at the first step from there on whose two draws differ. False:
    # switch exactly at those steps.
    match_changes: bool = False
    # Control: steps where it never switches (an armed change waits for the next step
    # outside them whose draws differ), e.g. the steps its reference switched at.
    exclude: Collection[int] = ()

    def needs(self) -> set[str]:
        """Models this row needs at every step (the intervention only if it may switch)."""
        other = "tuned" if self.primary == "base" else "base"
        if self.positions is not None or self.eps != math.inf:
            return {self.primary, other}
        return {self.primary}


@dataclass
class Decoded:
    job: Job
    tokens: list[int] = field(default_factory=list)  # generated ids, EOS included if emitted
    switched: list[int] = field(default_factory=list)  # steps that took the intervention token
    changed: list[int] = field(default_factory=list)  # switched steps whose two draws differ
    js: list[float] = field(default_factory=list)  # decision js per step (nan: one model ran)
    entropy: list[float] = field(default_factory=list)  # primary's entropy per step (nats)
    finished: bool = False  # emitted EOS before the cap


class CachedLM:
    """A Hugging Face causal LM decoding a batch incrementally with its own KV cache.

    The cache object is whatever the model returns for `use_cache=True` (a `DynamicCache`
    for current transformers) and goes back in through `past_key_values=`, the argument
    name in the installed transformers 5.23. (Checked: `cache=` there is swallowed by
    **kwargs without a warning and the model silently recomputes from an empty cache.)
    """

    def __init__(self, model):
        self.model = model
        self.device = next(model.parameters()).device

    def _logits(self, ids: torch.Tensor, pos: torch.Tensor, cache) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=pos,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.cache = getattr(out, "past_key_values", None)
        return out.logits[:, -1].float()

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Left-padded prompts (B, W) and their mask (B, W) -> next-token logits (B, V)."""
        self.mask = mask.to(self.device)
        # Positions count real tokens only; pads get 0 (they are masked anyway).
        pos = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.next_pos = pos[:, -1] + 1  # (B,)
        return self._logits(ids.to(self.device), pos, None)

    def step(self, tok: torch.Tensor) -> torch.Tensor:
        """One new token per row (A,) -> next-token logits (A, V)."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], 1)
        pos = self.next_pos[:, None]
        self.next_pos = self.next_pos + 1
        return self._logits(tok.to(self.device)[:, None], pos, self.cache)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only batch rows `rows` (A',) in the cache, mask and positions."""
        rows = rows.to(self.device)
        if self.cache is not None:
            self.cache.batch_select_indices(rows)
        self.mask, self.next_pos = self.mask[rows], self.next_pos[rows]


class FullPrefixLM:
    """The no-cache reference: every step re-runs the whole left-padded prefix (A, W + t)."""

    def __init__(self, model):
        self.model = model
        self.device = next(model.parameters()).device

    def _logits(self) -> torch.Tensor:
        pos = (self.mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=pos,
                         use_cache=False, logits_to_keep=1)
        return out.logits[:, -1].float()

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.ids, self.mask = ids.to(self.device), mask.to(self.device)
        return self._logits()

    def step(self, tok: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, tok.to(self.device)[:, None]], 1)
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], 1)
        return self._logits()

    def keep(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.device)
        self.ids, self.mask = self.ids[rows], self.mask[rows]


def _draw(logits: torch.Tensor, temperature: float, top_p: float,
          u: torch.Tensor | None) -> torch.Tensor:
    """Next tokens (A,) from logits (A, V): argmax when greedy, else inverse CDF of u (A,)."""
    if temperature == 0 or u is None:
        return logits.argmax(-1)
    lp = F.log_softmax(logits / temperature, -1)
    if top_p < 1:
        lp = top_p_logprobs(lp, top_p)
    cdf = lp.exp().double().cumsum(-1)  # (A, V); float64 so the tail of a big vocab is exact
    # First index whose cdf exceeds u * total: never a zero-probability (truncated) token.
    x = (u.to(cdf.device).double() * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, x, right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)


def _entropy(lp: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) per row of log-probabilities (A, V) -> (A,)."""
    return -(lp.exp() * lp.nan_to_num(neginf=0.0)).sum(-1)


def _decide(logits: dict, top_p: float, eps: torch.Tensor, primary_base: torch.Tensor,
            controls: list, temperature: float, u: torch.Tensor | None,
            both: bool) -> tuple[torch.Tensor, ...]:
    """One step for a chunk of rows: (js, switched, changed, primary entropy, next tokens),
    each (A,), from each needed model's logits (A, V). `controls[i]` is None (js decides),
    ("at", bool) (a decision control: switch iff this step is one of its positions) or
    ("pending", int) (a change-matched control: changes still armed at this step)."""
    full = {n: F.log_softmax(lg, -1) for n, lg in logits.items()}
    if both:
        ent = torch.where(primary_base, _entropy(full["base"]), _entropy(full["tuned"]))
        dec = full
        if top_p < 1:  # decision distributions: temperature 1, optionally top-p truncated
            dec = {n: top_p_logprobs(lp, top_p) for n, lp in full.items()}
        js = js_from_logprobs(dec["base"], dec["tuned"])
        del dec, full
        # Both draws share the row's u: the token each model would give on this prefix.
        tok_b = _draw(logits["base"], temperature, top_p, u)
        tok_t = _draw(logits["tuned"], temperature, top_p, u)
        differ = tok_b != tok_t
        switch = js > eps
        for i, c in enumerate(controls):  # a control ignores js: its own positions
            if c is not None:
                switch[i] = bool(c[1]) and (c[0] == "at" or bool(differ[i]))
        use_base = primary_base ^ switch
        return js, switch, switch & differ, ent, torch.where(use_base, tok_b, tok_t)
    chosen = next(iter(logits.values()))
    lp = next(iter(full.values()))
    js = torch.full((len(chosen),), float("nan"), device=chosen.device)
    no = torch.zeros(len(chosen), dtype=torch.bool, device=chosen.device)
    return js, no, no, _entropy(lp), _draw(chosen, temperature, top_p, u)


def _control(job: Job, step: int, n_changed: int):
    """The control state of a row at `step` for _decide (None for a js-deciding row)."""
    if job.positions is None:
        return None
    if not job.match_changes:
        return ("at", step in job.positions and step not in job.exclude)
    if step in job.exclude:
        return ("pending", 0)
    armed = sum(1 for p in job.positions if p <= step)
    return ("pending", armed - n_changed)


@torch.no_grad()
def cross_decode(base, tuned, jobs: list[Job], *, eos_id: int | None, pad_id: int,
                 max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                 use_cache: bool = True, memory_budget: int = 0,
                 on_step: Callable[[int], None] | None = None) -> list[Decoded]:
    """Decode every job in one lockstep batch; returns one `Decoded` per job, in order.

    `base`/`tuned` are causal LMs called as `model(input_ids, attention_mask, position_ids,
    past_key_values, use_cache, logits_to_keep)` returning `.logits` (A, T, V) and
    `.past_key_values`. A model no job needs is never run. `use_cache=False` recomputes
    the whole prefix at every step (the reference and benchmark baseline).
    `on_step(n_active)` is called after each step with the rows that produced a token.
    The per-step decision math runs on row chunks sized from the vocabulary and
    `memory_budget` (bytes; 0 = core.engine.heads.default_budget), so a large batch does not
    expand batch x vocabulary tensors at once.
    """
    if not jobs:
        return []
    for j in jobs:
        if j.primary not in MODELS:
            raise ValueError(f"primary must be 'base' or 'tuned', got {j.primary!r}")
        if not j.prompt_ids:
            raise ValueError("empty prompt: a row needs at least one prompt token")
    needed = set().union(*(j.needs() for j in jobs))
    kind = CachedLM if use_cache else FullPrefixLM
    lms = {name: kind(m) for name, m in (("base", base), ("tuned", tuned)) if name in needed}
    device = next(iter(lms.values())).device
    ids, mask = left_pad([j.prompt_ids for j in jobs], pad_id)
    logits = {name: lm.prefill(ids, mask) for name, lm in lms.items()}

    out = [Decoded(j) for j in jobs]
    active = list(range(len(jobs)))  # original index of each running batch row
    gens = [torch.Generator().manual_seed(int(j.seed)) for j in jobs]
    primary_base = torch.tensor([j.primary == "base" for j in jobs], device=device)
    eps = torch.tensor([j.eps for j in jobs], dtype=torch.float32, device=device)
    both = len(lms) == 2
    vocab = next(iter(logits.values())).shape[-1]
    # Rows of the (A, V) decision math at once: bounded by vocabulary x rows, not by batch.
    step_rows = chunk_rows(vocab, resolve_budget(memory_budget, device), 8,
                           cpu=device.type == "cpu")
    for step in range(max_new_tokens):
        rows = torch.tensor(active, device=device)
        u = None
        if temperature > 0:  # one uniform per row per step from the row's own generator
            u = torch.cat([torch.rand(1, generator=gens[r]) for r in active])
        controls = [_control(jobs[r], step, len(out[r].changed)) for r in active]
        parts = [_decide({n: lg[a:a + step_rows] for n, lg in logits.items()}, top_p,
                         eps[rows[a:a + step_rows]], primary_base[rows[a:a + step_rows]],
                         controls[a:a + step_rows], temperature,
                         None if u is None else u[a:a + step_rows], both)
                 for a in range(0, len(active), step_rows)]
        js, switch, changed, ent, tok = (torch.cat(x) for x in zip(*parts))

        tok_l, sw_l, js_l = tok.tolist(), switch.tolist(), js.tolist()
        ch_l, ent_l = changed.tolist(), ent.tolist()
        done = []
        for i, r in enumerate(active):
            d = out[r]
            if sw_l[i]:
                d.switched.append(step)
            if ch_l[i]:
                d.changed.append(step)
            d.js.append(js_l[i])
            d.entropy.append(ent_l[i])
            d.tokens.append(tok_l[i])
            if eos_id is not None and tok_l[i] == eos_id:
                d.finished = True
                done.append(i)
        if on_step is not None:
            on_step(len(active))
        if step == max_new_tokens - 1:
            break
        if done:  # drop finished rows from every model's state
            gone = set(done)
            keep = [i for i in range(len(active)) if i not in gone]
            if not keep:
                break
            keep_t = torch.tensor(keep, device=device)
            for lm in lms.values():
                lm.keep(keep_t)
            active = [active[i] for i in keep]
            tok = tok[keep_t]
        logits = {name: lm.step(tok) for name, lm in lms.items()}
    return out
