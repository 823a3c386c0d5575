"""Provenance: what a run folder was made from, so that it says how to reproduce it: the
manifest's construction (build_manifest), the config hash, package versions. Reading a run's
manifest is core.store.run.Run's business (typed, validated)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

from core import __version__
from core.store.schema import MANIFEST_FILE, SCHEMA_VERSION

PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "pyarrow", "duckdb",
            "pandas", "numpy", "math-verify")

# Settings that do not change a run's content (where it lives, how it is forced, which
# engine computes it: the Ray engine writes the same rows, so it resumes the same staging).
NON_CONTENT = {"name", "cache", "force", "device", "engine", "workers", "parts_uri"}


def package_versions() -> dict[str, str | None]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    out["python"] = platform.python_version()
    return out


# Settings added after runs were written, at the value that gives the old content: left out
# of the hash there, so those runs keep their hash (a re-run is still "already complete").
ADDED_DEFAULTS = {"series_sampling": "reuse", "field": "", "truncate_to_context": False,
                  "math_dtype": "auto"}


def config_hash(config) -> str:
    """Hash of the settings that determine a run's content (inputs and every knob)."""
    d = {k: v for k, v in dataclasses.asdict(config).items() if k not in NON_CONTENT
         and not (k in ADDED_DEFAULTS and v == ADDED_DEFAULTS[k])}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def model_record(loaded, pair_vocab: str) -> dict:
    m = loaded.model
    return {
        "spec": loaded.ref.spec,
        "path": str(loaded.ref.local) if loaded.ref.local else None,
        "hub_id": None if loaded.ref.local else loaded.ref.spec,
        "fingerprint": loaded.fingerprint,
        "vocab_fingerprint": pair_vocab,
        "architecture": type(m).__name__ if m is not None else None,
        "parameters": sum(p.numel() for p in m.parameters()) if m is not None else None,
        "dtype": str(next(m.parameters()).dtype).replace("torch.", "") if m is not None else None,
    }


_SECRET_PARAM = ("key", "secret", "token", "password", "credential", "signature")


def redact_uri(uri: str) -> str:
    """`uri` without credentials (user:password@ and secret-looking query values), for
    recording in manifests: s3://AKIA:xyz@bucket/p?secret_key=s -> s3://***@bucket/p?secret_key=***."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not uri or "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urlencode([(k, "***" if any(w in k.lower() for w in _SECRET_PARAM) else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*:/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def reuses(config) -> bool:
    """Whether a run re-scores another run's traces (--traces-from with reuse sampling)."""
    return bool(config.traces_from) and getattr(config, "series_sampling", "reuse") == "reuse"


def build_manifest(config, *, models: dict, prompt_set: dict, stats: dict, device: str) -> dict:
    return {
        "name": config.name,
        "schema_version": SCHEMA_VERSION,
        "shiftlens_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": config.kind or None,
        "series_step": config.series_step if config.series_step >= 0 else None,
        "traces_from": (config.traces_from or None) if reuses(config) else None,
        "series_of": config.traces_from or None,
        "config": {k: redact_uri(v) if k == "parts_uri" else v
                   for k, v in dataclasses.asdict(config).items()},
        "config_hash": config_hash(config),
        "models": models,
        "prompt_set": prompt_set,
        "device": device,
        "packages": package_versions(),
        "stats": stats,
        "metric_math": metric_math(config, device),
    }


def metric_math(config, device: str) -> dict:
    """The metric math a run was scored with: its dtype and path (core.metrics.fused; the
    sequential scoring always runs the torch Context)."""
    import torch

    from core.engine.heads import math_dtype
    from core.metrics.fused import metric_path

    dev = torch.device(device or "cpu")
    dtype = math_dtype(dev, getattr(config, "math_dtype", "auto"))
    path = metric_path(dev, dtype) if getattr(config, "scoring", "joint") == "joint" else "torch"
    return {"dtype": str(dtype).replace("torch.", ""), "path": path}


def read_manifest(run_dir: str | Path) -> dict | None:
    """The manifest dict of a run folder (core/store only; readers use core.store.run.Run):
    None when there is no manifest.json (not a complete run), {} when it is not a JSON
    object (a damaged run: core.store.validate says what is wrong)."""
    p = Path(run_dir) / MANIFEST_FILE
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}
