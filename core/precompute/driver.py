"""The precompute driver: one job from its config to a published run folder, whatever
executes the shards.

    config -> start (options, prompt set, run name) -> reserve the name (its lock, the
    repair of an interrupted publish, the settings clash) -> check the pair -> staging
    folder (kept when resuming) -> executor runs the unfinished shards (core.precompute.local
    in this process, core.precompute.ray on a Ray actor pool; each shard =
    core.precompute.shard.run_shard -> part files + `.done` marker) -> assemble
    tokens/topk/traces.parquet + manifest.json -> publish atomically (core.store.cache)

Shards make a run resumable: re-running the same command skips finished shards, and
per-shard seeds make the result identical to an uninterrupted run, on either executor (a run
started on one resumes on the other: same staging folder, same markers). Changing any
setting restarts the staging folder from scratch. The run's name is reserved (locked and
checked, core.store.cache.Reservation) before any model loads and held through publish, so
two processes never write one run, and no rename or delete can slip a run under the name
that publish would then replace. A full disk is one line (RunError), the staging kept.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
import re
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from core.config import PrecomputeConfig
from core.engine.heads import resolve_budget
from core.engine.pair import default_max_new_tokens, load_pair
from core.engine.sequential import APPROXIMATE_COLUMNS
from core.errors import PromptSetError, RunError, RunsError
from core.inputs.lengths import rollout_lengths
from core.inputs.prompts import PromptSet
from core.inputs.rollouts import RolloutSet
from core.paths import cache_dir
from core.precompute.shard import (
    BOUND_KEY,
    BUDGET_KEY,
    RETOK_KEY,
    TABLES,
    load_inputs,
    pair_context,
    part_name,
    shard_indices,
)
from core.queries.connection import prepare
from core.store.cache import Reservation, open_run
from core.store.manifest import build_manifest, config_hash, reuses
from core.store.samplers import read_card, samplers_of
from core.store.schema import TOKENS_FILE, TRACES_FILE
from core.store.storage import write_run

ENGINES = ("local", "ray")


class Executor(Protocol):
    """Runs shards and leaves their part files in the staging folder's `parts/`."""

    def is_done(self, k: int) -> bool:
        """Whether shard k's parts are complete (its `.done` marker exists)."""

    def run(self, todo: list[int], on_step: Callable[[int, float, str], None] | None = None
            ) -> Iterator[tuple[int, dict]]:
        """Run the shards `todo`; yields (shard, pair_info) as each one finishes. An executor
        that runs shards in this process calls on_step(shard, fraction of it done, what it
        is doing) as a shard moves from sampling to scoring; others need not."""

    def finish(self) -> None:
        """After the last shard: bring every part into local staging (remote parts)."""

    def describe_pair(self) -> dict:
        """pair_info for the manifest when no shard ran in this call (all were done)."""

    def cleanup(self) -> None:
        """After publishing: remove what the executor left elsewhere (remote parts)."""


def default_name(cfg: PrecomputeConfig) -> str:
    def short(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(s.rstrip("/")).name)[:40]
    return f"{short(cfg.tuned)}-vs-{short(cfg.base)}-{short(Path(cfg.traces or cfg.prompts).stem)}"


def start(cfg: PrecomputeConfig, log: Callable[[str], None]):
    """Validate a job's options and inputs: (cfg with its name and token cap, prompt set).
    Nothing about the run's name is checked here: that is the Reservation's job. An empty
    `cfg.cache` is the default cache (core.paths.cache_dir), never the working directory."""
    cfg = dataclasses.replace(cfg, cache=str(cache_dir(cfg.cache)))
    if cfg.engine not in ENGINES:
        raise RunError(f"engine {cfg.engine!r}: use 'local' or 'ray'")
    if cfg.engine == "ray" and cfg.workers < 1:
        raise RunError(f"--workers {cfg.workers}: need at least one worker")
    if cfg.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise RunError("--engine ray needs Ray Data: pip install -r requirements-ray.txt")
    ps = load_inputs(cfg)
    if isinstance(ps, RolloutSet) and ps.mapping is not None:
        log(f"{ps.path.name}: {ps.mapping.summary()}")
    cfg = dataclasses.replace(cfg, name=cfg.name or default_name(cfg))
    if cfg.max_new_tokens <= 0 and not cfg.traces:  # the checkpoint's own cap
        cap, source = default_max_new_tokens(cfg.tuned)
        log(f"max_new_tokens {cap} ({source} of {cfg.tuned})")
        cfg = dataclasses.replace(cfg, max_new_tokens=cap)
    return cfg, ps


def reused_traces(cfg: PrecomputeConfig, cache: Path, ps: PromptSet,
                  base_digest: str | None = None) -> dict:
    """Traces of `cfg.traces_from` grouped by prompt id: {prompt_id: [(trace row, ids)]},
    each row's sampled_from in this run's terms (core.store.samplers.reuse_plan: the source's
    tuned-sampled traces become "reused")."""
    try:
        source = open_run(cache, cfg.traces_from)
    except RunsError as e:
        raise RunError(f"--traces-from {cfg.traces_from!r}: {e}") from None
    relabel, _ = source.reuse_plan(cfg.base, base_digest)
    traces = pa.concat_tables([pq.read_table(f) for f in source.table_files("traces")]
                              ).to_pylist()
    for t in traces:
        t["sampled_from"] = relabel.get(t["sampled_from"], t["sampled_from"])
    toks = pa.concat_tables([pq.read_table(f, columns=["trace_id", "pos", "token_id"])
                             for f in source.table_files("tokens")]).to_pandas()
    ids = {t: g.sort_values("pos")["token_id"].tolist() for t, g in toks.groupby("trace_id")}
    out: dict[str, list] = {}
    for t in traces:
        out.setdefault(t["prompt_id"], []).append((t, ids.get(t["trace_id"], [])))
    known = {r.id for r in ps.rows}
    if not known & set(out):
        raise RunError(f"--traces-from {cfg.traces_from!r} shares no prompt id with {ps.path}")
    return out


def _executor(cfg, ps, shards, reused, parts: Path, log, checked) -> Executor:
    if cfg.engine == "ray":
        from core.precompute.ray import RayExecutor

        return RayExecutor(cfg, shards, reused, parts, log)
    from core.precompute.local import LocalExecutor

    return LocalExecutor(cfg, ps, shards, reused, parts, checked)


def precompute(cfg: PrecomputeConfig, log: Callable[[str], None] = print,
               show_progress: bool = True,
               progress: Callable[[dict], None] | None = None) -> Path:
    """Run the job described by `cfg`; returns the published run folder.

    progress: called with {"stage": "shards" | "assembling" | "done", "shards_done",
    "shards_total", "prompts_done", "prompts_total", "prompts_partial" (prompts done,
    counting the running shard's share), "step" (what the running shard does)} when the
    shard loop starts, as a shard moves from sampling to scoring, after each finished shard
    and at the end (core.jobs.queue writes it to a progress file).
    """
    cfg, ps = start(cfg, log)
    report = _reporter(progress, ps)
    with Reservation(cfg.cache, cfg.name, cfg, RunError) as res:
        for line in res.repaired:
            log(line)
        if res.state == "done":
            log(f"run {cfg.name!r} is already complete with these settings: {res.final}")
            return res.final
        try:
            n_done, p_done = _compute(cfg, ps, res, log, show_progress, report)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise RunError(f"run {cfg.name!r}: disk full ({e.filename or cfg.cache}); the "
                           "finished shards are kept: free space and re-run the same command "
                           "to resume") from e
    final = res.final
    _prepare_queries(final, log)
    report("done", n_done, p_done, n_done)
    log(f"wrote {final}")
    return final


def _reporter(progress: Callable[[dict], None] | None, ps):
    def report(stage: str, shards_done: int, prompts_done: int, shards_total: int,
               partial: float = 0.0, step: str | None = None) -> None:
        if progress is not None:
            progress({"stage": stage, "shards_done": shards_done, "shards_total": shards_total,
                      "prompts_done": prompts_done, "prompts_total": len(ps.rows),
                      "prompts_partial": prompts_done + partial, "step": step})
    return report


def _compute(cfg: PrecomputeConfig, ps, res: Reservation, log, show_progress: bool,
             report) -> tuple[int, int]:
    """Under the reservation: check the pair, run the unfinished shards, assemble, publish.
    Returns (shards done, prompts done)."""
    cache = Path(cfg.cache)
    shards = shard_indices(cfg, ps)
    # Refuse a bad pair (paths, weight formats, vocabularies) before anything is written:
    # tokenizers and fingerprints only; the executor loads the weights.
    checked = load_pair(cfg.base, cfg.tuned, allow_pickle=cfg.allow_pickle,
                        trust_remote_code=cfg.trust_remote_code, device=cfg.device,
                        load_weights=False)
    reused = (reused_traces(cfg, cache, ps, (checked.base.fingerprint or {}).get("digest"))
              if reuses(cfg) else None)
    if isinstance(ps, RolloutSet) and not cfg.truncate_to_context:  # every row, nothing written
        over = rollout_lengths(ps, checked.tokenizer, pair_context(checked), "either model").over
        if over is not None:
            raise PromptSetError(over)
    staging = res.open_staging(config_hash(cfg))
    t0 = time.time()
    ex = _executor(cfg, ps, shards, reused, staging / "parts", log, checked)
    todo = [k for k in range(len(shards)) if not ex.is_done(k)]
    if len(todo) < len(shards):
        log(f"resuming {cfg.name!r}: {len(shards) - len(todo)}/{len(shards)} shards done")
    n_done = len(shards) - len(todo)
    p_done = len(ps.rows) - sum(len(shards[k]) for k in todo)
    report("shards", n_done, p_done, len(shards))
    bar = tqdm(total=sum(len(shards[k]) for k in todo), desc=f"precompute {cfg.name}",
               unit="prompt", disable=not show_progress)
    info = None
    def on_step(k: int, frac: float, what: str) -> None:  # within shard k
        report("shards", n_done, p_done, len(shards), frac * len(shards[k]),
               f"shard {k + 1}/{len(shards)}: {what}")

    for k, shard_info in ex.run(todo, on_step):
        info = shard_info
        bar.update(len(shards[k]))
        n_done, p_done = n_done + 1, p_done + len(shards[k])
        report("shards", n_done, p_done, len(shards))
    bar.close()
    ex.finish()
    report("assembling", n_done, p_done, len(shards))
    assemble(cfg, info or ex.describe_pair(), ps, staging, len(shards), time.time() - t0)
    res.publish(staging)
    ex.cleanup()
    return n_done, p_done


def _prepare_queries(run_dir: Path, log: Callable[[str], None]) -> None:
    """Build a large run's query index in the job, not in the first page that opens it. The
    run is published already: a failure here is logged, and the index is built on first open
    instead."""
    try:
        t = time.time()
        if prepare(run_dir) is not None:
            log(f"query index built in {time.time() - t:.1f} s")
    except Exception as e:  # noqa: BLE001 - the run itself is complete
        log(f"query index not built now ({type(e).__name__}: {e}); it is built on first open")


def assemble(cfg, info: dict, ps: PromptSet, staging: Path, n_shards: int,
             seconds: float) -> None:
    """The run's tables from the part files in `staging/parts`, and its manifest (last: its
    presence marks the staging folder complete)."""
    parts = staging / "parts"
    bounds, retok, budgets = [], [], []
    for k in range(n_shards):
        meta = pq.read_schema(parts / part_name(TOKENS_FILE, k)).metadata or {}
        if BOUND_KEY in meta:
            bounds.append(json.loads(meta[BOUND_KEY]))
        if RETOK_KEY in meta:
            retok.append(json.loads(meta[RETOK_KEY]))
        if BUDGET_KEY in meta:
            budgets.append(json.loads(meta[BUDGET_KEY]))
    tables = {f: pa.concat_tables([pq.read_table(parts / part_name(f, k))
                                   .replace_schema_metadata(None) for k in range(n_shards)])
              for f in TABLES}
    traces = tables[TRACES_FILE].to_pandas()
    acc = traces.groupby("sampled_from")["correct"].mean().round(4).to_dict()
    manifest = build_manifest(
        cfg,
        models=info["models"],
        prompt_set={"path": str(ps.path), "fingerprint": ps.fingerprint, "n_used": len(ps.rows),
                    "kind": "rollouts" if isinstance(ps, RolloutSet) else "prompts"},
        stats={"n_traces": len(traces), "n_tokens": tables[TOKENS_FILE].num_rows,
               "accuracy": acc, "seconds": round(seconds, 1)},
        device=info["device"],
    )
    manifest["tokenizer"] = info["tokenizer"]
    manifest["samplers"] = _samplers(cfg, manifest, acc)
    manifest["tuned_card"] = read_card((info["models"].get("tuned") or {}).get("path"))
    # the budget the shards were scored under (the largest, where an automatic budget came
    # out differently per shard); resolved now only for parts written before it was recorded
    manifest["scoring"] = {"mode": cfg.scoring, "memory_budget_bytes": max(budgets) if budgets
                           else resolve_budget(cfg.memory_budget, torch.device(info["device"]))}
    if isinstance(ps, RolloutSet):
        manifest["rollouts"] = {
            "text_responses": sum(r["text_rows"] for r in retok),
            "retokenization_mismatches": sum(r["changed"] for r in retok),
            "note": "text responses whose decode(encode(text)) differs from the text",
            "responses_with_length": sum(r.get("length_rows", 0) for r in retok),
            "length_mismatches": sum(r.get("length_mismatches", 0) for r in retok),
            "length_note": "responses whose token count differs from the length the file "
                           "records (special tokens dropped in decoding, other tokenisation)",
            "prompts_as_given": sum(r.get("prompts_as_given", 0) for r in retok),
            **(ps.mapping.record() if ps.mapping is not None else {}),
            "cut_to_context": sorted(i for r in retok for i in r.get("cut", []))}
    if cfg.scoring == "sequential":
        n = sum(b["n"] for b in bounds)
        manifest["sequential"] = {
            "k": cfg.sequential_k,
            "js_bound_max": max((b["max"] for b in bounds), default=0.0),
            "js_bound_mean": sum(b["sum"] for b in bounds) / n if n else 0.0,
            "bound": "0 <= js_exact - js <= js_bound at every position "
                     "(core/engine/sequential.py)",
            "approximate_columns": list(APPROXIMATE_COLUMNS),
        }
    write_run(staging, tables, manifest)


def _samplers(cfg, manifest: dict, labels) -> dict:
    """The manifest's `samplers`: who sampled the traces of each label (core.store.samplers)."""
    own = samplers_of({k: v for k, v in manifest.items() if k != "traces_from"})
    if not reuses(cfg):
        return {label: own.get(label, {"run": cfg.name, "role": None, "model": None,
                                       "fingerprint": None}) for label in labels}
    _, records = open_run(cfg.cache, cfg.traces_from).reuse_plan(
        cfg.base, _digest_of(manifest, "base"))
    return {label: records.get(label, own.get(label)) for label in labels}


def _digest_of(manifest: dict, role: str) -> str | None:
    return (((manifest.get("models") or {}).get(role) or {}).get("fingerprint") or {}).get(
        "digest")
