"""Batching shared by sampling, scoring and the lockstep decoder: padding token lists into
tensors, grouping traces of similar length, accumulating per-row score columns, and deriving
seeds. One home for each, so the paths that use them cannot drift apart."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(*parts) -> int:
    """A 48-bit seed from any printable parts, `str()` of each joined by ':' (stable across
    runs, processes and platforms). Precompute seeds a shard as (seed, shard, source)."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> ids (B, W) padded on the left with `pad_id`, and the 0/1 mask (B, W)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def length_batches(lengths: list[int], batch_size: int,
                   max_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), order-stable: at most
    `batch_size` traces, and at most `max_tokens` padded positions (batch x longest) per
    batch when given (a single longer trace still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if not max_tokens:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    out: list[list[int]] = []
    for i in order:  # ascending length: the newest member is the longest
        if out and len(out[-1]) < batch_size and (len(out[-1]) + 1) * lengths[i] <= max_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def row_offsets(traces: list[tuple[list[int], list[int]]]) -> np.ndarray:
    """(n_traces + 1,) int64 offsets of each trace's response rows in the output columns."""
    offsets = np.zeros(len(traces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for _, r in traces])
    return offsets


def padded_batches(traces: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int,
                   offsets: np.ndarray, max_tokens: int | None = None):
    """Right-padded batches of traces of similar length (see length_batches). Yields (ids
    (B, W), attention mask (B, W), spans [(prompt length, response length)] per row, the
    batch's response tokens (sum r,), and their row indices in the output columns (sum r,))."""
    lengths = [len(p) + len(r) for p, r in traces]
    for batch in length_batches(lengths, batch_size, max_tokens):
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        spans = []
        for b, i in enumerate(batch):
            p, r = traces[i]
            ids[b, :len(p) + len(r)] = torch.tensor(p + r)
            attn[b, :len(p) + len(r)] = 1
            spans.append((len(p), len(r)))
        tok = torch.cat([torch.tensor(traces[i][1]) for i in batch])
        rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in batch])
        yield ids, attn, spans, tok, rows


class Columns(dict):
    """Per-row output columns {name: (T, ...) numpy array}, filled batch by batch.

    `put(name, rows, values)` writes a tensor's rows into column `name` (created on first
    use with the tensor's trailing shape). With `float32=True` floating values are stored as
    float32 (the tables' precision); otherwise in their own dtype (sequential mode keeps
    float64 intermediates between its passes)."""

    def __init__(self, total: int, float32: bool = True):
        super().__init__()
        self.total, self.float32 = total, float32

    def put(self, name: str, rows: np.ndarray, values: torch.Tensor) -> None:
        v = values.detach()
        if self.float32 and v.is_floating_point():
            v = v.float()
        v = v.cpu().numpy()
        if name not in self:
            self[name] = np.zeros((self.total,) + v.shape[1:], dtype=v.dtype)
        self[name][rows] = v


def token_ids(traces: list[tuple[list[int], list[int]]]) -> np.ndarray:
    """(T,) int32: every response token id, trace after trace."""
    if not traces:
        return np.zeros(0, dtype=np.int32)
    return np.concatenate([np.asarray(r, dtype=np.int32) for _, r in traces])
