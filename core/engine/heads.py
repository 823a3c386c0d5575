"""Response logits without (batch, length, vocabulary) tensors: the model body runs to hidden
states (in segments of `segment_tokens` positions, with a KV cache between segments), only
the rows that predict response tokens are kept (N, hidden), and the output head is applied
to row chunks whose size follows from the vocabulary and a memory budget.

Peak memory beyond the weights is then: the KV cache of one batch (grows with length, but
is hidden-sized per layer, not vocabulary-sized), one segment's activations, the kept
hidden rows (N x hidden), one block of logits per model (`head_block_rows` rows, the head is
applied a block at a time) and one chunk of `rows` x vocabulary for the metric math
(`chunk_rows(vocab, budget)` rows); block and chunk together stay within the budget,
independent of trace length and batch size.

A model whose logits are not `head(body(x))` (custom post-processing this module does not
know) is detected once, on a few positions, and scored with its full forward instead (so
results stay exact; only its memory is then unbounded). HF causal LMs expose the split as
`model.<base_model_prefix>` (body) and `model.get_output_embeddings()` (head);
`config.final_logit_softcapping` and `config.logit_scale` are applied when present.
"""

from __future__ import annotations

import os
import weakref

import torch

# (rows, vocab) tensors of the math dtype the metric math may hold at once, per entry of a
# chunk: an upper estimate counted from the code (both log-softmaxes and exps, the JS
# mixture, the nucleus sorts and masks, products), not a measurement; the peak test in
# tests/test_memory_bounded.py holds the whole scoring to budget + a fixed allowance.
TENSORS_PER_ENTRY = 16
DEFAULT_SEGMENT = 2048
_SPLIT_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_TRIM = []


def trim_heap() -> None:
    """Hand the process's freed heap memory back to the OS (glibc's malloc_trim; nothing
    elsewhere). The body's activations, once freed, otherwise stay in the heap and count in
    the peak beside the head blocks: at 8,192 tokens of a Qwen2-shaped pair with 704-row
    blocks, benchmarks/realistic_shapes.py printed 1.00 GiB beyond the weights without it,
    0.82 with it. Costs milliseconds."""
    if not _TRIM:
        try:
            import ctypes

            _TRIM.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _TRIM.append(None)
    if _TRIM[0] is not None:
        _TRIM[0](0)


def free_ram() -> int:
    """Bytes of RAM available now: MemAvailable of /proc/meminfo (Linux), else the free
    physical pages sysconf reports."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def available_memory(device: torch.device) -> int:
    """Free bytes now: CUDA's free memory on `device`, else free_ram()."""
    if device.type == "cuda":  # UNTESTED here (no GPU on the development machine)
        return int(torch.cuda.mem_get_info(device)[0])
    return free_ram()


def default_budget(device: torch.device) -> int:
    """The memory budget for logits and metric math when none is given: a quarter of the
    free memory, between 256 MiB and 1 GiB (4 GiB on CUDA). Measured on CPU with a
    Qwen2-shaped 2-layer pair: 0.74-0.82 GiB peak beyond the weights from 512 to 8,192
    tokens (benchmarks/realistic_shapes.py)."""
    cap = (4 if device.type == "cuda" else 1) * 1024**3
    return int(min(cap, max(256 * 1024**2, available_memory(device) // 4)))


# On CPU the math runs fastest on tensors that stay in cache: with vocabulary 151,936 in
# float64, 2.8 ms per row at 3 or 6 rows per chunk against 3.4 at 12 (and 17 ms at 55
# before core.metrics reused its buffers; benchmarks/metric_math.py, 2-core machine), so CPU
# chunks also stop at about this many entries per (rows, vocab) tensor.
CPU_CHUNK_ENTRIES = 1 << 20

# The output head, though, is a (rows x hidden) @ (hidden x vocab) product that rereads the
# whole head matrix for every call, and runs faster per row the more rows it gets (vocabulary
# 151,936, hidden 1,536, CPU, one model, ms per row: 23 at 6 rows, 4.0 at 128, 3.5 at 256;
# benchmarks/head_blocks.py, per row against one product of 2,112 rows: 1.08-1.25x at 422,
# 0.98-1.10x at 528, 1.04-1.14x at 704 on a loaded machine). So the head runs on blocks of
# up to HEAD_BLOCK_ROWS rows, as many as the budget leaves after one chunk's math, the rows
# kept from the body and a reserve, and the math walks each block chunk by chunk. At 704
# rows two models' float32 logits of vocabulary 151,936 are 0.80 GiB, which with the
# reserve fits the default 1 GiB budget.
HEAD_BLOCK_ROWS = 704
# The share of the budget left to what the plan does not count (torch's and numba's working
# memory, the allocator's slack; the body's freed activations are handed back first,
# trim_heap): at the 1 GiB default, peak RSS stayed 0.8-0.9 GiB beyond the weights at 512
# to 8,192 tokens (benchmarks/realistic_shapes.py).
RESERVE_SHARE = 0.15


def chunk_rows(vocab: int, budget: int, itemsize: int = 8, cpu: bool = True) -> int:
    """Rows of `vocab` logits that the metric math may expand at once within `budget` bytes
    (`itemsize`: bytes of the math dtype, 8 for float64 on CPU, 4 for float32 on CUDA); on
    CPU also at most CPU_CHUNK_ENTRIES entries per tensor (faster, and never more memory)."""
    rows = max(1, int(budget // (TENSORS_PER_ENTRY * itemsize * max(1, vocab))))
    return min(rows, max(1, CPU_CHUNK_ENTRIES // max(1, vocab))) if cpu else rows


def head_block_rows(vocab: int, budget: int, rows: int, itemsize: int = 8,
                    models: int = 2, kept: int = 0) -> int:
    """Rows of float32 logits each of `models` heads computes at once: what `budget` leaves
    after one chunk of `rows` rows of metric math, `kept` bytes (the hidden rows the body
    left, which grow with the trace) and the reserve, at most HEAD_BLOCK_ROWS and at least
    `rows`. Not rounded to a multiple of `rows` (a block's last chunk may be shorter): 512
    rows in chunks of 6 made a block of 510 and one of 2, and each head call rereads the
    whole head matrix (the 2-row call cost 0.12 s, a twentieth of the 510-row one)."""
    math_bytes = rows * max(1, vocab) * TENSORS_PER_ENTRY * itemsize
    free = budget - int(budget * RESERVE_SHARE) - math_bytes - max(0, kept)
    fit = max(0, free) // (models * max(1, vocab) * 4)
    return max(rows, min(fit, HEAD_BLOCK_ROWS))


def kv_bytes_per_token(model) -> int:
    """KV-cache bytes one position costs across all layers (0 when the config is unknown)."""
    cfg = getattr(model, "config", None)
    try:
        layers = int(cfg.num_hidden_layers)
        heads = int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
        dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    except (AttributeError, TypeError, ZeroDivisionError):
        return 0
    item = next(model.parameters()).element_size()
    return 2 * layers * heads * dim * item


def _parts(model):
    """(body, head, softcap, scale) when the model has the usual split, else None."""
    get = getattr(model, "get_output_embeddings", None)
    prefix = getattr(model, "base_model_prefix", None)
    head = get() if callable(get) else None
    body = getattr(model, prefix, None) if prefix else None
    if not isinstance(head, torch.nn.Linear) or not isinstance(body, torch.nn.Module) \
            or body is model:
        return None
    cfg = model.config
    return (body, head, getattr(cfg, "final_logit_softcapping", None),
            getattr(cfg, "logit_scale", None))


def _head(parts, h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The model's logits from hidden rows h; written into `out` ((rows, V) float32, reused
    from block to block: fresh blocks of this size cost page faults) when the head is
    float32 and on out's device."""
    _, head, softcap, scale = parts
    w = head.weight
    if out is not None and w.dtype == out.dtype == h.dtype and w.device == out.device:
        logits = torch.matmul(h, w.t(), out=out)
        if head.bias is not None:
            logits.add_(head.bias)
    else:
        logits = head(h)
    if scale:
        logits = logits * scale
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


@torch.no_grad()
def _split_ok(model, parts, ids: torch.Tensor) -> bool:
    """Whether head(body(x)) reproduces the model's logits on the first few positions."""
    if model in _SPLIT_OK:
        return _SPLIT_OK[model]
    x = ids[:1, :8].to(next(model.parameters()).device)
    full = model(input_ids=x, use_cache=False).logits.float()
    mine = _head(parts, parts[0](input_ids=x, use_cache=False).last_hidden_state).float()
    tol = 1e-4 if next(model.parameters()).dtype == torch.float32 else 2e-2
    ok = full.shape == mine.shape and torch.allclose(full, mine, rtol=tol, atol=tol)
    _SPLIT_OK[model] = ok
    return ok


class ResponseLogits:
    """The logits that predict each response token of a batch, handed out by row chunks.

    ids, attn: (B, W) right-padded prompt+response and mask; spans: (prompt length,
    response length) per row. `len(self)` = N = sum of response lengths; `chunk(sl)` ->
    (rows, V) float32 logits of rows `sl` (row order: batch row, then position), on the
    model's device.
    """

    @torch.no_grad()
    def __init__(self, model, ids: torch.Tensor, attn: torch.Tensor,
                 spans: list[tuple[int, int]], segment: int = DEFAULT_SEGMENT):
        dev = next(model.parameters()).device
        self.device = dev
        ids, attn = ids.to(dev), attn.to(dev)
        self.n = sum(r for _, r in spans)
        parts = _parts(model)
        self.parts = parts if parts is not None and _split_ok(model, parts, ids) else None
        if self.parts is None:  # full forward (exact, memory not bounded)
            logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
            self.full = torch.cat([logits[b, p - 1:p + r - 1] for b, (p, r) in enumerate(spans)])
            return
        self.hidden = self._hidden_rows(self.parts[0], ids, attn, spans, max(1, segment))
        if dev.type == "cpu":
            trim_heap()

    @staticmethod
    def _hidden_rows(body, ids, attn, spans, segment) -> torch.Tensor:
        """(N, H): the body's last hidden state at positions p-1 .. p+r-2 of each row."""
        starts = [0]
        for _, r in spans:
            starts.append(starts[-1] + r)
        width = ids.shape[1]
        out = None
        cache = None
        for s in range(0, width, segment):
            e = min(width, s + segment)
            res = body(input_ids=ids[:, s:e], attention_mask=attn[:, :e],
                       past_key_values=cache, use_cache=e < width)
            cache = res.past_key_values if e < width else None
            h = res.last_hidden_state
            if out is None:
                out = h.new_empty((starts[-1], h.shape[-1]))
            for b, (p, r) in enumerate(spans):
                lo, hi = max(s, p - 1), min(e, p + r - 1)
                if lo < hi:
                    o = starts[b] + lo - (p - 1)
                    out[o:o + hi - lo] = h[b, lo - s:hi - s]
            del res, h
        return out if out is not None else ids.new_empty((0, 0), dtype=torch.float32)

    def __len__(self) -> int:
        return self.n

    @property
    def kept_bytes(self) -> int:
        """Bytes this object holds between head blocks (its hidden rows, or the full logits
        of a model scored with its full forward)."""
        t = self.hidden if self.parts is not None else self.full
        return t.numel() * t.element_size()

    @torch.no_grad()
    def chunk(self, sl: slice, out: torch.Tensor | None = None) -> torch.Tensor:
        """(rows, V) float32 logits of rows `sl`, in `out` when given and possible."""
        if self.parts is None:
            return self.full[sl].float()
        h = self.hidden[sl]
        return _head(self.parts, h, None if out is None else out[:h.shape[0]]).float()


def block_bounds(n: int, block: int) -> list[tuple[int, int]]:
    """Rows [b0, b1) of each head block for n rows and blocks of at most `block` rows, as
    few blocks as that allows, of equal size to within one row: 600 rows are two blocks of
    300, not 512 and 88 (each head call rereads the whole head matrix, so a short last
    block pays that read for a few rows: the 512 + 88 split's products took 2-3% longer
    than 300 + 300 for one model at vocabulary 151,936 on the development machine)."""
    if n <= 0:
        return []
    count = -(-n // max(1, block))
    size, extra = divmod(n, count)
    out, b0 = [], 0
    for j in range(count):
        b1 = b0 + size + (j < extra)
        out.append((b0, b1))
        b0 = b1
    return out


def chunked(sources: list[ResponseLogits], step: int, block: int, device=None):
    """Walk the rows of `sources` (ResponseLogits of the same rows, one per model) chunk by
    chunk: yields (row slice, [(rows, V) float32 logits of each source, on `device`]) for
    chunks of `step` rows, applying each head once per block of at most `block` rows (a
    block's last chunk may be shorter than `step`). Chunks are views of one block buffer per
    source, overwritten by the next block: the caller is done with a chunk when it asks for
    the next. Blocks are balanced (block_bounds)."""
    n = len(sources[0])
    bounds = block_bounds(n, block)
    bufs = [None] * len(sources)  # each head's output block, reused
    for b0, b1 in bounds:
        blocks = []
        for i, src in enumerate(sources):
            if bufs[i] is None and getattr(src, "parts", None) is not None:
                bufs[i] = torch.empty((bounds[0][1], src.parts[1].out_features),
                                      dtype=torch.float32, device=src.device)
            blocks.append(src.chunk(slice(b0, b1), bufs[i]).to(device or src.device))
        for s in range(b0, b1, step):
            e = min(b1, s + step)
            yield slice(s, e), [blk[s - b0:e - b0] for blk in blocks]
        del blocks


def resolve_budget(budget: int, device: torch.device) -> int:
    """`budget` bytes when > 0, else default_budget(device)."""
    return int(budget) if budget and budget > 0 else default_budget(device)


MATH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def math_dtype(device: torch.device, setting: str = "auto") -> torch.dtype:
    """The metric math's dtype: `setting` ("float32" or "float64", the --math-dtype option),
    or for "auto" float64 on CPU and float32 elsewhere. Both are exact to the float32 output
    (float32 through core/metrics/exact.py's formulas)."""
    if setting in MATH_DTYPES:
        return MATH_DTYPES[setting]
    return torch.float64 if device.type == "cpu" else torch.float32


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


__all__ = ["ResponseLogits", "available_memory", "block_bounds", "chunk_rows", "chunked",
           "default_budget", "free_ram", "head_block_rows", "itemsize", "kv_bytes_per_token",
           "math_dtype", "resolve_budget"]
