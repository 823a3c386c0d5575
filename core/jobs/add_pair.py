"""Adding a pair: expand a request (base, tuned, optional SFT, optional series, prompt set
or rollout file, settings) into the ordered runs to compute, validate it, and queue one job
per run.

    plan_runs(...)  -> [PlannedRun]      what would be computed, in order (pure; no I/O
                                         except reading a model card for the final step)
    add_pair(...)   -> AddResult         validate_pair, then (if ok) jobs.submit per run

The runs of one request, for run name N (default: derived from the inputs):
  N              base vs tuned, sampled as the settings say (kind "rl" unless given)
  N-sft          base vs sft, same prompts and settings (kind "sft"): the contrast figures
  N-step-<s>     base vs each series checkpoint, re-scoring N's traces (traces_from=N,
                 kind "series", series_step=s), queued to start after N is done; with N as
                 the final checkpoint they give the evolution figures (core.store.cache.series_of).
                 With settings.series_sampling "own" each samples its own traces instead
                 (traces_from=N then only names the series' final run; no waiting for N)
With `traces` (a rollout file, core.inputs.rollouts) instead of `prompts`, every run scores that
file's traces as given, nothing is sampled: it is each run's `PrecomputeConfig.traces`, as
`precompute --traces` takes it, and the series runs score it directly (no traces_from, no
waiting for N).
N's own series_step is `final_step` when given, else the "steps" of the tuned folder's
model_card.json, else one more than the last series step (so it plots last).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.access import confine_model
from core.config import PrecomputeConfig
from core.errors import PairError
from core.jobs.validate import Report, validate_pair
from core.paths import cache_dir
from core.store.cache import run_exists


@dataclass
class PlannedRun:
    role: str                  # "tuned", "sft" or "step-<s>"
    config: PrecomputeConfig
    after: str | None = None   # role of the run that must be done first (traces_from)


@dataclass
class AddResult:
    report: Report
    plan: list[PlannedRun]
    jobs: list = field(default_factory=list)  # core.jobs.queue.Job, one per planned run, if queued

    @property
    def ok(self) -> bool:
        return self.report.ok and len(self.jobs) == len(self.plan)


def parse_series(text: str) -> list[tuple[int, str]]:
    """'30=path/a,60=org/b' -> [(30, 'path/a'), (60, 'org/b')], sorted by step; ValueError
    naming the bad item otherwise."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        step, sep, spec = item.partition("=")
        if not sep or not spec.strip() or not step.strip().isdigit():
            raise ValueError(f"series item {item!r}: expected STEP=PATH_OR_HUB_ID, e.g. "
                             "120=checkpoints/step-120")
        out.append((int(step), spec.strip()))
    steps = [s for s, _ in out]
    if len(set(steps)) != len(steps):
        raise ValueError(f"series steps repeat: {sorted(steps)}")
    return sorted(out)


def _card_steps(spec: str) -> int | None:
    try:
        return int(json.loads((Path(spec) / "model_card.json").read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plan_runs(base: str, tuned: str, prompts: str = "", *, traces: str = "",
              sft: str | None = None,
              series: list[tuple[int, str]] | dict[int, str] | None = None, name: str = "",
              final_step: int | None = None, settings: PrecomputeConfig | None = None,
              cache: str | Path | None = None) -> list[PlannedRun]:
    """The ordered runs of an add-pair request (see module docstring); returns PlannedRuns
    whose configs are complete PrecomputeConfigs (settings copied, names filled in; `cache`
    None: the default cache).
    Give `prompts` (a prompt set to sample from) or `traces` (a rollout file to score), not
    both: ValueError otherwise."""
    from core.precompute.driver import default_name

    if bool(prompts) == bool(traces):
        raise ValueError("give a prompt set to sample from or a rollout file (traces) to "
                         "score" + (", not both" if prompts else ""))
    s = settings or PrecomputeConfig()
    common = dataclasses.replace(s, base=base, prompts=prompts or "", traces=traces or "",
                                 cache=str(cache_dir(cache)), traces_from="", series_step=-1)
    steps = sorted((series.items() if isinstance(series, dict) else series or []))
    main = dataclasses.replace(common, tuned=tuned, kind=s.kind or "rl")
    main.name = name or default_name(main)[:80]
    if steps:
        final = final_step if final_step is not None else _card_steps(tuned)
        main.series_step = final if final is not None else steps[-1][0] + 1
    plan = [PlannedRun("tuned", main)]
    if sft:
        plan.append(PlannedRun("sft", dataclasses.replace(common, tuned=sft, kind="sft",
                                                          name=f"{main.name}-sft")))
    reuse = not traces and s.series_sampling == "reuse"
    for step, spec in steps:
        if spec == tuned:
            continue  # the final checkpoint is the main run itself
        plan.append(PlannedRun(f"step-{step}", dataclasses.replace(
            common, tuned=spec, kind="series", series_step=int(step),
            traces_from="" if traces else main.name, name=f"{main.name}-step-{step}"),
            after="tuned" if reuse else None))
    return plan


def _confined(spec: str, roots: list[Path]) -> str:
    """A spec inside the model roots as its resolved folder; any other spec unchanged
    (validate_pair refuses it, or it is a hub id)."""
    try:
        ref = confine_model(spec, roots)
    except PairError:
        return spec
    return str(ref.local) if ref.local is not None else spec


def add_pair(base: str, tuned: str, prompts: str = "", *, traces: str = "",
             sft: str | None = None,
             series: list[tuple[int, str]] | dict[int, str] | None = None, name: str = "",
             final_step: int | None = None, settings: PrecomputeConfig | None = None,
             cache: str | Path | None = None, hub_timeout: float = 5.0,
             model_roots: list[Path] | None = None, submitter: str | None = None) -> AddResult:
    """Validate an add-pair request and, when every fatal check passes, queue its runs.

    Returns AddResult(report, plan, jobs): `jobs` is empty when the report refused the pair
    (then nothing was written anywhere). Raises core.jobs.queue.JobError, before queueing any,
    when a planned run name is taken or busy. Start the jobs with core.jobs.queue.tick (the app's
    poll) or core.jobs.queue.wait (foreground). `prompts` or `traces`: as plan_runs.
    `model_roots`: as validate_pair (a server reachable beyond this machine passes
    core.access.model_roots); accepted local folders are queued by their resolved path.
    `submitter`: who asks (an app session; default this process), held to the queue's cap
    for the whole plan before any job is queued.
    """
    from core.jobs import queue as jobs_mod

    cache = cache_dir(cache)
    s = settings or PrecomputeConfig()
    if model_roots is not None:
        base, tuned = _confined(base, model_roots), _confined(tuned, model_roots)
        sft = _confined(sft, model_roots) if sft else sft
        steps = series.items() if isinstance(series, dict) else series or []
        series = [(step, _confined(spec, model_roots)) for step, spec in steps] or None
    plan = plan_runs(base, tuned, prompts, traces=traces, sft=sft, series=series, name=name,
                     final_step=final_step, settings=s, cache=cache)
    extra = {p.role: p.config.tuned for p in plan if p.role != "tuned"}
    report = validate_pair(base, tuned, extra=extra, prompts=prompts or "",
                           traces=traces or "", settings=s,
                           allow_pickle=s.allow_pickle, trust_remote_code=s.trust_remote_code,
                           hub_timeout=hub_timeout, model_roots=model_roots)
    result = AddResult(report, plan)
    if not report.ok:
        return result
    busy = jobs_mod.busy_runs(cache)
    for p in plan:  # all names first, so a clash queues nothing rather than half a request
        if p.config.name in busy:
            raise jobs_mod.JobError(f"run {p.config.name!r} is already being computed by job "
                                    f"{busy[p.config.name]}")
        if run_exists(cache, p.config.name) and not s.force:
            raise jobs_mod.JobError(f"run {p.config.name!r} already exists; choose another "
                                    "name (or force a recompute)")
    jobs_mod.check_cap(cache, submitter or jobs_mod.SUBMITTER, len(plan))
    ids: dict[str, str] = {}
    for p in plan:
        job = jobs_mod.submit(cache, p.config, submitter=submitter,
                              depends_on=[ids[p.after]] if p.after else [])
        ids[p.role] = job.id
        result.jobs.append(job)
    return result
