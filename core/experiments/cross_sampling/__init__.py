"""Cross-sampling (paper section "Cross-sampling"): the causal test of divergent tokens.

- core.engine.lockstep  the lockstep, KV-cached, batched cross-sampler (`cross_decode`, `Job`)
- sweep.py   eps sweeps with their controls and both endpoints
- controls.py  where and how often a control switches (random / entropy; changed / decisions)
- summary.py   per-setting budgets, accuracy, bootstrap CIs and paired control differences
- core.store.cross  stored sweeps, keyed by their settings: cross/<key>/ in the run folder
- config.py  `CrossSampleConfig` (the CLI's options)
- job.py     the sweep on a run folder (`run_cross_sample`), run by `python -m core
             cross-sample` in the foreground and by the job queue (core.jobs.queue,
             kind "cross-sample") for the app
- view.py    reading stored mixed traces back for display
"""

from core.engine.batching import derive_seed, left_pad
from core.engine.lockstep import CachedLM, Decoded, FullPrefixLM, Job, cross_decode
from core.experiments.cross_sampling.config import CrossSampleConfig, CrossSampleOptions
from core.experiments.cross_sampling.controls import (
    CONTROL_KINDS,
    control_positions,
    entropy_positions,
)
from core.experiments.cross_sampling.job import (
    CrossSampleError,
    format_summary,
    resolve_run,
    run_cross_sample,
)
from core.experiments.cross_sampling.summary import bootstrap_ci, summarize
from core.experiments.cross_sampling.sweep import Progress, SweepResult, sweep
from core.store.cross import (
    SweepInfo,
    get_sweep,
    list_sweeps,
    read_summary,
    sweep_key,
    write_results,
)

__all__ = [
    "CONTROL_KINDS", "SweepInfo", "entropy_positions", "get_sweep", "list_sweeps", "sweep_key",
    "CachedLM", "CrossSampleConfig", "CrossSampleError", "CrossSampleOptions", "Decoded",
    "FullPrefixLM", "Job", "Progress", "SweepResult",
    "bootstrap_ci", "control_positions", "cross_decode", "derive_seed", "format_summary",
    "left_pad", "read_summary", "resolve_run", "run_cross_sample", "summarize", "sweep",
    "write_results",
]
