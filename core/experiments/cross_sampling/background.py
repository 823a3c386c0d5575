"""A cross-sampling sweep in a background thread of the current process, for the app.

The app starts a job and polls it; the page never blocks. Jobs live in a process-wide
registry, so a page reload (a new Streamlit session in the same server) finds them again.
Cancellation is cooperative (between batches) and writes nothing, like the CLI's.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from dataclasses import dataclass, field

import pandas as pd

from core.experiments.cross_sampling.config import CrossSampleConfig
from core.experiments.cross_sampling.job import run_cross_sample

_ids = itertools.count(1)
_jobs: dict[str, BackgroundSweep] = {}
_lock = threading.Lock()


@dataclass
class BackgroundSweep:
    id: str
    config: CrossSampleConfig
    started: float = field(default_factory=time.time)
    done: int = 0
    total: int = 0
    tokens: int = 0
    partial: pd.DataFrame | None = None  # summary of the rows so far
    rows: list = field(default_factory=list)
    result: object = None  # SweepResult when finished
    error: str | None = None
    finished: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    log: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if not self.finished:
            return "cancelling" if self.cancel.is_set() else "running"
        if self.error:
            return "failed"
        return "cancelled" if getattr(self.result, "cancelled", False) else "done"


def start(cfg: CrossSampleConfig) -> BackgroundSweep:
    job = BackgroundSweep(f"sweep-{next(_ids)}", cfg)

    def on_batch(p) -> None:
        job.done, job.total, job.tokens = p.done, p.total, p.tokens
        job.rows = list(p.rows)
        job.partial = p.summary(n_boot=200)

    def work() -> None:
        try:
            job.result, _ = run_cross_sample(cfg, log=job.log.append, show_progress=False,
                                             on_batch=on_batch, cancel=job.cancel)
            job.partial = job.result.summary
        except Exception as e:  # reported in the app; the thread must not die silently
            job.error = f"{type(e).__name__}: {e}"
            job.log.append(traceback.format_exc())
        finally:
            job.finished = True

    with _lock:
        _jobs[job.id] = job
    threading.Thread(target=work, name=job.id, daemon=True).start()
    return job


def jobs(run: str | None = None) -> list[BackgroundSweep]:
    """Every job of this process (newest first), optionally those of one run."""
    with _lock:
        out = list(_jobs.values())
    return sorted((j for j in out if run is None or j.config.run == run),
                  key=lambda j: j.started, reverse=True)
