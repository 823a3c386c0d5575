"""The app's one door into core.

The Streamlit app (app/) imports core only through this module, `core.errors` (the
exception types every layer raises) and `core.figures` (the figure data builders the app
draws). Everything else it needs is re-exported here under one flat namespace, so the
layout behind it (core.engine, core.store, core.queries, core.jobs, core.experiments, ...)
can move without touching the app. The CLI (`python -m core ...`) and Python users can call
the same functions: `from core import api; con = api.open_runs(api.list_runs(...)...)`.

Nothing here adds behaviour: every name is the object defined in its own module, where its
docstring (arguments, DataFrame columns, tensor shapes) lives. tests/test_layering.py
checks that the app keeps to this seam.
"""

# Imports are grouped by topic below, not sorted across groups.
# ruff: noqa: I001

from __future__ import annotations

# --- access: loopback or exposed, the sign-in secret, allowed Host names, model roots,
#     sign-in cookies and sessions, wrong-password limits, upload budgets ---
from core.access import allowed_hosts, check_password, host_allowed, is_loopback
from core.access import model_roots, password, public_text, refusal
from core.signin import Connections, client_address, sessions, throttle, tokens
from core.signin import trusted_proxies
from core.upload_budget import UploadBudget

# --- runs: the cache folder of runs (Run: one typed, validated run); list, rename, delete;
# series and contrast partners ---
from core.paths import ASSETS, REPO_ROOT, default_cache
from core.store.cache import contrast_candidates, list_runs, open_run, series_of
from core.store.run import Run
from core.store.samplers import checkpoint_accuracy, reused_note
from core.jobs.runs import delete_run, rename_run

# --- queries: a DuckDB connection over runs and the browsing queries (DataFrames) ---
from core.queries import (
    describe_traces,
    eps_for_budget,
    headline,
    open_runs,
    pair_choices,
    parse_ngram,
    parting,
    run_gone,
    same_prompt,
    sampler_pair,
    sampled_from_choices,
    session,
    sparsity_summary,
    token_search,
    token_search_bytes,
    token_search_count,
    trace_count,
    trace_list,
    trace_position,
    trace_tokens,
)
from core.queries.connection import damaged_since

# --- jobs & add-pair: precompute settings, the job kinds and queue, presets ---
from core.config import RUN_SETTINGS, PrecomputeConfig
from core.jobs.add_pair import add_pair, parse_series
from core.jobs.presets import PRESETS
from core.jobs.kinds import JOB_KINDS, JobKind, job_kind
from core.jobs.queue import Job, list_jobs, submit_cross_sample
from core.jobs.queue import cancel as cancel_job
from core.jobs.queue import read_log as read_job_log
from core.jobs.queue import resume as resume_job
from core.jobs.queue import tick as tick_jobs
from core.jobs.ledger import record_checkpoint  # the shift ledger: one series run per save

# --- uploads: model archives, prompt sets and rollout files taken from the browser, kept safely ---
from core.jobs.upload import default_limits as default_upload_limits
from core.jobs.upload import models_dir, prompts_dir, rollouts_dir, save_prompt_set
from core.jobs.upload import rollout_format, save_rollouts, unpack_model

# --- experiments: live scoring, the fork explorer, cross-sampling (config, stored results) ---
from core.engine.coverage import coverage
from core.experiments.live import pair_of_run, score_text
from core.experiments.fork import branch_options, fork, list_forks, load_fork, save_fork
from core.experiments.cross_sampling import CrossSampleConfig, list_sweeps, read_summary
from core.experiments.cross_sampling.budget import eps_for_targets
from core.experiments.decoding import Decoding
from core.experiments.decoding import of_run as run_decoding
from core.experiments.decoding import paper as paper_decoding
from core.experiments.cross_sampling.view import PRIMARY as CROSS_PRIMARY
from core.experiments.cross_sampling.view import list_samples, sample_tokens, tokenizer_of_run

# --- layer views: logit lens, component attribution, the critical-token scan (issue 28) ---
from core.experiments.layers import layer_profile, layer_view, read_layer_view
from core.experiments.attribution import attribute, attribution_table, read_attribution
from core.experiments.critical import criticality, read_scan, scan as critical_scan
from core.experiments.critical import positions as critical_positions
from core.experiments.critical import CriticalConfig, estimate as critical_estimate
from core.experiments.critical import marks as critical_marks
from core.jobs.queue import submit_critical
from core.figures.layers import attribution_figure, critical_figure, lens_figure
from core.figures.layers import profile_figure as layer_profile_figure

# --- trace views: both models' probability and rank lanes of a trace's tokens, the metrics
#     a trace can be highlighted by ---
from core.figures.trace import lanes as trace_lanes
from core.figures.trace import metric_choices

# --- export: figures to bytes (PNG/SVG/PDF/HTML/CSV/Parquet) and a zip bundle of a run's ---
from core.figures.export import bundle_bytes, bundle_name, export_name, figure_bytes

# --- metrics: the per-token metric registry (names, labels, ranges, colour scales) ---
from core.metrics import METRICS, Metric

# --- device: where models run (GPU when there is one, else CPU) ---
from core.engine.pair import pick_device

__all__ = [
    # access
    "allowed_hosts", "check_password", "host_allowed", "is_loopback", "model_roots",
    "public_text",
    "password", "refusal",
    "Connections", "client_address", "sessions", "throttle", "tokens", "trusted_proxies",
    "UploadBudget",
    # runs
    "ASSETS", "REPO_ROOT", "Run", "contrast_candidates", "default_cache",
    "delete_run", "open_run",
    "list_runs", "rename_run", "series_of", "checkpoint_accuracy", "reused_note",
    # queries
    "damaged_since", "describe_traces", "eps_for_budget", "headline", "sparsity_summary",
    "open_runs", "pair_choices", "parting", "run_gone", "same_prompt", "sampler_pair",
    "sampled_from_choices", "session", "token_search", "token_search_bytes",
    "token_search_count", "parse_ngram",
    "trace_count",
    "trace_list", "trace_position", "trace_tokens", "trace_lanes",
    "metric_choices",
    # jobs & add-pair
    "JOB_KINDS", "Job", "JobKind", "job_kind", "PRESETS", "PrecomputeConfig", "RUN_SETTINGS",
    "add_pair", "cancel_job", "list_jobs", "parse_series",
    "read_job_log", "record_checkpoint", "resume_job", "submit_cross_sample", "tick_jobs",
    # uploads
    "default_upload_limits", "models_dir", "prompts_dir", "rollouts_dir", "save_prompt_set",
    "save_rollouts", "rollout_format", "unpack_model",
    # experiments
    "CROSS_PRIMARY", "CrossSampleConfig", "branch_options", "coverage", "fork", "list_forks",
    "eps_for_targets", "Decoding", "run_decoding", "paper_decoding",
    "list_samples", "list_sweeps", "load_fork", "pair_of_run",
    "read_summary", "sample_tokens", "save_fork", "score_text", "tokenizer_of_run",
    # layer views
    "CriticalConfig", "attribute", "attribution_figure", "attribution_table",
    "critical_estimate", "critical_figure", "critical_marks", "submit_critical",
    "critical_positions", "critical_scan", "criticality", "layer_profile",
    "layer_profile_figure", "layer_view", "lens_figure", "read_attribution",
    "read_layer_view", "read_scan",
    # export
    "bundle_bytes", "bundle_name", "export_name", "figure_bytes",
    # metrics
    "METRICS", "Metric",
    # device
    "pick_device",
]
