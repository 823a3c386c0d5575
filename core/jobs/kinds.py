"""The job kinds: what each kind of background job is configured by, what runs it, and how
it is named and opened. The queue (core.jobs.queue) and the jobs panel (app/ui/jobs.py,
through core.api) look a kind up here instead of branching on its name.

    kind            config (dataclass)                  label                   opens
    "precompute"    core.config.PrecomputeConfig        "precompute"            traces
    "cross-sample"  core.experiments.cross_sampling     "cross-sampling sweep"  cross
                    .config.CrossSampleConfig
    "critical"      core.experiments.critical           "critical-token scan"   traces
                    .CriticalConfig

A runner is `runner(job, cfg, say)`: it does the work in the job process and writes the
job's progress records (`<job folder>/progress.json`, and a sweep's `partial.parquet`);
`say(line)` goes to the job's log. `opens` names the app page a done job links to (the
app's page keys). Config classes are imported when first asked for, so listing jobs loads
no model code. A kind not registered is refused with one JobError line (`job_kind`).
This module does not queue, start or record jobs (core.jobs.queue does).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass
from typing import Callable

from core.errors import JobError
from core.store.storage import write_json


@dataclass(frozen=True)
class JobKind:
    """One kind of job: `name` (stored in job.json), `label` (what the panel and the CLI
    call it), `config` ("module:Class" of its config dataclass), `runner` (see module
    docstring) and `opens` (the app page a done job links to)."""

    name: str
    label: str
    config: str
    runner: Callable
    opens: str

    def config_class(self) -> type:
        module, _, cls = self.config.partition(":")
        return getattr(importlib.import_module(module), cls)

    def make_config(self, values: dict):
        """The kind's config from a job's stored dict; keys the class lacks are dropped
        (a job written by an older version still runs)."""
        cls = self.config_class()
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _run_precompute(job, cfg, say) -> None:
    from core.precompute.driver import precompute

    def progress(d: dict) -> None:
        write_json({**d, "done": d.get("prompts_partial", d["prompts_done"]),
                    "total": d["prompts_total"],
                    "unit": "prompts", "time": time.time()}, job.path / "progress.json")
        say(f"{d['stage']}: {d['shards_done']}/{d['shards_total']} shards, "
            f"{d['prompts_done']}/{d['prompts_total']} prompts")

    precompute(cfg, log=say, show_progress=False, progress=progress)


def _run_cross_sample(job, cfg, say) -> None:
    import pyarrow as pa

    from core.experiments.cross_sampling.job import run_cross_sample
    from core.store.storage import write_parquet

    def on_batch(p) -> None:
        write_parquet(pa.Table.from_pandas(p.summary(n_boot=200), preserve_index=False),
                      job.path / "partial.parquet")
        write_json({"stage": "sampling", "done": p.done, "total": p.total, "unit": "samples",
                    "tokens": p.tokens, "seconds": p.seconds, "time": time.time()},
                   job.path / "progress.json")

    result, _ = run_cross_sample(cfg, log=say, show_progress=False, on_batch=on_batch)
    say(f"{len(result.rows)} samples, {result.tokens} tokens in {result.seconds:.1f} s")


def _run_critical(job, cfg, say) -> None:
    from core.experiments.critical import run_config

    def progress(done: int, total: int) -> None:
        write_json({"stage": "scanning", "done": done, "total": total, "unit": "traces",
                    "time": time.time()}, job.path / "progress.json")
        say(f"scanned {done}/{total} traces")

    rows = run_config(cfg, progress)
    say(f"{len(rows)} rows for {rows.trace_id.nunique() if len(rows) else 0} traces")


JOB_KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind("precompute", "precompute", "core.config:PrecomputeConfig", _run_precompute,
            opens="traces"),
    JobKind("cross-sample", "cross-sampling sweep",
            "core.experiments.cross_sampling.config:CrossSampleConfig", _run_cross_sample,
            opens="cross"),
    JobKind("critical", "critical-token scan", "core.experiments.critical:CriticalConfig",
            _run_critical, opens="traces"),
)}


def job_kind(name: str) -> JobKind:
    """The registered kind `name`; JobError (one line) for any other."""
    try:
        return JOB_KINDS[name]
    except (KeyError, TypeError):
        raise JobError(f"unknown job kind {str(name)[:40]!r}: known kinds are "
                       f"{', '.join(JOB_KINDS)}") from None
