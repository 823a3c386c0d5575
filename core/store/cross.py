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
All three are written in a staging folder outside the run (`<cache>/.staging/.sweep-<pid>-
<hex>`) and published by renaming that folder to cross/<key>, a sweep it replaces moved
aside first: a sweep cancelled, failed or killed while it writes leaves nothing in the run.
What a killed writer left in .staging is cleaned up (a replaced sweep put back where its
replacement never arrived) by the next sweep written into the cache (`repair_sweeps`).
Endpoint rows (direction 'base' / 'tuned': each model alone) have eps = +inf. Writers hold
the run's lock (core.store.cache.writing_into), as the cross-sampling job does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.paths import STAGING
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
    `run_dir`/cross/<key>/, staged and published whole (see the module docstring); returns
    the samples and summary paths. Hold the run's lock."""
    key = key or sweep_key(result.settings)
    run_dir = Path(run_dir)
    root = run_dir.parent / STAGING
    repair_sweeps(root)
    stage = root / f".sweep-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder = run_dir / SWEEPS_DIR / key
    try:
        stage.mkdir(parents=True)
        write_parquet(samples_table(result.rows), stage / SWEEP_SAMPLES, metadata=metadata)
        write_parquet(summary_table(result.summary), stage / SWEEP_SUMMARY, metadata=metadata)
        # Microseconds: "newest" must tell apart two sweeps written within one second.
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        write_json({"key": key, "created": created, "settings": result.settings,
                    "config": (metadata.get("cross_sample_config") or {}).get("config"),
                    "n_samples": len(result.rows)}, stage / SWEEP_SETTINGS)
        _publish(stage, folder, root)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return folder / SWEEP_SAMPLES, folder / SWEEP_SUMMARY


ORIGIN = "origin"  # in a sweep set aside for its replacement: the cross/<key> it came from


def _publish(stage: Path, folder: Path, root: Path) -> None:
    """Rename `stage` to `folder`; a sweep already there is set aside in `root` first (with
    its origin noted, so repair_sweeps puts it back if this process dies before the rename)
    and removed after."""
    folder.parent.mkdir(exist_ok=True)
    old = None
    if folder.exists():
        old = root / f".sweep-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        (folder / ORIGIN).write_text(str(folder), encoding="utf-8")
        os.rename(folder, old)
    try:
        os.rename(stage, folder)
    except BaseException:
        if old is not None:
            os.rename(old, folder)
            (folder / ORIGIN).unlink(missing_ok=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def repair_sweeps(root: Path) -> list[str]:
    """Clean what killed sweep writers left in `root` (a cache's .staging): a staged sweep
    is removed; a sweep set aside for a replacement that never arrived is put back. Folders
    of live processes are left alone. Returns what was done, one line each."""
    done = []
    for d in sorted(root.glob(".sweep-*")) if root.is_dir() else ():
        pid = d.name.split("-")[1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        origin = d / ORIGIN
        home = Path(origin.read_text(encoding="utf-8")) if origin.is_file() else None
        if home is not None and (d / SWEEP_SETTINGS).is_file() and not home.exists():
            os.rename(d, home)
            (home / ORIGIN).unlink(missing_ok=True)
            done.append(f"put back sweep {home.name} of run {home.parent.parent.name}")
        else:
            shutil.rmtree(d, ignore_errors=True)
            done.append(f"removed an unfinished sweep write ({d.name})")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        if d.name.startswith("."):
            continue
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
