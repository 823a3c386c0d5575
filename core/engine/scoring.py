"""Teacher-forced scoring: every per-token metric of a response under both models.

Memory is bounded by vocabulary x block, never by batch x length x vocabulary: per batch,
each model's body runs to hidden states (in segments, core.engine.heads.ResponseLogits), only
the response rows are kept, the output heads are applied to blocks of
`heads.head_block_rows` rows (large enough for the head's matrix product to run at full
speed) and the registered metrics (core/metrics/registry.py) and both models' top-k are computed on
chunks of `heads.chunk_rows(vocab, budget)` rows of a block (small enough for the math to
stay in cache). The budget (`ScoreSettings.memory_budget`, bytes; 0 = a quarter of free
memory, 256 MiB..1 GiB on CPU) is what one block of logits and one chunk's metric math may
use together with the batch's hidden rows and a reserve (heads.RESERVE_SHARE); batches are
also capped so their KV cache fits in it.

GPU path (untested here: no CUDA on the development machine; tests/test_gpu_scoring.py runs
on a GPU and skips elsewhere): models run in bf16 (core.engine.pair.pick_device);
`batch_size=0` sizes batches from free GPU memory (`auto_batch_size`); the two models may sit
on two devices (core.engine.pair.place_pair), the tuned logits then move to the base logits'
device for the metric math, which runs in float32 on CUDA and float64 on CPU unless
`ScoreSettings.math_dtype` (--math-dtype) names one (float32 math uses core/metrics/exact.py's
formulas, exact to the stored float32 columns). Float32 math runs as one fused kernel per
chunk where one is available (core/metrics/fused.py: numba on CPU, Triton on CUDA), else
through the reference Context.

Output is columnar (dict of numpy arrays) in the order of the input traces, ready for
core.store.storage. Shapes: for T response tokens in all, every column has length T; top-k
columns are (T, k).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from core.engine import heads
from core.engine.batching import Columns, padded_batches, row_offsets, token_ids
from core.metrics import Context, compute_metrics
from core.metrics.fused import fused_chunk, metric_path
from core.metrics.kernels import Scratch
from core.metrics.registry import TRUNCATED_JS


@dataclass
class ScoreSettings:
    batch_size: int = 16       # traces per forward pass; 0 = auto from free GPU memory
    top_k: int = 10            # top-k lists stored per position and model
    js_top_p: float = 0.7      # nucleus for the `js_top_p` column
    memory_budget: int = 0     # bytes for one chunk's logits + metric math; 0 = auto
    segment_tokens: int = heads.DEFAULT_SEGMENT  # body forward in segments of this many tokens
    chunk_rows: int = 0        # rows per metric chunk; 0 = from the vocabulary and the budget
    math_dtype: str = "auto"   # float32 | float64 | auto (float64 on CPU, float32 elsewhere)


def auto_batch_size(free_bytes: int, max_len: int, vocab: int, hidden: int, *,
                    kv_per_token: int = 0, budget: int = 2 * 1024**3, safety: float = 0.5,
                    cap: int = 256) -> int:
    """Traces per batch that fit in `free_bytes` of accelerator memory.

    Logits never exist beyond one chunk (`budget` bytes, reserved first), so per token of a
    batch what counts is the KV cache (`kv_per_token`, core.engine.heads.kv_bytes_per_token)
    plus transient activations of the layer being run and the kept hidden row, taken as
    40 * hidden * 2 bytes (bf16):

        batch = floor(safety * (free - budget) / (max_len * (kv_per_token + 80 * hidden)))

    clamped to [1, cap]; `vocab` no longer enters beyond the reserved chunk.
    """
    per_token = kv_per_token + 80 * hidden
    usable = max(0.0, safety * (free_bytes - budget))
    return int(max(1, min(cap, usable // max(1, max_len * per_token))))


def _resolve_batch_size(settings: "ScoreSettings", base, lengths: list[int]) -> int:
    if settings.batch_size > 0:
        return settings.batch_size
    dev = next(base.parameters()).device
    if dev.type != "cuda" or not lengths:  # CPU: the old default
        return 16
    # UNTESTED here (no CUDA on the development machine).
    free, _ = torch.cuda.mem_get_info(dev)
    cfg = getattr(base, "config", None)
    vocab = int(getattr(cfg, "vocab_size", 0) or 0) or 152_000
    hidden = int(getattr(cfg, "hidden_size", 0) or 0) or 4096
    return auto_batch_size(free, max(lengths), vocab, hidden,
                           kv_per_token=heads.kv_bytes_per_token(base),
                           budget=heads.resolve_budget(settings.memory_budget, dev))


def plan(settings: "ScoreSettings", model, vocab: int, models: int = 2,
         kept: int = 0) -> tuple[int, int, int, int | None]:
    """(memory budget in bytes, rows per metric chunk, rows per head block, max padded
    tokens per batch) for scoring with `model` (the one whose device holds the metric math)
    and `models` heads applied block by block, `kept` bytes being held besides (a batch's
    hidden rows)."""
    dev = next(model.parameters()).device
    budget = heads.resolve_budget(settings.memory_budget, dev)
    dtype = heads.math_dtype(dev, settings.math_dtype)
    size = heads.itemsize(dtype)
    if metric_path(dev, dtype) != "torch" and not settings.chunk_rows:
        # the fused kernels expand no (rows, vocab) tensor: one call per head block (86
        # calls of 6 rows for 512 rows before), with one row's worth of math kept in reserve
        block = heads.head_block_rows(vocab, budget, 1, size, models, kept)
        rows = block
    else:
        rows = settings.chunk_rows or heads.chunk_rows(vocab, budget, size,
                                                       cpu=dev.type == "cpu")
        block = heads.head_block_rows(vocab, budget, rows, size, models, kept)
    kv = heads.kv_bytes_per_token(model)
    max_tokens = max(1, budget // kv) if kv else None
    return budget, rows, block, max_tokens


def batch_blocks(settings: "ScoreSettings", model, sources: list[heads.ResponseLogits],
                 budget: int) -> tuple[int, int]:
    """(rows per metric chunk, rows per head block) for one batch once its ResponseLogits
    `sources` (one per model scored together) are built: plan() with the bytes they keep
    (hidden rows, which grow with the trace) counted against `budget`, the one plan()
    resolved for the whole call (a default budget is a share of free memory: resolved
    again per batch, blocks could follow a budget other than the one the run records)."""
    _, step, block, _ = plan(replace(settings, memory_budget=budget), model,
                             vocab_size(model), models=len(sources),
                             kept=sum(s.kept_bytes for s in sources))
    return step, block


def vocab_size(model) -> int:
    """Output vocabulary of a model (its head's rows; config.vocab_size as a fallback)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if isinstance(head, torch.nn.Linear):
        return int(head.out_features)
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "vocab_size", 0) or 0)


def score_traces(base, tuned, traces: list[tuple[list[int], list[int]]], pad_id: int,
                 settings: ScoreSettings = ScoreSettings(), progress=None) -> dict:
    """Score `traces` = [(prompt_ids, response_ids), ...] under both models.

    Returns {"offsets": (n_traces+1,) int64 row offsets per trace, "token_id": (T,),
    each metric name: (T,), "base_topk_ids"/"tuned_topk_ids": (T, k) int, "..._probs": (T, k),
    "tuned_top1_rank_base": (T,), "tuned_top1_prob_base": (T,), "memory_budget": the budget
    in bytes the chunks were sized for (settings.memory_budget, resolved on the device)}.
    """
    lengths = [len(p) + len(r) for p, r in traces]
    offsets = row_offsets(traces)
    cols = Columns(int(offsets[-1]))
    put = cols.put

    size = _resolve_batch_size(settings, base, lengths)
    budget, _, _, max_tokens = plan(settings, base, vocab_size(base))
    scratch = Scratch()  # work buffers reused by every chunk
    for ids, attn, spans, tok, rows in padded_batches(traces, pad_id, size, offsets,
                                                      max_tokens):
        rb = heads.ResponseLogits(base, ids, attn, spans, settings.segment_tokens)
        rt = heads.ResponseLogits(tuned, ids, attn, spans, settings.segment_tokens)
        step, block = batch_blocks(settings, base, [rb, rt], budget)
        dev = rb.device  # two-GPU placement: metric math on the base model's device
        mdtype = heads.math_dtype(dev, settings.math_dtype)
        path = metric_path(dev, mdtype)
        tok = tok.to(dev)
        for sl, (cb, ct) in heads.chunked([rb, rt], step, block, dev):
            r = rows[sl]
            if path != "torch":  # one fused kernel call gives every column
                for name, v in fused_chunk(cb, ct, tok[sl], settings.js_top_p, settings.top_k,
                                           TRUNCATED_JS, path).items():
                    put(name, r, v)
                continue
            ctx = Context(cb, ct, tok[sl], settings.js_top_p, mdtype, settings.top_k, scratch)
            for name, v in compute_metrics(cb, ct, tok[sl], ctx=ctx).items():
                put(name, r, v)
            b_ids, b_probs = ctx.topk("base", settings.top_k)
            t_ids, t_probs = ctx.topk("tuned", settings.top_k)
            put("base_topk_ids", r, b_ids)
            put("base_topk_probs", r, b_probs)
            put("tuned_topk_ids", r, t_ids)
            put("tuned_topk_probs", r, t_probs)
            put("tuned_top1_rank_base", r, ctx.rank("base", t_ids[:, 0]))
            put("tuned_top1_prob_base", r, ctx.p.gather(-1, t_ids[:, :1]).squeeze(-1))
            del cb, ct, ctx
        del rb, rt
        if progress is not None:
            progress(len(tok))
    cols["token_id"] = token_ids(traces)
    cols["offsets"] = offsets
    return {**dict(cols), "memory_budget": budget}
