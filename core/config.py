"""Job configs: one dataclass per job, with defaults and a help string per field.

The CLI builds its options from these fields (`add_arguments` / `from_args`), the app and
Python callers build them directly, and a run manifest stores `asdict(config)`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field


def opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class PrecomputeConfig:
    base: str = opt("", "base model: local folder or Hugging Face hub id", required=True)
    tuned: str = opt("", "tuned (RL or SFT) model: local folder or hub id", required=True)
    prompts: str = opt("", "prompt set: .jsonl or .parquet with id, prompt, answer (or give "
                           "--traces)")
    traces: str = opt("", "score these rollouts instead of sampling: .jsonl or .parquet rows "
                          "with prompt (text) or messages (chat list), response (text) or "
                          "response_ids, optional id/prompt_id, answer, verifier, correct, "
                          "sampled_from")
    field: str = opt("", "with --traces: map a file's own fields onto the rollout fields, "
                         "repeatable: --field prompt=input --field response=output --field "
                         "correct=score>0 (targets: prompt, messages, prompt_ids, response, "
                         "response_ids, id, answer, correct, verifier, sampled_from); not "
                         "needed for TRL, verl, OpenRLHF or token-id files, which are "
                         "recognised by their fields", repeat=True)
    name: str = opt("", "run name (folder under the cache); default: derived from the inputs")
    cache: str = opt("", "folder that holds run folders (default: $SHIFTLENS_CACHE, else "
                         "cache/ in the repository)")
    n: int = opt(4, "samples per prompt (per sampling model)")
    max_prompts: int = opt(0, "use only the first N prompts (0 = all)")
    sample_from: str = opt("tuned", "which model samples the traces",
                           choices=["tuned", "base", "both"])
    temperature: float = opt(1.0, "sampling temperature")
    top_p: float = opt(1.0, "sampling nucleus (1 = full distribution)")
    max_new_tokens: int = opt(0, "cap on response length in tokens (0 = the tuned "
                                 "checkpoint's generation_config.json max_new_tokens, else "
                                 "its max_length, else 4096: reasoning-trace length)")
    seed: int = opt(0, "random seed (sampling)")
    memory_budget: int = opt(0, "bytes the scoring's logits and metric math may use per chunk "
                                "(0 = a quarter of free memory: 256 MiB..1 GiB on CPU, up to "
                                "4 GiB on CUDA); peak memory beyond the weights follows it, "
                                "not trace length or batch size")
    batch_size: int = opt(32, "traces per forward pass (sampling and scoring)")
    top_k: int = opt(10, "top-k tokens stored per position and model")
    js_top_p: float = opt(0.7, "nucleus for the js_top_p column (the paper's truncated JS)")
    shard_size: int = opt(64, "prompts per resumable shard")
    chat_template: bool = opt(True, "wrap prompts in the tokenizer's chat template if it has one")
    sampler: str = opt("auto", "trace sampler: vllm (when installed, on CUDA), transformers "
                                "generate, or auto (vllm if available, else transformers); "
                                "both give the same schema", choices=["auto", "transformers",
                                                                      "vllm"])
    math_dtype: str = opt("auto", "dtype of the metric math: float32 or float64 (both exact to "
                                  "the stored float32 columns), auto = float64 on CPU, float32 "
                                  "on CUDA", choices=["auto", "float32", "float64"])
    scoring: str = opt("joint", "joint: both models resident, exact metrics; sequential: one "
                                "model at a time, JS from each position's kept top-K mass with "
                                "its error bound recorded in the manifest (pairs that do not fit "
                                "together)", choices=["joint", "sequential"])
    sequential_k: int = opt(64, "sequential scoring: base log-probs kept per position")
    traces_from: str = opt("", "checkpoint series: the series' final run (an existing run); "
                               "with --series-sampling reuse its traces are re-scored under "
                               "this tuned model instead of sampling")
    series_sampling: str = opt("reuse", "checkpoint series (with --traces-from): reuse = "
                                        "re-score the final run's traces, so every checkpoint "
                                        "is measured at the same positions (what makes them "
                                        "comparable, and the evolution's overlap with the "
                                        "final defined); own = sample this checkpoint's own "
                                        "traces from --prompts (its own accuracy and "
                                        "distribution; positions then differ from the final's)",
                               choices=["reuse", "own"])
    truncate_to_context: bool = opt(False, "rollouts (--traces) longer than either model's "
                                           "context (max_position_embeddings) are cut there "
                                           "and marked as cut in the run, instead of refused")
    kind: str = opt("", "label for the tuned model: rl, sft, series-step, ... (free text)")
    series_step: int = opt(-1, "training step of the tuned checkpoint in a series (-1 = none)")
    device: str = opt("auto", "auto (CUDA in bf16 if present, else CPU fp32), cpu or cuda")
    allow_pickle: bool = opt(False, "allow pickle (.bin/.pt) weights: runs code from the file")
    trust_remote_code: bool = opt(False, "allow model code shipped with a checkpoint")
    force: bool = opt(False, "recompute even if a complete run with this name exists")
    engine: str = opt("local", "where shards run: local (this process) or ray (a Ray Data "
                               "actor pool; local Ray, or the cluster named by RAY_ADDRESS)",
                      choices=["local", "ray"])
    workers: int = opt(2, "ray engine: actors in the pool, each holding the pair")
    parts_uri: str = opt("", "ray engine: where workers write part files: a folder every "
                             "worker can reach or a pyarrow filesystem URI such as "
                             "s3://bucket/prefix (default: the run's local staging folder)")


# What a run is computed from and called (set per run by add-pair and the app) versus its
# settings: every other PrecomputeConfig field. The one settings source that `precompute`,
# `add-pair` and the app's "Add a pair" page all offer.
RUN_INPUTS = ("base", "tuned", "prompts", "traces", "field", "name", "cache", "traces_from",
              "series_step")
RUN_SETTINGS = tuple(f.name for f in dataclasses.fields(PrecomputeConfig)
                     if f.name not in RUN_INPUTS)


def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One --option per dataclass field (except `skip`); booleans become --flag / --no-flag."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_ = meta.pop("help", "")
        required = meta.pop("required", False)
        if meta.pop("repeat", False):  # given once per value; from_args joins them by lines
            parser.add_argument(flag, action="append", default=None, help=help_, **meta)
            continue
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_)
            continue
        name = str(f.type).removesuffix(" | None")  # optional: None = "the default rule"
        typ = {"int": int, "float": float, "str": str}.get(name, None) or f.type
        parser.add_argument(flag, type=typ, default=None if required else f.default,
                            required=required, help=f"{help_} (default: {f.default})"
                            if not required else help_, **meta)


def from_args(cls, args: argparse.Namespace):
    def value(f):
        v = getattr(args, f.name)
        return "\n".join(v or []) if f.metadata.get("repeat") else v
    return cls(**{f.name: value(f) for f in dataclasses.fields(cls)})
