"""The run-folder contract: file names, Arrow schemas and the schema version.

A run folder under `cache/` holds:
  tokens.parquet   one row per response token, keyed by (trace_id, pos)
  topk.parquet     one row per response token: both models' top-k lists
  traces.parquet   one row per trace
  manifest.json    provenance (see core/manifest.py)
Optional tables written by later stages (cross-sampling, forks) live beside them.

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

SCHEMAS = {TOKENS_FILE: TOKENS_SCHEMA, TOPK_FILE: TOPK_SCHEMA, TRACES_FILE: TRACES_SCHEMA}
