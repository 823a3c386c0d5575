"""Cross-sampling tables in a run folder, beside tokens/topk/traces.parquet.

  cross_samples.parquet  one row per decoded sample (core.store.schema.SAMPLES_SCHEMA)
  cross_summary.parquet  one row per (direction, eps, control) (SUMMARY_SCHEMA)

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
from core.store.schema import SAMPLES_FILE, SAMPLES_SCHEMA, SUMMARY_FILE, SUMMARY_SCHEMA
from core.store.storage import write_parquet


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
