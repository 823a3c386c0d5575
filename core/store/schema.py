"""The run-folder contract: file names, Arrow schemas and the schema version.

A run folder under `cache/` holds:
  tokens.parquet   one row per response token, keyed by (trace_id, pos)
  topk.parquet     one row per response token: both models' top-k lists
  traces.parquet   one row per trace
  manifest.json    provenance (see core/manifest.py)
Optional tables written by later stages live beside them, and their schemas live here too:
  cross/<sweep key>/samples.parquet, summary.parquet, settings.json  cross-sampling sweeps
  (cross_samples.parquet, cross_summary.parquet: the single sweep of older runs)
  forks.parquet                                 the fork explorer

Column names are the metric names of docs/paper.md (registered in core.metrics).
"""

from __future__ import annotations

import pyarrow as pa

from core.metrics import metric_names

SCHEMA_VERSION = "1.0"

TOKENS_FILE = "tokens.parquet"
TOPK_FILE = "topk.parquet"
TRACES_FILE = "traces.parquet"
MANIFEST_FILE = "manifest.json"
RUN_FILES = (TOKENS_FILE, TOPK_FILE, TRACES_FILE, MANIFEST_FILE)

# Metric columns, in registry order (core.metrics): float32, then int32, then bool ones.
FLOAT_METRICS = metric_names("float32")
INT_METRICS = metric_names("int32")
BOOL_METRICS = metric_names("bool")

TOKENS_SCHEMA = pa.schema(
    [
        ("trace_id", pa.int32()),
        ("pos", pa.int32()),          # 0-based index of the token within the response
        ("rel_pos", pa.float32()),    # pos / response length, in [0, 1)
        ("token_id", pa.int32()),
        ("token", pa.string()),       # decoded text of this token (faithful, may be "")
    ]
    + [(m, pa.float32()) for m in FLOAT_METRICS]
    + [(m, pa.int32()) for m in INT_METRICS]
    + [(m, pa.bool_()) for m in BOOL_METRICS]
)

TOPK_SCHEMA = pa.schema(
    [
        ("trace_id", pa.int32()),
        ("pos", pa.int32()),
        ("base_ids", pa.list_(pa.int32())),      # k ids, most likely first
        ("base_tokens", pa.list_(pa.string())),
        ("base_probs", pa.list_(pa.float32())),
        ("tuned_ids", pa.list_(pa.int32())),
        ("tuned_tokens", pa.list_(pa.string())),
        ("tuned_probs", pa.list_(pa.float32())),
        # Where the tuned model's argmax sits under the base model (paper analysis 5).
        ("tuned_top1_rank_base", pa.int32()),
        ("tuned_top1_prob_base", pa.float32()),
    ]
)

TRACES_SCHEMA = pa.schema(
    [
        ("trace_id", pa.int32()),
        ("prompt_id", pa.string()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("reference", pa.string()),
        ("verifier", pa.string()),           # "exact" or "math": how `correct` was decided
        ("extracted_answer", pa.string()),   # null when none could be extracted
        ("correct", pa.bool_()),
        ("length", pa.int32()),              # response tokens (= rows in tokens.parquet)
        ("sampled_from", pa.string()),       # "tuned" or "base"
        ("sample_index", pa.int32()),        # 0..n-1 within (prompt, sampled_from)
        ("seed", pa.int64()),
        ("finished", pa.bool_()),            # the model emitted EOS before the cap
        ("difficulty", pa.string()),         # from the prompt set, null when absent
    ]
)

# --- Optional tables written beside them by later stages ---

# Cross-sampling (core.experiments.cross_sampling; written by core.store.cross): each sweep
# in cross/<key>/ (key: sweep settings, core.store.cross.sweep_key). The two root files are
# the single sweep older runs hold (read as the "legacy" sweep; columns added since are null).
SWEEPS_DIR = "cross"
SWEEP_SAMPLES, SWEEP_SUMMARY, SWEEP_SETTINGS = "samples.parquet", "summary.parquet", "settings.json"
SAMPLES_FILE = "cross_samples.parquet"
SUMMARY_FILE = "cross_summary.parquet"

SAMPLES_SCHEMA = pa.schema([
    ("prompt_id", pa.string()),
    ("sample_index", pa.int32()),          # 0..K-1 within (prompt, setting)
    ("direction", pa.string()),            # forward | reverse | base | tuned
    ("eps", pa.float64()),                 # +inf for the endpoints (never switch)
    ("control", pa.bool_()),               # a control of the same setting (control_kind)
    ("control_kind", pa.string()),         # "" (not a control) | random | entropy
    ("switched", pa.list_(pa.int32())),    # steps whose token came from the intervention
    ("n_switched", pa.int32()),            # switch decisions
    ("changed", pa.list_(pa.int32())),     # switched steps whose token differs from the
    ("n_changed", pa.int32()),             # primary's draw there (core.engine.lockstep)
    ("n_requested", pa.int32()),           # control: changes (or decisions) asked for
    ("redraws", pa.int32()),               # control: positions redrawn (sample ended short)
    ("n_tokens", pa.int32()),              # generated tokens, EOS included
    ("budget", pa.float64()),              # n_switched / n_tokens
    ("budget_changed", pa.float64()),      # n_changed / n_tokens
    ("tokens", pa.list_(pa.int32())),
    ("js", pa.list_(pa.float32())),        # decision js per step (NaN when one model ran)
    ("entropy", pa.list_(pa.float32())),   # primary's entropy per step (nats, T=1, full)
    ("text", pa.string()),
    ("answer", pa.string()),               # extracted answer, null when none
    ("correct", pa.bool_()),
    ("finished", pa.bool_()),              # emitted EOS before the cap
    ("seed", pa.int64()),                  # the row's sampling seed (shared per prompt, k)
])

SUMMARY_SCHEMA = pa.schema([
    ("direction", pa.string()),
    ("eps", pa.float64()),
    ("control", pa.bool_()),
    ("control_kind", pa.string()),         # "" | random | entropy
    ("n", pa.int32()),                     # samples
    ("n_prompts", pa.int32()),
    ("budget", pa.float64()),              # mean per-sample share of tokens switched
    ("budget_changed", pa.float64()),      # mean per-sample share of tokens changed
    ("token_share", pa.float64()),         # all switched tokens / all tokens
    ("changed_share", pa.float64()),       # all changed tokens / all tokens
    ("mean_tokens", pa.float64()),
    ("mean_switched", pa.float64()),       # per sample
    ("mean_changed", pa.float64()),
    ("n_short", pa.int32()),               # control samples short of their requested count
    ("accuracy", pa.float64()),            # mean over prompts of per-prompt accuracy
    ("ci_lo", pa.float64()),               # 95% bootstrap interval over prompts
    ("ci_hi", pa.float64()),
    ("diff", pa.float64()),                # control rows: reference - control accuracy,
    ("diff_lo", pa.float64()),             # paired 95% interval (bootstrap over prompts,
    ("diff_hi", pa.float64()),             # Tango's score interval where that is a point)
    # paired exact test (cross_sampling/paired.py): control rows against their reference,
    # forward / reverse rows against base / tuned alone; NaN / "" where there is none
    ("test", pa.string()),                 # "mcnemar exact" | "paired sign-flip"
    ("n_ref_only", pa.float64()),          # discordant pairs: right only in the reference
    ("n_other_only", pa.float64()),        # right only in the other setting
    ("p_value", pa.float64()),
    ("p_holm", pa.float64()),              # Holm-adjusted over every p-value of the sweep
    ("gap_moved", pa.float64()),           # forward: share of the gap recovered; reverse:
    ("gap_moved_lo", pa.float64()),        # removed; bootstrap 95% interval over prompts
    ("gap_moved_hi", pa.float64()),
    # control rows, over the samples whose cross-sample changed a token: the share that
    # decoded the identical sequence, and the mean Jaccard overlap of the changed steps
    ("same_as_ref", pa.float64()),
    ("changed_overlap", pa.float64()),
])

# The fork explorer (core.experiments.fork).
FORKS_FILE = "forks.parquet"
FORKS_SCHEMA = pa.schema([
    ("fork_id", pa.string()), ("trace_id", pa.int32()), ("pos", pa.int32()),
    ("branch", pa.string()),            # "base top-1" or "tuned top-1"
    ("branch_token_id", pa.int32()), ("continued_by", pa.string()), ("rollout", pa.int32()),
    ("text", pa.string()), ("answer", pa.string()), ("correct", pa.bool_()),
    ("temperature", pa.float32()), ("top_p", pa.float32()), ("seed", pa.int64()),
    ("created", pa.string()),
])

SCHEMAS = {TOKENS_FILE: TOKENS_SCHEMA, TOPK_FILE: TOPK_SCHEMA, TRACES_FILE: TRACES_SCHEMA}
OPTIONAL_SCHEMAS = {SWEEP_SAMPLES: SAMPLES_SCHEMA, SWEEP_SUMMARY: SUMMARY_SCHEMA,
                    FORKS_FILE: FORKS_SCHEMA}  # present once a sweep or a fork has run
