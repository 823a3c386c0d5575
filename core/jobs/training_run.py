"""A training run's folder as a checkpoint series: per-step rollout files with the
checkpoints beside them, planned (and queued) as one run per step, each scoring that step's
rollouts under the base and the checkpoint that sampled them.

    RUN/completions/completions_{k:05d}.parquet   TRL GRPOTrainer (log_completions=True)
    RUN/{k}.jsonl, or one folder below            verl (trainer.rollout_data_dir)
    RUN/checkpoint-{k}/                           the policy after update k (TRL, HF Trainer)

Alignment (ALIGNMENT, recorded in every run's manifest by core.inputs.formats): the rollouts
of step k were sampled by the policy *before* update k, that is checkpoint-(k-1), and the
base model for k = 1. A step whose sampling checkpoint is not in the folder (saves every few
steps) is left out and named in the plan's notes.

The series' final run N scores the last aligned step; the others are N-step-<s> with
series_step s = the sampling checkpoint's step, `traces_from` N only naming the series
(series_sampling "own": each step's traces are its own, as core.store.cache.series_of and
the evolution figure read them). It does not load models or validate files: add_training_run
validates the final pair and its file (core.jobs.validate) before queueing, as add_pair.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.config import PrecomputeConfig
from core.errors import PairError
from core.jobs.add_pair import AddResult, PlannedRun
from core.paths import cache_dir
from core.store.cache import run_exists

ALIGNMENT = ("the rollouts of step k were sampled by the policy before update k: "
             "checkpoint-(k-1), the base model for k = 1")
TRL_FILE = re.compile(r"completions_(\d+)\.parquet")
VERL_FILE = re.compile(r"(\d+)\.jsonl")
CHECKPOINT = re.compile(r"checkpoint-(\d+)")


@dataclass
class StepRollouts:
    step: int          # the training step whose rollouts the file holds
    path: Path
    sampler: str       # the checkpoint folder that sampled them, or the base model
    sampler_step: int  # its training step (0 = the base)


@dataclass
class TrainingRun:
    folder: Path
    steps: list[StepRollouts]
    notes: list[str] = field(default_factory=list)


def _step_files(folder: Path) -> list[tuple[int, Path]]:
    trl = folder / "completions"
    if trl.is_dir():
        found = [(int(m.group(1)), p) for p in trl.iterdir()
                 if (m := TRL_FILE.fullmatch(p.name))]
        if found:
            return found
    for d in [folder] + sorted(p for p in folder.iterdir() if p.is_dir()):
        found = [(int(m.group(1)), p) for p in d.iterdir()
                 if (m := VERL_FILE.fullmatch(p.name)) and p.is_file()]
        if found:
            return found
    return []


def find_training_run(folder: str | Path, base: str) -> TrainingRun:
    """The aligned (step file, sampling checkpoint) pairs of a training run's folder, by step;
    PairError when there are none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise PairError(f"{folder}: no such training-run folder")
    ckpts = {int(m.group(1)): p for p in root.iterdir()
             if p.is_dir() and (m := CHECKPOINT.fullmatch(p.name))}
    run = TrainingRun(root, [])
    missing = []
    for step, path in sorted(_step_files(root)):
        k = step - 1
        sampler = base if k == 0 else str(ckpts[k]) if k in ckpts else None
        if sampler is None:
            missing.append(step)
            continue
        run.steps.append(StepRollouts(step, path, sampler, k))
    if missing:
        run.notes.append(f"steps {', '.join(map(str, missing))} left out: their sampling "
                         "checkpoint (checkpoint-(k-1)) is not in the folder")
    if not run.steps:
        raise PairError(f"{root.name}: no step's rollouts with the checkpoint that sampled them "
                        "(completions/completions_K.parquet or K.jsonl, beside "
                        f"checkpoint-(K-1)/); {ALIGNMENT}")
    return run


def plan_training_run(folder: str | Path, base: str, *, name: str = "",
                      settings: PrecomputeConfig | None = None,
                      cache: str | Path | None = None) -> tuple[TrainingRun, list[PlannedRun]]:
    """The runs of a training run's series (see the module docstring), final run first."""
    run = find_training_run(folder, base)
    s = settings or PrecomputeConfig()
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", run.folder.resolve().name)[:60]
    common = dataclasses.replace(s, base=base, prompts="", cache=str(cache_dir(cache)), field="")
    last = run.steps[-1]
    plan = [PlannedRun("tuned", dataclasses.replace(
        common, tuned=last.sampler, traces=str(last.path), name=name, kind=s.kind or "rl",
        series_step=last.sampler_step, traces_from=""))]
    for st in run.steps[:-1]:
        plan.append(PlannedRun(f"step-{st.sampler_step}", dataclasses.replace(
            common, tuned=st.sampler, traces=str(st.path), kind="series",
            series_step=st.sampler_step, traces_from=name, series_sampling="own",
            name=f"{name}-step-{st.sampler_step}")))
    return run, plan


def add_training_run(folder: str | Path, base: str, *, name: str = "",
                     settings: PrecomputeConfig | None = None, cache: str | Path | None = None,
                     hub_timeout: float = 5.0) -> AddResult:
    """Validate a training run's series (every checkpoint against the base, the final
    step's rollout file) and, when every fatal check passes, queue one job per step."""
    from core.jobs import queue as jobs_mod
    from core.jobs.validate import validate_pair

    s = settings or PrecomputeConfig()
    cache = cache_dir(cache)
    _, plan = plan_training_run(folder, base, name=name, settings=s, cache=cache)
    final = plan[0].config
    extra = {p.role: p.config.tuned for p in plan[1:] if p.config.tuned != base}
    report = validate_pair(base, final.tuned, extra=extra, traces=final.traces, settings=s,
                           allow_pickle=s.allow_pickle, trust_remote_code=s.trust_remote_code,
                           hub_timeout=hub_timeout)
    result = AddResult(report, plan)
    if not report.ok:
        return result
    for p in plan:
        if run_exists(cache, p.config.name) and not s.force:
            raise jobs_mod.JobError(f"run {p.config.name!r} already exists; choose another "
                                    "name (or force a recompute)")
    for p in plan:
        result.jobs.append(jobs_mod.submit(cache, p.config))
    return result
