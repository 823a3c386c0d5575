"""A shift ledger while training: each saved checkpoint of a training run, scored against the
base on the rollouts it sampled (or on a fixed probe prompt set it samples itself), appended
as one run to a checkpoint series, in the background job queue.

    record_checkpoint(base, checkpoint, step, rollouts=FILE | prompts=FILE, series=NAME)
        queues run NAME-step-<step> (kind "series", series_step=step, series_of NAME,
        series_sampling "own": each step's traces are its own) and starts it when the queue
        is free; returns the queued core.jobs.queue.Job at once.

This is the framework-neutral function: the TRL callback (core.integrations.trl) calls it
from on_save, and verl or OpenRLHF users call it from their own hooks (README "A shift
ledger while training"). The series has no final run of its own while training goes on: its
runs all name NAME, and core.store.cache.series_of reads them as one ledger, by step, the
latest step standing for the final run.

Step alignment (the caller's to keep, stated in every run's manifest by the rollout format):
`rollouts` must be the file sampled by `checkpoint` itself, e.g. TRL's
completions_{k+1:05d}.parquet for checkpoint-k (the rollouts of step k+1 were sampled by the
policy after update k); the base model stands for step 0 (TRL's completions_00001). With
`prompts` the checkpoint samples the probe set in the job, so no alignment is needed.

What it does not do: load models, read the rollout file or wait for the job (the job's
precompute validates both and fails with its one line); it refuses before queueing only what
it can see without loading anything (one line, JobError).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from core.config import PrecomputeConfig
from core.errors import JobError
from core.paths import cache_dir
from core.store.cache import name_problem

ROLLOUT_SUFFIXES = (".jsonl", ".parquet")


def step_run(series: str, step: int) -> str:
    """The run name of `series`' entry for training step `step`."""
    return f"{series}-step-{step}"


def ledger_config(base: str, checkpoint: str, step: int, *, series: str,
                  rollouts: str | Path | None = None, prompts: str | Path | None = None,
                  cache: str | Path | None = None,
                  settings: PrecomputeConfig | None = None) -> PrecomputeConfig:
    """The precompute config of one ledger entry (see the module docstring); JobError, one
    line, for a request that cannot work: both or neither of rollouts/prompts, a missing
    file or checkpoint folder, a negative step, a series name that is not a run name."""
    if (rollouts is None) == (prompts is None):
        raise JobError("give exactly one of rollouts= (the file the checkpoint sampled) and "
                       "prompts= (a probe prompt set it samples)")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise JobError(f"step {step!r}: a training step is an integer >= 0")
    problem = name_problem(series, "series name")
    if problem:
        raise JobError(problem)
    if not str(base or "").strip():
        raise JobError("base: give the base model (a folder or a model id)")
    ckpt = Path(checkpoint).expanduser()
    if not (ckpt.is_dir() and (ckpt / "config.json").is_file()):
        raise JobError(f"checkpoint {str(checkpoint)!r}: not a saved model folder "
                       "(no config.json)")
    src = Path(rollouts if rollouts is not None else prompts).expanduser()
    what = "rollouts" if rollouts is not None else "prompts"
    if not src.is_file() or src.suffix not in ROLLOUT_SUFFIXES:
        raise JobError(f"{what} {str(src)!r}: no such .jsonl or .parquet file")
    s = settings or PrecomputeConfig()
    return dataclasses.replace(
        s, base=str(base), tuned=str(ckpt.resolve()),
        traces=str(src.resolve()) if rollouts is not None else "",
        prompts=str(src.resolve()) if prompts is not None else "", field=s.field,
        name=step_run(series, step), cache=str(cache_dir(cache)), kind="series",
        series_step=step, traces_from=series, series_sampling="own")


def record_checkpoint(base: str, checkpoint: str | Path, step: int, *, series: str,
                      rollouts: str | Path | None = None, prompts: str | Path | None = None,
                      cache: str | Path | None = None,
                      settings: PrecomputeConfig | None = None, start: bool = True):
    """Queue the ledger entry of `checkpoint` (training step `step`) in `series` and return
    the queued Job at once; with `start` (default) the queue is ticked, so the job process
    starts now when no other job runs (else whoever ticks next starts it: the app's jobs
    view, `python -m core jobs run`, the next call). Refuses (JobError, one line) what
    ledger_config refuses and a run name a job or a complete run already holds."""
    from core.jobs import queue

    cfg = ledger_config(base, str(checkpoint), step, series=series, rollouts=rollouts,
                        prompts=prompts, cache=cache, settings=settings)
    job = queue.submit(cfg.cache, cfg)
    if start:
        queue.tick(cfg.cache)
    return job
