"""Cross-sampling tables in a run folder, beside tokens/topk/traces.parquet.

  cross_samples.parquet  one row per decoded sample (see SAMPLES_SCHEMA)
  cross_summary.parquet  one row per (direction, eps, control) (see SUMMARY_SCHEMA)

Both are plain Parquet files (DuckDB: `SELECT * FROM 'cache/<run>/cross_summary.parquet'`),
written atomically through core.store.storage.write_parquet with the provenance (sweep settings,
the run's manifest, package versions) in the file metadata under `shiftlens.manifest`.
Endpoint rows (direction 'base' / 'tuned': each model alone) have eps = +inf.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.store.manifest import package_versions
from core.store.storage import write_parquet

SAMPLES_FILE = "cross_samples.parquet"
SUMMARY_FILE = "cross_summary.parquet"

SAMPLES_SCHEMA = pa.schema([
    ("prompt_id", pa.string()),
    ("sample_index", pa.int32()),          # 0..K-1 within (prompt, setting)
    ("direction", pa.string()),            # forward | reverse | base | tuned
    ("eps", pa.float64()),                 # +inf for the endpoints (never switch)
    ("control", pa.bool_()),               # random-position control of the same setting
    ("switched", pa.list_(pa.int32())),    # steps whose token came from the intervention
    ("n_switched", pa.int32()),
    ("n_requested", pa.int32()),           # control: switches asked for (null otherwise)
    ("n_tokens", pa.int32()),              # generated tokens, EOS included
    ("budget", pa.float64()),              # n_switched / n_tokens
    ("tokens", pa.list_(pa.int32())),
    ("js", pa.list_(pa.float32())),        # decision js per step (NaN when one model ran)
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
    ("n", pa.int32()),                     # samples
    ("n_prompts", pa.int32()),
    ("budget", pa.float64()),              # mean per-sample share of tokens switched
    ("token_share", pa.float64()),         # all switched tokens / all tokens
    ("mean_tokens", pa.float64()),
    ("accuracy", pa.float64()),            # mean over prompts of per-prompt accuracy
    ("ci_lo", pa.float64()),               # 95% bootstrap interval over prompts
    ("ci_hi", pa.float64()),
])


def samples_table(rows: list[dict]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in SAMPLES_SCHEMA}
    return pa.Table.from_pydict(
        {f.name: pa.array(cols[f.name], type=f.type) for f in SAMPLES_SCHEMA},
        schema=SAMPLES_SCHEMA)


def summary_table(summary) -> pa.Table:
    df = summary.reindex(columns=[f.name for f in SUMMARY_SCHEMA])
    return pa.Table.from_pandas(df, schema=SUMMARY_SCHEMA, preserve_index=False)


def provenance(settings: dict, run_manifest: dict | None, extra: dict | None = None) -> dict:
    return {
        "kind": "cross_sampling",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cross_sample_config": settings,
        "run_manifest": run_manifest,
        "packages": package_versions(),
        **(extra or {}),
    }


def write_results(run_dir: str | Path, result, metadata: dict) -> tuple[Path, Path]:
    """Write both tables of a `SweepResult` into `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    samples, summary = run_dir / SAMPLES_FILE, run_dir / SUMMARY_FILE
    write_parquet(samples_table(result.rows), samples, metadata=metadata)
    write_parquet(summary_table(result.summary), summary, metadata=metadata)
    return samples, summary


def read_summary(run_dir: str | Path):
    """The summary table as a DataFrame, or None when the run has none. Columns of
    SUMMARY_SCHEMA: direction, eps, control, n, n_prompts, budget, token_share, mean_tokens,
    accuracy, ci_lo, ci_hi; one row per (direction, eps, control)."""
    p = Path(run_dir) / SUMMARY_FILE
    return pq.read_table(p).to_pandas() if p.is_file() else None
