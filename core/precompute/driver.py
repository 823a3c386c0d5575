"""The precompute job: sample traces, verify them, score every token, write a run folder.

    config -> validate inputs (prompt set, pair, run name) -> per shard of prompts:
    sample (tuned | base | both) -> verify -> score under both models -> part files
    -> assemble tokens/topk/traces.parquet + manifest.json -> publish atomically

Shards make a run resumable: each finished shard is a set of part files plus a `.done`
marker in the staging folder; re-running the same command skips finished shards, and
per-shard seeds make the result identical to an uninterrupted run. Changing any setting
restarts the staging folder from scratch. A lock file stops two processes from writing
the same run.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from core import verifiers
from core.config import PrecomputeConfig
from core.engine.detok import detokenizer_for
from core.engine.pair import Pair, load_pair, vocab_fingerprint
from core.engine.sampling import encode_prompts, sample
from core.engine.scoring import ScoreSettings, score_traces
from core.engine.sequential import APPROXIMATE_COLUMNS, score_traces_sequential
from core.errors import RunError
from core.prompts import PromptSet, load_prompts
from core.store.manifest import build_manifest, config_hash, model_record, read_manifest
from core.store.schema import MANIFEST_FILE, TOKENS_FILE, TOPK_FILE, TRACES_FILE
from core.store.storage import (
    publish,
    staging_dir,
    tokens_table,
    topk_table,
    traces_table,
    write_json,
    write_parquet,
)

BOUND_KEY = b"shiftlens.js_bound"  # per-shard sequential-mode bound, in part-file metadata
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def default_name(cfg: PrecomputeConfig) -> str:
    def short(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(s.rstrip("/")).name)[:40]
    return f"{short(cfg.tuned)}-vs-{short(cfg.base)}-{short(Path(cfg.prompts).stem)}"


def _sources(cfg: PrecomputeConfig) -> list[str]:
    return ["tuned", "base"] if cfg.sample_from == "both" else [cfg.sample_from]


def _shard_seed(seed: int, shard: int, source: str) -> int:
    h = hashlib.sha256(f"{seed}:{shard}:{source}".encode()).hexdigest()
    return int(h[:12], 16)


class _Lock:
    """An exclusive, non-blocking flock on `<staging>/.lock` for the life of the job."""

    def __init__(self, path: Path, run: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a+")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise RunError(f"run {run!r} is being computed by another process") from None

    def release(self) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _reused_traces(cfg: PrecomputeConfig, cache: Path, ps: PromptSet) -> dict:
    """Traces of `cfg.traces_from` grouped by prompt id: {prompt_id: [(trace row, ids)]}."""
    src = cache / cfg.traces_from
    if read_manifest(src) is None:
        raise RunError(f"--traces-from {cfg.traces_from!r}: no complete run at {src}")
    traces = pq.read_table(src / TRACES_FILE).to_pylist()
    toks = pq.read_table(src / TOKENS_FILE, columns=["trace_id", "pos", "token_id"]).to_pandas()
    ids = {t: g.sort_values("pos")["token_id"].tolist() for t, g in toks.groupby("trace_id")}
    out: dict[str, list] = {}
    for t in traces:
        out.setdefault(t["prompt_id"], []).append((t, ids.get(t["trace_id"], [])))
    known = {r.id for r in ps.rows}
    if not known & set(out):
        raise RunError(f"--traces-from {cfg.traces_from!r} shares no prompt id with {ps.path}")
    return out


def _shard(cfg: PrecomputeConfig, pair: Pair, ps: PromptSet, idx: list[int], shard: int,
           reused: dict | None) -> tuple[pa.Table, ...]:
    tok = pair.tokenizer
    rows: list[dict] = []
    seqs: list[tuple[list[int], list[int]]] = []
    prompt_ids = encode_prompts(tok, [ps.rows[i].prompt for i in idx], cfg.chat_template)
    n_src = len(_sources(cfg))
    for s_i, source in enumerate(_sources(cfg)):
        if reused is not None:
            drawn = []
            for k, i in enumerate(idx):
                for t, resp in reused.get(ps.rows[i].id, []):
                    drawn.append((k, t["sample_index"], resp, t["finished"], t["seed"],
                                  t["sampled_from"], t["trace_id"]))
        else:
            seed = _shard_seed(cfg.seed, shard, source)
            model = pair.model(source)  # resident, or loaded now in sequential mode
            got = sample(model, tok, prompt_ids, n=cfg.n, temperature=cfg.temperature,
                         top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=seed,
                         batch_size=cfg.batch_size, engine=cfg.sampler)
            del model
            drawn = [(s.prompt_index, s.sample_index, s.response_ids, s.finished, seed, source,
                      (idx[s.prompt_index] * n_src + s_i) * cfg.n + s.sample_index)
                     for s in got]
        for k, j, resp, finished, seed, src_name, tid in drawn:
            i = idx[k]
            row = ps.rows[i]
            text = tok.decode(resp, skip_special_tokens=True)
            answer, ok = verifiers.get(row.verifier)(text, row.answer)
            rows.append({
                "trace_id": tid, "prompt_id": row.id, "prompt": row.prompt, "response": text,
                "reference": row.answer, "verifier": row.verifier, "extracted_answer": answer,
                "correct": ok,
                "length": len(resp), "sampled_from": src_name, "sample_index": j, "seed": seed,
                "finished": finished, "difficulty": row.difficulty})
            seqs.append((prompt_ids[k], list(resp)))
        if reused is not None:
            break  # reused traces carry every source and keep their trace ids
    settings = ScoreSettings(batch_size=cfg.batch_size, top_k=cfg.top_k, js_top_p=cfg.js_top_p)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    bound = None
    if cfg.scoring == "sequential":
        scores = score_traces_sequential(lambda: pair.model("base"), lambda: pair.model("tuned"),
                                         seqs, pad, settings, k=cfg.sequential_k)
        b = scores["js_bound"]
        bound = {"max": float(b.max()) if len(b) else 0.0, "sum": float(b.sum()), "n": len(b)}
    else:
        scores = score_traces(pair.model("base"), pair.model("tuned"), seqs, pad, settings)
    detok = detokenizer_for(tok)
    strings = [s for (p, r) in seqs for s in detok.response(r, p)]
    tids = np.array([r["trace_id"] for r in rows], dtype=np.int64)
    tokens = tokens_table(scores, tids, strings)
    if bound is not None:  # carried to _assemble in the part file's metadata
        tokens = tokens.replace_schema_metadata({BOUND_KEY: json.dumps(bound).encode()})
    return tokens, topk_table(scores, tids, detok.display), traces_table(rows)


def _start(cfg: PrecomputeConfig, log: Callable[[str], None]):
    """Validate a job: (cfg with its name, prompt set, final folder, config hash); the prompt
    set is None when a complete run with these settings already exists (nothing to do)."""
    cache = Path(cfg.cache)
    ps = load_prompts(cfg.prompts, limit=cfg.max_prompts or None)
    cfg = dataclasses.replace(cfg, name=cfg.name or default_name(cfg))
    if not RUN_NAME.match(cfg.name):
        raise RunError(f"run name {cfg.name!r}: use letters, digits, '.', '_' and '-' only")
    final = cache / cfg.name
    want = config_hash(cfg)
    old = read_manifest(final)
    if old is not None and not cfg.force:
        if old.get("config_hash") == want:
            log(f"run {cfg.name!r} is already complete with these settings: {final}")
            return cfg, None, final, want
        raise RunError(f"run {cfg.name!r} exists with other settings; pass --force to "
                       "replace it or --name to write a new run")
    if final.exists() and old is None and not cfg.force:
        raise RunError(f"{final} exists and is not a run folder; remove it or choose --name")
    return cfg, ps, final, want


def _open_staging(staging: Path, want: str) -> None:
    """Keep a staging folder made with the same settings (resume); restart any other."""
    stamp = staging / "config_hash"
    if staging.exists() and (not stamp.is_file() or stamp.read_text() != want):
        shutil.rmtree(staging)  # other settings: restart cleanly
    (staging / "parts").mkdir(parents=True, exist_ok=True)
    stamp.write_text(want)


def shard_indices(cfg: PrecomputeConfig, ps: PromptSet) -> list[list[int]]:
    """Prompt indices of each shard (shard k is what `_shard_seed(seed, k, ...)` seeds)."""
    return [list(range(s, min(s + cfg.shard_size, len(ps.rows))))
            for s in range(0, len(ps.rows), cfg.shard_size)]


def precompute(cfg: PrecomputeConfig, log: Callable[[str], None] = print,
               show_progress: bool = True,
               progress: Callable[[dict], None] | None = None) -> Path:
    """Run the job described by `cfg`; returns the published run folder.

    progress: called with {"stage": "shards" | "assembling" | "done", "shards_done",
    "shards_total", "prompts_done", "prompts_total"} when the shard loop starts, after each
    finished shard and at the end (core.jobs.queue writes it to a progress file).
    """
    def report(stage: str, shards_done: int, prompts_done: int) -> None:
        if progress is not None:
            progress({"stage": stage, "shards_done": shards_done, "shards_total": len(shards),
                      "prompts_done": prompts_done, "prompts_total": len(ps.rows)})
    if cfg.engine == "ray":
        from core.precompute.ray import precompute_ray

        return precompute_ray(cfg, num_workers=cfg.workers, log=log, progress=progress)
    if cfg.engine != "local":
        raise RunError(f"engine {cfg.engine!r}: use 'local' or 'ray'")
    cfg, ps, final, want = _start(cfg, log)
    if ps is None:
        return final
    cache = Path(cfg.cache)
    reused = _reused_traces(cfg, cache, ps) if cfg.traces_from else None
    pair = load_pair(cfg.base, cfg.tuned, allow_pickle=cfg.allow_pickle,
                     trust_remote_code=cfg.trust_remote_code, device=cfg.device,
                     load_weights=cfg.scoring != "sequential")

    staging = staging_dir(cache, cfg.name)
    lock = _Lock(cache / ".staging" / f"{cfg.name}.lock", cfg.name)
    try:
        _open_staging(staging, want)
        t0 = time.time()
        shards = shard_indices(cfg, ps)
        todo = [k for k in range(len(shards))
                if not (staging / "parts" / f"shard-{k:05d}.done").exists()]
        if len(todo) < len(shards):
            log(f"resuming {cfg.name!r}: {len(shards) - len(todo)}/{len(shards)} shards done")
        bar = tqdm(total=sum(len(shards[k]) for k in todo), desc=f"precompute {cfg.name}",
                   unit="prompt", disable=not show_progress)
        n_done = len(shards) - len(todo)
        p_done = len(ps.rows) - sum(len(shards[k]) for k in todo)
        report("shards", n_done, p_done)
        for k in todo:
            tables = _shard(cfg, pair, ps, shards[k], k, reused)
            for fname, table in zip((TOKENS_FILE, TOPK_FILE, TRACES_FILE), tables):
                write_parquet(table, staging / "parts" / f"{Path(fname).stem}-{k:05d}.parquet")
            (staging / "parts" / f"shard-{k:05d}.done").write_text("ok")
            bar.update(len(shards[k]))
            n_done, p_done = n_done + 1, p_done + len(shards[k])
            report("shards", n_done, p_done)
        bar.close()
        report("assembling", n_done, p_done)
        _assemble(cfg, pair_info(pair), ps, staging, len(shards), time.time() - t0)
        publish(staging, final)
        report("done", n_done, p_done)
    finally:
        lock.release()
    log(f"wrote {final}")
    return final


def pair_info(pair: Pair) -> dict:
    """What the manifest records about a loaded pair (JSON-safe: Ray workers send it back)."""
    vf = vocab_fingerprint(pair.tokenizer)
    return {
        "models": {"base": model_record(pair.base, vf), "tuned": model_record(pair.tuned, vf)},
        "device": pair.device(),
        "tokenizer": {"vocab_size": len(pair.tokenizer),
                      "special_ids": sorted(pair.tokenizer.all_special_ids),
                      "chat_template": bool(getattr(pair.tokenizer, "chat_template", None))},
    }


def _assemble(cfg, info: dict, ps: PromptSet, staging: Path, n_shards: int,
              seconds: float) -> None:
    parts = staging / "parts"
    bounds = []
    for k in range(n_shards):
        meta = pq.read_schema(parts / f"tokens-{k:05d}.parquet").metadata or {}
        if BOUND_KEY in meta:
            bounds.append(json.loads(meta[BOUND_KEY]))
    tables = {f: pa.concat_tables([pq.read_table(parts / f"{Path(f).stem}-{k:05d}.parquet")
                                   .replace_schema_metadata(None) for k in range(n_shards)])
              for f in (TOKENS_FILE, TOPK_FILE, TRACES_FILE)}
    traces = tables[TRACES_FILE].to_pandas()
    acc = traces.groupby("sampled_from")["correct"].mean().round(4).to_dict()
    manifest = build_manifest(
        cfg,
        models=info["models"],
        prompt_set={"path": str(ps.path), "fingerprint": ps.fingerprint, "n_used": len(ps.rows)},
        stats={"n_traces": len(traces), "n_tokens": tables[TOKENS_FILE].num_rows,
               "accuracy": acc, "seconds": round(seconds, 1)},
        device=info["device"],
    )
    manifest["tokenizer"] = info["tokenizer"]
    if cfg.scoring == "sequential":
        n = sum(b["n"] for b in bounds)
        manifest["sequential"] = {
            "k": cfg.sequential_k,
            "js_bound_max": max((b["max"] for b in bounds), default=0.0),
            "js_bound_mean": sum(b["sum"] for b in bounds) / n if n else 0.0,
            "bound": "0 <= js_exact - js <= js_bound at every position (core/sequential.py)",
            "approximate_columns": list(APPROXIMATE_COLUMNS),
        }
    for f, table in tables.items():
        write_parquet(table, staging / f, metadata=manifest)
    write_json(manifest, staging / MANIFEST_FILE)  # last: its presence marks completeness
