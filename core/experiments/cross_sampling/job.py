"""The cross-sampling job on a run folder: load its pair and prompts, sweep, write tables.

    CrossSampleConfig -> run folder (manifest) -> load_pair + load_prompts -> sweep
    -> cross_samples.parquet + cross_summary.parquet in the run folder
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm.auto import tqdm

from core.errors import CrossSampleError, RunsError
from core.experiments.cross_sampling.config import CrossSampleConfig
from core.experiments.cross_sampling.sweep import DIRECTIONS, Progress, SweepResult, sweep
from core.prompts import load_prompts
from core.store.cache import resolve_run as store_resolve
from core.store.cache import writing_into
from core.store.cross import provenance, write_results
from core.store.manifest import Manifest, read_manifest


def resolve_run(run: str, cache: str | Path) -> tuple[Path, dict]:
    """A run folder (a folder itself, or a name under `cache`) and its manifest."""
    try:
        p = store_resolve(cache, run)
    except RunsError as e:
        raise CrossSampleError(str(e)) from None
    return p, read_manifest(p)


def check_options(cfg: CrossSampleConfig) -> tuple[list[str], list[float]]:
    try:
        dirs, eps = cfg.directions(), cfg.eps_grid()
    except ValueError as e:
        raise CrossSampleError(f"--eps: expected comma-separated numbers ({e})") from None
    bad = [d for d in dirs if d not in DIRECTIONS]
    if bad or not dirs:
        raise CrossSampleError(f"--direction: {', '.join(bad) or 'empty'}; use "
                               f"{' and/or '.join(DIRECTIONS)}")
    if not eps:
        raise CrossSampleError("--eps: give at least one threshold")
    if cfg.control not in ("random", "none"):
        raise CrossSampleError(f"--control: {cfg.control!r}; use random or none")
    for name in ("samples", "batch_size"):
        if getattr(cfg, name) < 1:
            raise CrossSampleError(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.temperature < 0 or not 0 < cfg.top_p <= 1:
        raise CrossSampleError("--temperature must be >= 0 and --top-p in (0, 1]")
    return dirs, eps


def run_cross_sample(cfg: CrossSampleConfig, log: Callable[[str], None] = print,
                     show_progress: bool = True,
                     on_batch: Callable[[Progress], None] | None = None,
                     cancel: threading.Event | Callable[[], bool] | None = None,
                     ) -> tuple[SweepResult, Path | None]:
    """Run the sweep `cfg` describes; returns the result and the summary file written
    (None when cancelled: nothing is written then, the partial rows are in the result).
    The run's lock is held, shared, from start to finish (core.store.cache.writing_into):
    no rename, delete or --force recompute of the run meanwhile."""
    dirs, eps = check_options(cfg)
    run_dir, _ = resolve_run(cfg.run, cfg.cache)
    with writing_into(run_dir, CrossSampleError):
        return _run(cfg, dirs, eps, run_dir, read_manifest(run_dir), log, show_progress,
                    on_batch, cancel)


def _run(cfg: CrossSampleConfig, dirs, eps, run_dir: Path, manifest: dict, log, show_progress,
         on_batch, cancel) -> tuple[SweepResult, Path | None]:
    rc = manifest.get("config", {})
    limit = cfg.prompts or rc.get("max_prompts") or None
    ps = load_prompts(rc["prompts"], limit=limit)
    want = (manifest.get("prompt_set") or {}).get("fingerprint")
    if want and want != ps.fingerprint:
        log(f"warning: {ps.path} changed since run {run_dir.name!r} was computed")
    pair = Manifest.load(run_dir).load_pair(device=cfg.device)
    max_new = cfg.max_new_tokens or rc.get("max_new_tokens") or 128
    n_boot = cfg.bootstrap

    per_prompt = cfg.samples * (len(dirs) * len(eps) * (2 if cfg.control == "random" else 1)
                                + (2 if cfg.endpoints else 0))
    bar = tqdm(total=per_prompt * len(ps.rows), desc=f"cross-sample {run_dir.name}",
               unit="sample", disable=not show_progress)
    tok_bar = tqdm(desc="tokens", unit="tok", disable=not show_progress, position=1)

    def progress(p: Progress) -> None:
        bar.update(len(p.new_rows))
        bar.set_postfix(tok_s=f"{p.tokens / max(p.seconds, 1e-9):.0f}")
        if on_batch is not None:
            on_batch(p)

    try:
        result = sweep(pair, ps.rows, dirs, eps, cfg.control == "random", cfg.samples,
                       endpoints=cfg.endpoints, temperature=cfg.temperature, top_p=cfg.top_p,
                       max_new_tokens=max_new, seed=cfg.seed, batch_size=cfg.batch_size,
                       chat_template=rc.get("chat_template", True), n_boot=n_boot,
                       on_batch=progress, cancel=cancel, on_step=tok_bar.update)
    finally:
        tok_bar.close()
        bar.close()
    if result.cancelled:
        log(f"cancelled after {len(result.rows)} samples; nothing written")
        return result, None
    meta = provenance({"config": dataclasses.asdict(cfg), "sweep": result.settings,
                       "run_dir": str(run_dir)}, manifest,
                      {"seconds": round(result.seconds, 2), "tokens": result.tokens})
    _, summary = write_results(run_dir, result, meta)
    log(f"wrote {summary} and {summary.with_name('cross_samples.parquet').name} "
        f"({len(result.rows)} samples, {result.tokens} tokens, {result.seconds:.1f} s)")
    return result, summary


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a printable table: budget and accuracy in %, with the 95% interval."""
    if summary.empty:
        return "(no samples)"
    df = pd.DataFrame({
        "direction": summary["direction"],
        "eps": summary["eps"].map(lambda e: "-" if e == float("inf") else f"{e:g}"),
        "control": summary["control"].map({True: "random", False: ""}),
        "n": summary["n"],
        "budget %": (100 * summary["budget"]).map("{:.2f}".format),
        "tokens": summary["mean_tokens"].map("{:.1f}".format),
        "accuracy %": (100 * summary["accuracy"]).map("{:.1f}".format),
        "95% CI": [f"[{100 * lo:.1f}, {100 * hi:.1f}]"
                   for lo, hi in zip(summary["ci_lo"], summary["ci_hi"])],
    })
    return df.to_string(index=False)
