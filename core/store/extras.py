"""The layer views' tables inside a run folder: written atomically while holding the run's
shared lock, read back as DataFrames.

    <run>/layers/lens.parquet         the logit lens at chosen tokens (core.experiments.layers)
    <run>/layers/attribution.parquet  component attribution per trace (.attribution)
    <run>/layers/critical.parquet     critical-token scan rollouts (.critical)

Each write replaces the rows of the same key (a token's lens: trace_id, pos; a trace's
attribution or scan: trace_id) and keeps the rest: read, merge, write to a temporary file,
os.replace (core.store.storage.write_parquet), under core.store.cache.writing_into (a
rename, delete or recompute of the run is refused meanwhile, and this is refused while one
of those holds it) and an exclusive per-table lock, so two writers into one run take turns
and lose nothing. Columns are whatever the experiment gives; the key columns must be there.

Does not: compute anything, or know what the columns mean (the experiments own them).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.store.cache import one_writer, writing_into
from core.store.manifest import read_manifest
from core.store.storage import write_parquet

EXTRAS_DIR = "layers"
TABLES = {"lens": ("trace_id", "pos"), "attribution": ("trace_id",), "critical": ("trace_id",)}


def table_path(run_dir: str | Path, table: str) -> Path:
    if table not in TABLES:
        raise ValueError(f"unknown layer table {table!r}; one of {sorted(TABLES)}")
    return Path(run_dir) / EXTRAS_DIR / f"{table}.parquet"


def write_table(run_dir: str | Path, table: str, df: pd.DataFrame) -> Path:
    """Store `df` as run table `table` (lens, attribution, critical), replacing the stored
    rows with the same key values; returns the file's path."""
    run_dir = Path(run_dir)
    path = table_path(run_dir, table)
    key = list(TABLES[table])
    missing = [k for k in key if k not in df.columns]
    if missing:
        raise ValueError(f"{table} rows need the key columns {missing}")
    with writing_into(run_dir), one_writer(run_dir, table, f"{table} table"):
        old = read_table(run_dir, table)
        if len(old):
            keys = pd.MultiIndex.from_frame(df[key].drop_duplicates())
            old = old[~pd.MultiIndex.from_frame(old[key]).isin(keys)]
            df = pd.concat([old, df], ignore_index=True)
        path.parent.mkdir(exist_ok=True)
        write_parquet(pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False),
                      path, metadata=read_manifest(run_dir))
    return path


def read_table(run_dir: str | Path, table: str, trace_id: int | None = None) -> pd.DataFrame:
    """Run table `table` (of one trace when `trace_id`), empty when never written."""
    path = table_path(run_dir, table)
    if not path.is_file():
        return pd.DataFrame()
    df = pq.read_table(path).to_pandas()
    if trace_id is not None:
        df = df[df.trace_id == int(trace_id)].reset_index(drop=True)
    return df
