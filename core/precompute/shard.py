"""One shard of a precompute: sample (or reuse) traces for a slice of the prompts, verify
them, score every token under both models, and return the shard's three tables.

Executors (core.precompute.local, core.precompute.ray) call `run_shard` and hand its tables
to `write_part`; the driver (core.precompute.driver) assembles the parts. Per-shard seeds
(`derive_seed(seed, shard, source)`) make a resumed or distributed run identical to an
uninterrupted local one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from core.config import PrecomputeConfig
from core.engine.batching import derive_seed
from core.engine.checkpoint import context_of, read_json
from core.engine.detok import detokenizer_for
from core.engine.pair import Pair, vocab_fingerprint
from core.engine.sampling import encode_prompts, sample
from core.engine.scoring import ScoreSettings, score_traces
from core.engine.sequential import score_traces_sequential
from core.errors import PromptSetError, RunError
from core.inputs import verifiers
from core.inputs.prompts import PromptSet, load_prompts
from core.inputs.rendered import already_templated, template_markers
from core.inputs.rollouts import RolloutSet, load_rollouts
from core.store.manifest import model_record
from core.store.schema import TOKENS_FILE, TOPK_FILE, TRACES_FILE
from core.store.storage import tokens_table, topk_table, traces_table, write_parquet

BOUND_KEY = b"shiftlens.js_bound"  # per-shard sequential-mode bound, in part-file metadata
RETOK_KEY = b"shiftlens.retokenized"  # per-shard rollout re-tokenisation counts
BUDGET_KEY = b"shiftlens.memory_budget"  # the memory budget (bytes) the shard was scored under
TABLES = (TOKENS_FILE, TOPK_FILE, TRACES_FILE)


def sources(cfg: PrecomputeConfig) -> list[str]:
    """The models that sample traces, in trace-id order."""
    return ["tuned", "base"] if cfg.sample_from == "both" else [cfg.sample_from]


def load_inputs(cfg: PrecomputeConfig) -> PromptSet | RolloutSet:
    """The job's prompt set (to sample from) or rollout file (to score as given)."""
    if cfg.traces and (cfg.prompts or (cfg.traces_from and cfg.series_sampling != "own")):
        raise RunError("--traces scores given rollouts: give it without --prompts and "
                       "--traces-from (or with --series-sampling own, where --traces-from "
                       "only names the series' final run: a training run's steps)")
    if cfg.traces:
        return load_rollouts(cfg.traces, limit=cfg.max_prompts or None, fields=cfg.field)
    if not cfg.prompts:
        raise RunError("give --prompts (a prompt set to sample from) or --traces (rollouts "
                       "to score)")
    return load_prompts(cfg.prompts, limit=cfg.max_prompts or None)


def shard_indices(cfg: PrecomputeConfig, ps: PromptSet) -> list[list[int]]:
    """Prompt indices of each shard (shard k is what `derive_seed(seed, k, source)` seeds)."""
    return [list(range(s, min(s + cfg.shard_size, len(ps.rows))))
            for s in range(0, len(ps.rows), cfg.shard_size)]


def part_name(table_file: str, k: int) -> str:
    return f"{Path(table_file).stem}-{k:05d}.parquet"


def done_name(k: int) -> str:
    return f"shard-{k:05d}.done"


def write_part(k: int, tables: tuple[pa.Table, ...], root: str | Path,
               fs: pafs.FileSystem | None = None) -> None:
    """Shard k's part files and its `.done` marker under `root` (local, or in `fs`); the
    marker comes last, so a shard is either done or redone."""
    for fname, table in zip(TABLES, tables):
        write_parquet(table, f"{root}/{part_name(fname, k)}", filesystem=fs)
    if fs is None:
        Path(root, done_name(k)).write_text("ok")
    else:
        with fs.open_output_stream(f"{root}/{done_name(k)}") as f:
            f.write(b"ok")


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


def run_shard(cfg: PrecomputeConfig, pair: Pair, ps: PromptSet | RolloutSet, idx: list[int],
              shard: int, reused: dict | None,
              step: Callable[[float, str], None] | None = None) -> tuple[pa.Table, ...]:
    """(tokens, topk, traces) tables of shard `shard` = prompts `idx` of `ps` (or rows `idx`
    of a rollout file, scored as given). `reused` holds another run's traces by prompt id
    (--traces-from) instead of sampling. `step(fraction, what)` is told as the shard moves
    from sampling (one part per sampling model) to scoring (the last part)."""
    step = step or (lambda frac, what: None)
    if isinstance(ps, RolloutSet):
        step(0.0, "scoring the given rollouts")
        return rollout_shard(cfg, pair, ps, idx)
    tok = pair.tokenizer
    rows: list[dict] = []
    seqs: list[tuple[list[int], list[int]]] = []
    prompt_ids = encode_prompts(tok, [ps.rows[i].prompt for i in idx], cfg.chat_template)
    n_src = len(sources(cfg))
    for s_i, source in enumerate(sources(cfg)):
        if reused is not None:
            drawn = []
            for k, i in enumerate(idx):
                for t, resp in reused.get(ps.rows[i].id, []):
                    drawn.append((k, t["sample_index"], resp, t["finished"], t["seed"],
                                  t["sampled_from"], t["trace_id"]))
        else:
            step(s_i / (n_src + 1), f"sampling from {source}")
            seed = derive_seed(cfg.seed, shard, source)
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
    step(n_src / (n_src + 1) if reused is None else 0.0, "scoring under both models")
    return score_rows(cfg, pair, rows, seqs)


def score_rows(cfg: PrecomputeConfig, pair: Pair, rows: list[dict],
               seqs: list[tuple[list[int], list[int]]], meta: dict | None = None):
    """Score traces (`seqs[i]` = (prompt ids, response ids) of trace row `rows[i]`) under
    both models: the (tokens, topk, traces) tables; `meta` goes into the tokens part's
    metadata for the driver's assembly."""
    tok = pair.tokenizer
    meta = dict(meta or {})
    settings = ScoreSettings(batch_size=cfg.batch_size, top_k=cfg.top_k, js_top_p=cfg.js_top_p,
                             memory_budget=cfg.memory_budget,
                             math_dtype=getattr(cfg, "math_dtype", "auto"))
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
    if bound is not None:
        meta[BOUND_KEY] = json.dumps(bound).encode()
    if scores.get("memory_budget") is not None:
        meta[BUDGET_KEY] = json.dumps(int(scores["memory_budget"])).encode()
    if meta:  # carried to the driver's assembly in the part file's metadata
        tokens = tokens.replace_schema_metadata(meta)
    return tokens, topk_table(scores, tids, detok.display), traces_table(rows)


def _chat_ids(tok, messages, where: str) -> list[int]:
    if not getattr(tok, "chat_template", None):
        raise PromptSetError(f"{where}: 'messages' needs a tokenizer with a chat template; "
                             "give the prompt as text instead")
    ids = tok.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                  add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # some versions return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def pair_context(pair: Pair) -> int | None:
    """The shorter of the two models' contexts (max_position_embeddings), None if unknown."""
    found = []
    for loaded in (pair.base, pair.tuned):
        if loaded.model is not None:
            cfg = loaded.model.config.to_dict()
        elif loaded.ref.local is not None:
            cfg = read_json(loaded.ref.local / "config.json")
        else:
            continue
        if (c := context_of(cfg)) is not None:
            found.append(c)
    return min(found, default=None)


def rollout_shard(cfg: PrecomputeConfig, pair: Pair, rs: RolloutSet, idx: list[int]):
    """Rows `idx` of a rollout file scored as given: prompts encoded (chat lists through the
    tokenizer's chat template; text as precompute encodes prompts unless it carries the
    template rendered already or its format says it is rendered (verl), then as given; token
    ids as they are), text responses tokenised once (rows whose decode(encode(text)) differs
    from the text are counted, and those whose token count differs from a length the file
    records), a row longer than the models' context refused, or with `truncate_to_context`
    cut there (its response and length as cut, "finished" false, its trace id in the
    manifest), `correct` kept when given, else verified when the row has an answer."""
    tok = pair.tokenizer
    vocab = len(tok)
    rows, seqs = [], []
    count = dict.fromkeys(("changed", "text_rows", "length_mismatches", "length_rows",
                           "prompts_as_given"), 0)
    cut: list[int] = []
    context = pair_context(pair)
    eos = tok.eos_token_id
    sample_index = rs.sample_index
    extras = rs.mapping.extras if rs.mapping is not None else {}
    markers = template_markers(tok) if cfg.chat_template else None
    for i in idx:
        r = rs.rows[i]
        extra = extras.get(r.where, {})
        prompt_text = r.prompt_text
        if extra.get("prompt_ids") is not None:
            prompt_ids = _in_vocab(list(extra["prompt_ids"]), vocab, r.where, "prompt")
            prompt_text = tok.decode(prompt_ids, skip_special_tokens=False)
        elif r.messages is not None:
            prompt_ids = _chat_ids(tok, r.messages, r.where)
        elif extra.get("template") is False or already_templated(markers, r.prompt,
                                                                 tok.bos_token):
            count["prompts_as_given"] += 1  # rendered already: not templated twice
            prompt_ids = list(tok(r.prompt, add_special_tokens=extra.get("template") is False
                                  and not _starts_with_bos(tok, r.prompt))["input_ids"])
        else:
            prompt_ids = encode_prompts(tok, [r.prompt], cfg.chat_template)[0]
        if r.response_ids is not None:
            resp = _in_vocab(list(r.response_ids), vocab, r.where, "response")
            text = tok.decode(resp, skip_special_tokens=True)
        else:
            resp = list(tok.encode(r.response, add_special_tokens=False))
            text = r.response
            count["text_rows"] += 1
            count["changed"] += tok.decode(resp) != r.response
        if isinstance(extra.get("response_length"), int):
            count["length_rows"] += 1
            count["length_mismatches"] += len(resp) != extra["response_length"]
        if not prompt_ids or not resp:
            raise PromptSetError(f"{r.where}: the prompt and the response must each encode to "
                                 "at least one token")
        if context is not None and len(prompt_ids) + len(resp) > context:
            if not cfg.truncate_to_context or len(prompt_ids) >= context:
                raise PromptSetError(
                    f"{r.where}: the prompt and response are {len(prompt_ids) + len(resp):,} "
                    f"tokens, more than the {context:,} positions the models read "
                    "(max_position_embeddings in config.json); shorten the row, or cut rows "
                    "at the context (--truncate-to-context)")
            resp = resp[:context - len(prompt_ids)]
            text = tok.decode(resp, skip_special_tokens=True)
            cut.append(i)
        answer, ok = (None, r.correct)
        if r.answer is not None:
            answer, verified = verifiers.get(r.verifier)(text, r.answer)
            ok = verified if r.correct is None else r.correct
        rows.append({
            "trace_id": i, "prompt_id": r.prompt_id, "prompt": prompt_text, "response": text,
            "reference": r.answer, "verifier": r.verifier, "extracted_answer": answer,
            "correct": ok, "length": len(resp), "sampled_from": r.sampled_from,
            "sample_index": sample_index[i], "seed": None,
            # given rollouts have no length cap: ending in EOS says finished, else unknown
            # a rollout has no length cap: it finished when it ends in EOS, is unknown
            # otherwise, and did not finish when it was cut at the context here
            "finished": (False if cut and cut[-1] == i
                         else True if eos is not None and resp[-1] == eos else None),
            "difficulty": None})
        seqs.append((prompt_ids, resp))
    meta = {RETOK_KEY: json.dumps({**count, "cut": cut}).encode()}
    return score_rows(cfg, pair, rows, seqs, meta)


def _in_vocab(ids: list[int], vocab: int, where: str, what: str) -> list[int]:
    bad = [t for t in ids if t >= vocab]
    if bad:
        raise PromptSetError(f"{where}: the {what}'s token ids include {bad[0]}, outside the "
                             f"tokenizer's {vocab} ids")
    return ids


def _starts_with_bos(tok, text: str) -> bool:
    return bool(tok.bos_token) and text.startswith(tok.bos_token)
