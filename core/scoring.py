"""Teacher-forced scoring: every per-token metric of a response under both models.

`score_traces` runs one forward pass per model per batch over prompt+response, takes the
logits that predict each response token, and computes the registered metrics
(core/metrics.py) and both models' top-k in row chunks, so that no more than
`chunk_rows` x vocabulary floats are expanded at once beyond the batch's logits.

Output is columnar (dict of numpy arrays) in the order of the input traces, ready for
core/storage.py. Shapes: for T response tokens in all, every column has length T; top-k
columns are (T, k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .metrics import compute_metrics, rank_of, topk


@dataclass
class ScoreSettings:
    batch_size: int = 16       # traces per forward pass
    top_k: int = 10            # top-k lists stored per position and model
    js_top_p: float = 0.7      # nucleus for the `js_top_p` column
    chunk_rows: int = 4096     # positions expanded at once for the metric math


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), order-stable."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _forward(model, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    dev = next(model.parameters()).device
    with torch.no_grad():
        return model(input_ids=ids.to(dev), attention_mask=attn.to(dev)).logits


def response_logits(logits: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Rows of `logits` (B, L, V) that predict response tokens: for row b with prompt length
    p and response length r, positions p-1 .. p+r-2. Returns (sum r, V)."""
    return torch.cat([logits[b, p - 1:p + r - 1] for b, (p, r) in enumerate(spans)])


def score_traces(base, tuned, traces: list[tuple[list[int], list[int]]], pad_id: int,
                 settings: ScoreSettings = ScoreSettings(), progress=None) -> dict:
    """Score `traces` = [(prompt_ids, response_ids), ...] under both models.

    Returns {"offsets": (n_traces+1,) int64 row offsets per trace, "token_id": (T,),
    each metric name: (T,), "base_topk_ids"/"tuned_topk_ids": (T, k) int, "..._probs": (T, k),
    "tuned_top1_rank_base": (T,), "tuned_top1_prob_base": (T,)}.
    """
    lengths = [len(p) + len(r) for p, r in traces]
    offsets = np.zeros(len(traces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for _, r in traces])
    total = int(offsets[-1])
    cols: dict[str, np.ndarray] = {}

    def put(name: str, rows: np.ndarray, values: torch.Tensor) -> None:
        v = values.detach().float().cpu().numpy() if values.is_floating_point() \
            else values.detach().cpu().numpy()
        if name not in cols:
            cols[name] = np.zeros((total,) + v.shape[1:], dtype=v.dtype)
        cols[name][rows] = v

    for batch in length_batches(lengths, settings.batch_size):
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        spans = []
        for b, i in enumerate(batch):
            p, r = traces[i]
            ids[b, :len(p) + len(r)] = torch.tensor(p + r)
            attn[b, :len(p) + len(r)] = 1
            spans.append((len(p), len(r)))
        lb = response_logits(_forward(base, ids, attn), spans)
        lt = response_logits(_forward(tuned, ids, attn), spans)
        tok = torch.cat([torch.tensor(traces[i][1]) for i in batch]).to(lb.device)
        rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in batch])
        for s in range(0, len(tok), settings.chunk_rows):
            sl = slice(s, s + settings.chunk_rows)
            cb, ct, tk = lb[sl].double(), lt[sl].double(), tok[sl]
            for name, v in compute_metrics(cb, ct, tk, settings.js_top_p).items():
                put(name, rows[sl], v)
            b_ids, b_probs = topk(cb, settings.top_k)
            t_ids, t_probs = topk(ct, settings.top_k)
            put("base_topk_ids", rows[sl], b_ids)
            put("base_topk_probs", rows[sl], b_probs)
            put("tuned_topk_ids", rows[sl], t_ids)
            put("tuned_topk_probs", rows[sl], t_probs)
            logp_b = torch.log_softmax(cb, -1)
            put("tuned_top1_rank_base", rows[sl], rank_of(logp_b, t_ids[:, 0]))
            put("tuned_top1_prob_base", rows[sl], logp_b.gather(-1, t_ids[:, :1]).squeeze(-1).exp())
        if progress is not None:
            progress(len(tok))
    cols["token_id"] = np.concatenate([np.asarray(r, dtype=np.int32) for _, r in traces]) \
        if traces else np.zeros(0, dtype=np.int32)
    cols["offsets"] = offsets
    return cols
