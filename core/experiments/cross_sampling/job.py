"""The cross-sampling job on a run folder: load its pair and prompts, sweep, write tables.

    CrossSampleConfig -> run folder (manifest) -> load_pair + load_prompts
    -> target budget's eps (budget.py) joins the grid -> sweep
    -> cross/<sweep key>/samples.parquet + summary.parquet + settings.json in the run folder
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm.auto import tqdm

from core.errors import CrossSampleError, RunsError
from core.experiments import decoding
from core.experiments.cross_sampling.budget import eps_for_targets
from core.experiments.cross_sampling.config import CrossSampleConfig
from core.experiments.cross_sampling.controls import CONTROL_KINDS, MATCH
from core.experiments.cross_sampling.sweep import DIRECTIONS, Progress, SweepResult, sweep
from core.inputs.prompts import load_prompts
from core.paths import cache_dir
from core.store.cache import open_run, writing_into
from core.store.cross import provenance, sweep_key
from core.store.run import Run


def resolve_run(run: str, cache: str | Path) -> tuple[Path, Run]:
    """A healthy run's folder (a folder itself, or a name under `cache`) and its Run."""
    try:
        r = open_run(cache, run, tables=False)  # a sweep never reads the run's own tables
    except RunsError as e:
        raise CrossSampleError(str(e)) from None
    return r.path, r


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
    bad = [k for k in cfg.controls() if k not in CONTROL_KINDS]
    if bad or not cfg.controls() and cfg.control.strip() != "none":
        raise CrossSampleError(f"--control: {cfg.control!r}; use "
                               f"{' and/or '.join(CONTROL_KINDS)}, or none")
    if cfg.match not in MATCH:
        raise CrossSampleError(f"--match: {cfg.match!r}; use {' or '.join(MATCH)}")
    if not 0 <= cfg.target_budget < 1:
        raise CrossSampleError("--target-budget must be a share in [0, 1) (0.05 = 5%)")
    for name in ("samples", "batch_size"):
        if getattr(cfg, name) < 1:
            raise CrossSampleError(f"--{name.replace('_', '-')} must be >= 1")
    if (cfg.temperature is not None and cfg.temperature < 0
            or cfg.top_p is not None and not 0 < cfg.top_p <= 1):
        raise CrossSampleError("--temperature must be >= 0 and --top-p in (0, 1]")
    if cfg.decoding not in decoding.CHOICES:
        raise CrossSampleError(f"--decoding: {cfg.decoding!r}; use "
                               f"{' or '.join(decoding.CHOICES)}")
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
    run_dir, _ = resolve_run(cfg.run, cache_dir(cfg.cache))  # "": the default cache
    with writing_into(run_dir, CrossSampleError):
        try:
            me = Run.open(run_dir).require(tables=False)
        except RunsError as e:
            raise CrossSampleError(str(e)) from None
        return _run(cfg, dirs, eps, me, log, show_progress, on_batch, cancel)


def _run(cfg: CrossSampleConfig, dirs, eps, me: Run, log, show_progress,
         on_batch, cancel) -> tuple[SweepResult, Path | None]:
    run_dir = me.path
    dec = decoding.resolve(cfg.decoding, me, cfg.top_p, cfg.temperature)
    cfg = dataclasses.replace(cfg, top_p=dec.top_p, temperature=dec.temperature)
    log(f"decoding: {dec.label()}")
    ps = load_prompts(me.prompts_path, limit=cfg.prompts or me.max_prompts)
    if me.prompt_fingerprint and me.prompt_fingerprint != ps.fingerprint:
        log(f"warning: {ps.path} changed since run {run_dir.name!r} was computed")
    pair = me.load_pair(device=cfg.device)
    max_new = cfg.max_new_tokens or me.max_new_tokens
    n_boot = cfg.bootstrap
    target = {"target_budget": cfg.target_budget or None, "target_eps": None}
    if cfg.target_budget:
        metric, got = eps_for_targets(me, [cfg.target_budget], cfg.top_p)
        t_eps = float(f"{max(float(got.eps.iloc[0]), 0.0):.6g}")
        realised = float(got.realised.iloc[0])
        target.update(target_eps=t_eps, target_metric=metric, target_realised=realised)
        if not any(abs(t_eps - e) <= 1e-9 * max(1.0, abs(e)) for e in eps):
            eps = sorted([*eps, t_eps])
        log(f"target budget {100 * cfg.target_budget:g}% of tokens: eps {t_eps:g} (from the "
            f"run's stored {metric}; {100 * realised:.2f}% of its stored tokens exceed it)")
    kinds = cfg.controls()

    per_prompt = cfg.samples * (len(dirs) * len(eps) * (1 + len(kinds))
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
        result = sweep(pair, ps.rows, dirs, eps, kinds, cfg.samples, match=cfg.match,
                       endpoints=cfg.endpoints, temperature=cfg.temperature, top_p=cfg.top_p,
                       max_new_tokens=max_new, seed=cfg.seed, batch_size=cfg.batch_size,
                       chat_template=me.chat_template, n_boot=n_boot,
                       on_batch=progress, cancel=cancel, on_step=tok_bar.update)
    finally:
        tok_bar.close()
        bar.close()
    if result.cancelled:
        log(f"cancelled after {len(result.rows)} samples; nothing written")
        return result, None
    result.settings.update(target)
    result.settings["decoding"] = dec.source
    meta = provenance({"config": dataclasses.asdict(cfg), "sweep": result.settings,
                       "run_dir": str(run_dir)}, me.provenance(),
                      {"seconds": round(result.seconds, 2), "tokens": result.tokens})
    key = sweep_key(result.settings)
    samples, summary = me.write_sweep(result, meta, key)
    log(f"wrote sweep {key}: {summary} and {samples.name} "
        f"({len(result.rows)} samples, {result.tokens} tokens, {result.seconds:.1f} s)")
    return result, summary


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a printable table: both budgets (switch decisions and changed tokens)
    and accuracy in %, with the 95% interval; on control rows the paired difference
    reference - control with its 95% interval over prompts."""
    if summary.empty:
        return "(no samples)"

    def pct(col):
        return (100 * summary[col]).map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")

    def interval(lo, hi, signed=False):
        f = "{:+.1f}" if signed else "{:.1f}"
        return ["" if pd.isna(a) else f"[{f.format(100 * a)}, {f.format(100 * b)}]"
                for a, b in zip(summary[lo], summary[hi])]

    df = pd.DataFrame({
        "direction": summary["direction"],
        "eps": summary["eps"].map(lambda e: "-" if e == float("inf") else f"{e:g}"),
        "control": summary["control_kind"].fillna(""),
        "n": summary["n"],
        "decisions %": pct("budget"),
        "changed %": pct("budget_changed"),
        "tokens": summary["mean_tokens"].map("{:.1f}".format),
        "accuracy %": (100 * summary["accuracy"]).map("{:.1f}".format),
        "95% CI": interval("ci_lo", "ci_hi"),
        "ref - control": summary["diff"].map(lambda v: "" if pd.isna(v) else f"{100 * v:+.1f}"),
        "paired 95% CI": interval("diff_lo", "diff_hi", signed=True),
    })
    return df.to_string(index=False)
