"""Cross-sampling sweeps in a run folder, keyed by their settings, side by side.

  cross/<key>/samples.parquet   one row per decoded sample (core.store.schema.SAMPLES_SCHEMA)
  cross/<key>/summary.parquet   one row per (direction, eps, control_kind) (SUMMARY_SCHEMA)
  cross/<key>/settings.json     key, created, the sweep's settings and the job's config

`key` (`sweep_key`) is derived from every setting that changes what a sweep decodes or
reports (directions, eps grid, controls and their matching, endpoints, prompts, samples,
temperature, top-p, max_new_tokens, seed, target budget), so sweeps that differ in any of
them sit side by side and re-running the same settings replaces that sweep only. An older
run's single `cross_samples.parquet` + `cross_summary.parquet` in the run folder itself is
read as the sweep keyed "legacy" (the columns added since are null there).

Plain Parquet files (DuckDB: `SELECT * FROM 'cache/<run>/cross/<key>/summary.parquet'`),
written atomically through core.store.storage with the provenance (sweep settings, the
run's manifest, package versions) in the file metadata under `shiftlens.manifest`;
settings.json is written last, so a sweep is listed only once all three files exist.
Endpoint rows (direction 'base' / 'tuned': each model alone) have eps = +inf. Writers hold
the run's lock (core.store.cache.writing_into), as the cross-sampling job does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.store.manifest import package_versions
from core.store.schema import (
    SAMPLES_FILE,
    SAMPLES_SCHEMA,
    SUMMARY_FILE,
    SUMMARY_SCHEMA,
    SWEEP_SAMPLES,
    SWEEP_SETTINGS,
    SWEEP_SUMMARY,
    SWEEPS_DIR,
)
from core.store.storage import write_json, write_parquet

LEGACY = "legacy"
KEY_FIELDS = ("directions", "eps_grid", "controls", "match", "endpoints", "n_prompts",
              "samples", "temperature", "top_p", "max_new_tokens", "seed", "target_budget")


def sweep_key(settings: dict) -> str:
    """A folder name for a sweep's settings: 'p<top-p>-t<temperature>-k<samples>-s<seed>-'
    plus 8 hex digits of a hash of every KEY_FIELDS value (directions and eps sorted)."""
    canon = {k: settings.get(k) for k in KEY_FIELDS}
    canon["directions"] = sorted(canon["directions"] or [])
    canon["eps_grid"] = sorted(repr(float(e)) for e in canon["eps_grid"] or [])
    digest = hashlib.sha256(json.dumps(canon, sort_keys=True, default=str).encode())
    return (f"p{settings.get('top_p', 1):g}-t{settings.get('temperature', 1):g}-"
            f"k{settings.get('samples', 1)}-s{settings.get('seed', 0)}-"
            f"{digest.hexdigest()[:8]}")


@dataclass
class SweepInfo:
    key: str
    samples: Path
    summary: Path
    settings: dict  # the sweep's settings (KEY_FIELDS and more); {} when unknown
    created: str
    legacy: bool = False

    def label(self) -> str:
        """One line: the settings a reader tells sweeps apart by."""
        s = self.settings
        if not s:
            return f"{self.key} ({self.created or 'date unknown'})"
        eps = s.get("eps_grid") or []
        ctl = ",".join(s.get("controls") or []) or "none"
        parts = [f"top-p {s.get('top_p', '?'):g}" if isinstance(s.get("top_p"), (int, float))
                 else "top-p ?",
                 f"T {s.get('temperature', '?')}", f"{s.get('samples', '?')} samples",
                 f"seed {s.get('seed', '?')}", f"{s.get('n_prompts', '?')} prompts",
                 f"eps {','.join(f'{e:g}' for e in eps)}",
                 f"controls {ctl} ({s.get('match', 'decisions')})"]
        if s.get("target_budget"):
            parts.append(f"target budget {100 * s['target_budget']:g}%")
        return f"{self.key}: " + " · ".join(parts) + (" · legacy" if self.legacy else "")


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


def write_results(run_dir: str | Path, result, metadata: dict,
                  key: str | None = None) -> tuple[Path, Path]:
    """Write a `SweepResult` as the sweep `key` (default: sweep_key(result.settings)) into
    `run_dir`/cross/<key>/; returns the samples and summary paths. Hold the run's lock."""
    key = key or sweep_key(result.settings)
    folder = Path(run_dir) / SWEEPS_DIR / key
    folder.mkdir(parents=True, exist_ok=True)
    samples, summary = folder / SWEEP_SAMPLES, folder / SWEEP_SUMMARY
    write_parquet(samples_table(result.rows), samples, metadata=metadata)
    write_parquet(summary_table(result.summary), summary, metadata=metadata)
    # Microseconds: "newest" must tell apart two sweeps written within one second.
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
    write_json({"key": key, "created": created, "settings": result.settings,
                "config": (metadata.get("cross_sample_config") or {}).get("config"),
                "n_samples": len(result.rows)}, folder / SWEEP_SETTINGS)
    return samples, summary


def _legacy(run_dir: Path) -> SweepInfo | None:
    summary, samples = run_dir / SUMMARY_FILE, run_dir / SAMPLES_FILE
    if not summary.is_file():
        return None
    try:
        raw = pq.read_schema(summary).metadata or {}
        meta = json.loads(raw.get(b"shiftlens.manifest", b"{}"))
    except (OSError, ValueError, pa.ArrowInvalid):
        meta = {}
    sweep = dict((meta.get("cross_sample_config") or {}).get("sweep") or {})
    if "control" in sweep and "controls" not in sweep:  # the old boolean: random, by decisions
        sweep["controls"] = ["random"] if sweep.pop("control") else []
        sweep["match"] = "decisions"
    return SweepInfo(LEGACY, samples, summary, sweep, str(meta.get("created", "")), True)


def list_sweeps(run_dir: str | Path) -> list[SweepInfo]:
    """Every complete sweep stored in a run folder, newest first (the legacy one included)."""
    run_dir = Path(run_dir)
    out = []
    root = run_dir / SWEEPS_DIR
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        f = d / SWEEP_SETTINGS
        if not (f.is_file() and (d / SWEEP_SUMMARY).is_file()):
            continue
        try:
            info = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append(SweepInfo(d.name, d / SWEEP_SAMPLES, d / SWEEP_SUMMARY,
                             info.get("settings") or {}, str(info.get("created") or "")))
    legacy = _legacy(run_dir)
    if legacy is not None:
        out.append(legacy)
    return sorted(out, key=lambda s: (s.created, s.key), reverse=True)


def get_sweep(run_dir: str | Path, key: str | None = None) -> SweepInfo | None:
    """The sweep `key` of a run (default: the newest), or None when there is none."""
    sweeps = list_sweeps(run_dir)
    if key is None:
        return sweeps[0] if sweeps else None
    return next((s for s in sweeps if s.key == key), None)


def read_summary(run_dir: str | Path, key: str | None = None):
    """The summary of sweep `key` (default: the newest) as a DataFrame with the columns of
    SUMMARY_SCHEMA (direction, eps, control, control_kind, n, n_prompts, budget,
    budget_changed, token_share, changed_share, mean_tokens, mean_switched, mean_changed,
    n_short, accuracy, ci_lo, ci_hi, diff, diff_lo, diff_hi), one row per (direction, eps,
    control_kind); None when the run has no such sweep. A legacy sweep's control rows are
    control_kind 'random' (matched on decisions) and its newer columns are NaN."""
    info = get_sweep(run_dir, key)
    if info is None:
        return None
    df = pq.read_table(info.summary).to_pandas()
    if "control_kind" not in df:
        df["control_kind"] = np.where(df["control"], "random", "")
    return df.reindex(columns=[f.name for f in SUMMARY_SCHEMA])
