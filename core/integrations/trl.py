"""The shift ledger for Hugging Face TRL: a `TrainerCallback` that, at each save, queues the
scoring of a checkpoint against the base model as one more run of a checkpoint series
(core.jobs.ledger.record_checkpoint), so the evolution page follows the training as it goes.

    from core.integrations.trl import ShiftLedgerCallback
    trainer = GRPOTrainer(..., args=GRPOConfig(..., log_completions=True, logging_steps=1),
                          callbacks=[ShiftLedgerCallback(series="my-grpo")])

Two sources of traces:
  rollouts (default)  TRL's own `completions/completions_{k:05d}.parquet` (log_completions):
                      the rollouts of step k were sampled by the policy before update k, so
                      checkpoint-s is scored on completions_{s+1}, and the base model (step 0)
                      on completions_00001. At each save every saved checkpoint whose next
                      step's file is there and that is not recorded yet is queued; the newest
                      checkpoint waits for the next save (its rollouts come with the next
                      step), so the last one is never recorded in this mode.
  probe=FILE          a fixed prompt set: each checkpoint samples it in its job and is scored
                      on its own samples, at the save that wrote it.

Training is not held up: on_save only checks a few paths, queues a job and ticks the queue
(core.jobs.queue: the job is its own process, one at a time); `wait=True` waits for the
ledger's jobs after training ends. Checkpoints must outlive their queued jobs, so
`save_total_limit` is refused (one line, JobError) at on_train_begin; a ledger entry
refused at a save (a run name already taken, a file gone) is logged in one line and the
training goes on. The rule assumes one
generation per update (TRL's defaults: num_iterations=1, steps_per_generation =
gradient_accumulation_steps) and logging at every step that follows a save.

transformers is imported when `ShiftLedgerCallback` is first asked for (module __getattr__),
never at import; trl is never imported (the callback uses only what GRPOTrainer writes).
Only the main process (state.is_world_process_zero) records.
"""

from __future__ import annotations

from pathlib import Path

from core.config import PrecomputeConfig
from core.errors import JobError, ShiftLensError
from core.jobs.ledger import record_checkpoint
from core.paths import cache_dir

COMPLETIONS = "completions/completions_{step:05d}.parquet"


class _Ledger:
    """The callback's state and logic, free of transformers (tested without it)."""

    def __init__(self, *, series: str = "", base: str | None = None, probe: str | None = None,
                 cache: str | Path | None = None, settings: PrecomputeConfig | None = None,
                 wait: bool = False, log=print):
        self.series, self.base, self.probe = series, base, probe
        self.cache, self.settings, self.wait, self.log = cache_dir(cache), settings, wait, log
        self.saved: list[int] = [0]   # saved steps; 0 = the base model (rollouts mode)
        self.recorded: set[int] = set()
        self.jobs: list = []

    def begin(self, output_dir: str, save_total_limit, model=None) -> None:
        if save_total_limit is not None:
            raise JobError(f"save_total_limit={save_total_limit} deletes checkpoints that the "
                           "shift ledger's queued jobs still read: leave it None")
        if self.base is None:
            name = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
            if not name:
                raise JobError("ShiftLedgerCallback: give base= (the model's config names no "
                               "folder or model id)")
            self.base = name
        self.series = self.series or Path(output_dir).resolve().name

    def _record(self, checkpoint, step: int, **source) -> None:
        self.recorded.add(step)  # tried once: a refusal is not retried at every save
        try:
            job = record_checkpoint(self.base, checkpoint, step, series=self.series,
                                    cache=self.cache, settings=self.settings, **source)
        except ShiftLensError as e:  # a ledger entry refused never stops the training
            self.log(f"shift ledger: step {step} not recorded: {e}")
            return
        self.jobs.append(job)
        self.log(f"shift ledger: queued {job.run} (job {job.id})")

    def saved_step(self, output_dir: str, step: int) -> None:
        out = Path(output_dir)
        self.saved.append(step)
        if self.probe is not None:
            self._record(out / f"checkpoint-{step}", step, prompts=self.probe)
            return
        for s in self.saved:
            f = out / COMPLETIONS.format(step=s + 1)
            if s in self.recorded or not f.is_file():
                continue
            ckpt = out / f"checkpoint-{s}" if s else self.base
            if s == 0 and not Path(str(ckpt)).is_dir():
                continue  # a hub id as base: the ledger starts at the first checkpoint
            self._record(ckpt, s, rollouts=f)

    def end(self) -> None:
        from core.jobs import queue

        if self.probe is None:
            left = [s for s in self.saved if s and s not in self.recorded]
            if left:
                self.log(f"shift ledger: checkpoint(s) {left} not recorded: no rollouts they "
                         "sampled (completions of the next step); give probe= to score them")
        if self.jobs:
            queue.tick(self.cache)
            if self.wait:
                queue.wait(self.cache, [j.id for j in self.jobs])


def _callback_class():
    from transformers import TrainerCallback

    class ShiftLedgerCallback(TrainerCallback):
        """At each save, queue the scoring of the new checkpoint's rollouts (or of a probe
        prompt set) against the base as one run of the series `series` (default: the
        output folder's name). See the module docstring. Arguments: series, base (default:
        the model's name_or_path), probe (a prompt set file), cache (default: the settings'
        cache), settings (a PrecomputeConfig for the jobs), wait (wait for the jobs at the
        end of training), log (a function taking one line)."""

        def __init__(self, **kw):
            self.ledger = _Ledger(**kw)

        def on_train_begin(self, args, state, control, model=None, **kw):
            if state.is_world_process_zero:
                self.ledger.begin(args.output_dir, args.save_total_limit, model)

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                self.ledger.saved_step(args.output_dir, state.global_step)

        def on_train_end(self, args, state, control, **kw):
            if state.is_world_process_zero:
                self.ledger.end()

    return ShiftLedgerCallback


def __getattr__(name: str):
    if name == "ShiftLedgerCallback":
        cls = _callback_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
