"""Every check on a pair before compute, without loading weights: a Report for app and CLI.
(One checkpoint's own checks: core/jobs/inspect_model.py.)

`validate_pair(base, tuned, extra=..., prompts=..., settings=...)` inspects each checkpoint
(local folder or hub id) and returns a `Report`: a list of `Check(name, ok, message, fatal)`
and an overall `ok`. Nothing here raises on bad input; every problem becomes a failed check.

Per checkpoint: it resolves (folder, or hub id: reachable within a short timeout, not when
HF_HUB_OFFLINE is set unless in the local HF cache); its weights are safetensors (pickle
only with allow_pickle) and not truncated; config.json names an architecture transformers
knows as a causal LM (code shipped with the checkpoint needs trust_remote_code); parameter
count and stored dtype come from the safetensors headers (first bytes of each file) or the
hub's metadata; its tokenizer loads. Across checkpoints: every tokenizer's token->id map
equals the base's (else what differs); the tokenizer fits the embedding. Then the prompt set
(or the rollout file to score instead: every row, and its token ids against the vocabulary)
is validated and memory and time are estimated (core.jobs.estimate) for the settings.

Hub ids download only config and tokenizer files (small), never weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from core.access import confine_model
from core.config import PrecomputeConfig
from core.engine.pair import (
    DEFAULT_MAX_NEW_TOKENS,
    PairError,
    default_max_new_tokens,
    vocab_difference,
)
from core.errors import InputError
from core.inputs.lengths import Longest, length_checks
from core.inputs.prompts import PromptSetError, load_prompts
from core.inputs.rollouts import RolloutSet, load_rollouts
from core.inputs.text_limits import text_limits
from core.jobs.estimate import Estimate, estimate, fmt_bytes, fmt_seconds
from core.jobs.inspect_model import Check, ModelFacts, inspect_checkpoint
from core.jobs.text_checks import user_text_checks


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    models: dict[str, ModelFacts] = field(default_factory=dict)
    estimates: dict[str, Estimate] = field(default_factory=dict)  # per planned run role

    @property
    def ok(self) -> bool:
        """True when no fatal check failed."""
        return all(c.ok or not c.fatal for c in self.checks)

    def failures(self) -> list[Check]:
        """The failed fatal checks."""
        return [c for c in self.checks if not c.ok and c.fatal]

    def rows(self) -> list[dict]:
        """One dict per check (status, check, message), for a table in the app."""
        return [{"status": "ok" if c.ok else ("error" if c.fatal else "warning"),
                 "check": c.name, "message": c.message} for c in self.checks]

    def text(self) -> str:
        """The report as plain text lines, for the CLI."""
        mark = {"ok": "  ok  ", "error": " FAIL ", "warning": " warn "}
        lines = [f"[{mark[r['status']]}] {r['check']}: {r['message']}" for r in self.rows()]
        lines.append("ready to compute" if self.ok else
                     f"refused: {len(self.failures())} check(s) failed")
        return "\n".join(lines)


def _extra_roles(extra) -> dict[str, str]:
    if not extra:
        return {}
    if isinstance(extra, dict):
        return {str(k): str(v) for k, v in extra.items()}
    return {f"extra-{i}": str(s) for i, s in enumerate(extra, 1)}


def validate_pair(base: str, tuned: str, *, extra: dict[str, str] | list[str] | None = None,
                  prompts: str | None = None, traces: str | None = None,
                  allow_pickle: bool = False, trust_remote_code: bool = False,
                  settings: PrecomputeConfig | None = None,
                  hub_timeout: float = 5.0, model_roots: list[Path] | None = None) -> Report:
    """Check a pair (and extra checkpoints: SFT, series steps) before any compute.

    extra: {role: spec} (e.g. {"sft": ..., "step-30": ...}) or a list of specs; each must
      share the base's vocabulary. Roles named "step-*" or "series*" are scored on reused
      traces (no sampling) in the time estimate.
    prompts: prompt set to validate; default `settings.prompts` when settings are given.
    traces: rollout file to score instead of sampling (core.inputs.rollouts), validated row by row
      and against the base tokenizer; default `settings.traces`. Give one of the two.
    settings: the PrecomputeConfig whose n, max_prompts, sample_from, max_new_tokens,
      batch_size and device the estimate uses (defaults when None).
    model_roots: when given (a server reachable beyond this machine), local model folders
      are accepted only under these folders; any other path fails its "weights" check with
      one message whether or not it exists (core.access.confine_model). Hub ids still pass.
    Returns a Report; its `ok` is False when any fatal check failed.
    """
    s = settings or PrecomputeConfig()
    if s.max_new_tokens <= 0:  # estimate at the cap precompute will use
        s = dataclasses.replace(s, max_new_tokens=_default_cap(tuned, model_roots))
    prompts = prompts if prompts is not None else (s.prompts or None)
    traces = traces if traces is not None else (s.traces or None)
    report = Report()
    toks = {}
    for role, spec in {"base": base, "tuned": tuned, **_extra_roles(extra)}.items():
        facts, tok, checks = inspect_checkpoint(role, spec, allow_pickle, trust_remote_code,
                                                hub_timeout, model_roots)
        report.models[role] = facts
        report.checks += checks
        if tok is not None:
            toks[role] = tok
    if trust_remote_code:
        report.checks.append(Check("trust_remote_code", False, "on: code shipped with the "
                                   "checkpoints will run when they load", fatal=False))
    for role in toks:
        if role != "base" and "base" in toks:
            diff = vocab_difference(toks["base"], toks[role])
            report.checks.append(Check(f"vocabulary: base vs {role}", diff is None,
                                       "identical token->id maps" if diff is None else
                                       f"the tokenizers differ: {diff}"))
    _pair_warnings(report)
    try:
        lim = text_limits()
    except InputError as e:
        report.checks.append(Check("limits", False, str(e)))
        return report
    ps = rs = None
    if prompts and traces:
        report.checks.append(Check("traces", False, "give a prompt set to sample from or a "
                                   "rollout file to score, not both"))
    elif traces:
        rs = _rollout_check(report, traces, s, toks.get("base"))
    elif prompts:
        try:
            ps = load_prompts(prompts, limit=s.max_prompts or None)
            report.checks.append(Check("prompt set", True, f"{len(ps.rows)} prompts from "
                                       f"{Path(prompts).name}"))
        except PromptSetError as e:
            report.checks.append(Check("prompt set", False, str(e)))
    plen = None
    for name, ok, message, tokens in user_text_checks(ps or rs, toks, s.chat_template, lim):
        report.checks.append(Check(name, ok, message))
        plen = tokens or plen
    longest = None
    if not any(c.name == "prompt tokens" and not c.ok for c in report.checks):  # one line
        longest, checks = length_checks(report.models, ps or rs, toks.get("base"),
                                        s.truncate_to_context)
        report.checks += [Check(*c) for c in checks]
    _estimate_checks(report, s, ps or rs, longest, plen)
    return report


def _default_cap(tuned: str, model_roots) -> int:
    """The tuned checkpoint's length cap; with model roots, read only from inside them."""
    if model_roots is not None:
        try:
            ref = confine_model(tuned, model_roots)
        except PairError:
            return DEFAULT_MAX_NEW_TOKENS
        tuned = str(ref.local or ref.spec)
    return default_max_new_tokens(tuned)[0]


def _rollout_check(report: Report, traces: str, s: PrecomputeConfig, base_tok):
    """The "rollouts" check: every row valid, every response id inside the vocabulary."""
    try:
        rs = load_rollouts(traces, limit=s.max_prompts or None, fields=s.field)
    except PromptSetError as e:
        report.checks.append(Check("rollouts", False, str(e)))
        return None
    vocab = len(base_tok) if base_tok is not None else None
    for r in rs.rows:
        bad = [t for t in r.response_ids or () if vocab is not None and t >= vocab]
        if bad:
            report.checks.append(Check("rollouts", False, f"{r.where}: field 'response_ids' "
                                       f"has id {bad[0]}, outside the tokenizer's {vocab} ids"))
            return None
    prompts = len({r.prompt_id for r in rs.rows})
    report.checks.append(Check("rollouts", True, f"{len(rs.rows)} rollouts of {prompts} "
                               f"prompt(s) from {Path(traces).name}, scored as given (no "
                               "sampling)" + (f"; {rs.mapping.summary()}" if rs.mapping else "")))
    return rs


def _pair_warnings(report: Report) -> None:
    """Non-fatal oddities: the same checkpoint twice, different sizes or architectures."""
    b = report.models.get("base")
    for role, m in report.models.items():
        if role == "base" or b is None:
            continue
        if m.folder and m.folder == b.folder:
            report.checks.append(Check(f"{role}: differs from base", False, "the same "
                                       "checkpoint as the base: every divergence will be 0",
                                       fatal=False))
        elif b.parameters and m.parameters and b.parameters != m.parameters:
            report.checks.append(Check(
                f"{role}: same size as base", False,
                f"{m.parameters:,} parameters vs the base's {b.parameters:,}: is it really "
                "a fine-tune of this base?", fatal=False))
        if b.architecture and m.architecture and b.architecture != m.architecture:
            report.checks.append(Check(f"{role}: same architecture as base", False,
                                       f"{m.architecture} vs {b.architecture}", fatal=False))


def _estimate_checks(report: Report, s: PrecomputeConfig, ps, longest: Longest | None,
                     plen: int | None = None) -> None:
    """Per-run estimates (main pair, SFT, series steps); a memory check and a time line.
    `ps`: the prompt set, or a RolloutSet (one trace per row, nothing sampled) scored at its
    `longest` row's response, every row counted; `plen`: the longest prompt's tokens plus
    template slack, when known."""
    m = report.models
    if not all(k in m and m[k].parameters for k in ("base", "tuned")):
        report.checks.append(Check("estimate", False, "no parameter count for the pair, so no "
                                   "memory or time estimate", fatal=False))
        return
    n_prompts = len(ps.rows) if ps else (s.max_prompts or 100)
    n, sample_from, max_new, given = s.n, s.sample_from, s.max_new_tokens, False
    plen = plen or 64
    if isinstance(ps, RolloutSet):
        n, sample_from, given = 1, "tuned", True
        if longest is not None:  # every row counted (core.inputs.lengths)
            max_new = longest.response
    b = m["base"]
    for role, f in m.items():
        if role == "base" or not f.parameters:
            continue
        reuse = given or role.startswith(("step", "series"))
        report.estimates[role] = estimate(
            params_base=b.parameters, params_tuned=f.parameters,  # this run's own sizes
            layers=max(b.layers, f.layers, 1), kv_heads=max(b.kv_heads, f.kv_heads, 1),
            head_dim=max(b.head_dim, f.head_dim, 1),
            vocab=max(b.vocab_size, f.vocab_size, 1), prompts=n_prompts, prompt_tokens=plen, n=n,
            sample_from=sample_from, max_new_tokens=max_new,
            batch_size=s.batch_size, reuse_traces=reuse, device=s.device)
    if not report.estimates:
        return
    worst = max(report.estimates.values(), key=lambda e: e.total_bytes)
    seconds = sum(e.seconds for e in report.estimates.values())
    report.checks.append(Check(
        "memory", worst.fits, worst.memory_line() if worst.fits else
        f"needs about {fmt_bytes(worst.total_bytes)} but {worst.device} has "
        f"{fmt_bytes(worst.available_bytes)} available: use a machine with more memory (or "
        "a GPU), or smaller models"))
    report.checks.append(Check("time", True, (
        f"about {fmt_seconds(seconds)} for {len(report.estimates)} run(s) on {worst.device} "
        f"(estimate from {worst.throughput_source} {worst.throughput_flops / 1e9:.0f} "
        "GFLOP/s; every trace counted at the " + (
            f"longest response's length, {longest.where})" if given and longest else
            "longest response's length)" if given else "length cap)")), fatal=False))
