"""Which implementation computes a chunk's metrics (the "metric path", recorded in a run's
manifest as metric_math.path) and the fused one's wrapper:

- "torch": core/metrics/registry.py's Context, the reference and the fallback (any device,
  float32 or float64 math);
- "fused-numba": core/metrics/fused_numba.py, one kernel call per chunk on CPU, for float32
  math when numba is installed;
- "triton": core/metrics/fused_triton.py on CUDA, for float32 math when triton is installed.

`fused_chunk` turns a kernel's per-row results into the columns the Context gives (the
registered metrics, both top-k lists, the tuned top-1's base rank and probability). The
truncated JS columns: the numba kernel computes every row's nuclei exactly itself
(core/metrics/fused_nucleus.py); on the Triton path they are computed here in float64 from
the kernel's top-K lists where both nuclei end inside them, and by a search on the device
(core/metrics/fused_triton_nucleus.py) for the other rows: no path hands a row to the
reference Context.
"""
from __future__ import annotations

import importlib.util
import math

import torch

from core import settings
from core.metrics.nucleus import NUCLEUS_TOPK

# SHIFTLENS_METRIC_PATH=torch forces the reference path (for comparisons and as an escape
# hatch); any other value, or none, lets metric_path choose.
ENV = "SHIFTLENS_METRIC_PATH"


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def metric_path(device: torch.device, dtype: torch.dtype) -> str:
    """The path that scores chunks of float32 logits on `device` in math `dtype`."""
    if settings.value(ENV) == "torch" or dtype != torch.float32:
        return "torch"
    if device.type == "cpu" and _has("numba"):
        return "fused-numba"
    if device.type == "cuda" and _has("triton"):
        return "triton"
    return "torch"


def _probs(x: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    return torch.exp(x.double() - lse[:, None])


def truncated_js(ids_b, pb, ids_t, pt, top_p: float):
    """(js (N,) float64, ok (N,) bool): JS of the top-p truncated distributions from each
    model's top-K (ids, float64 probabilities, largest first); ok = both nuclei end inside
    their top-K before a less likely token (core/metrics/nucleus.py's rule), else the row's
    value is not valid here."""
    keeps, oks = [], []
    for p in (pb, pt):
        keep = (p.cumsum(-1) - p) < top_p
        keep[:, 0] = True
        cnt = keep.sum(-1, keepdim=True)
        k = p.shape[1]
        last = p.gather(-1, cnt - 1)
        nxt = p.gather(-1, cnt.clamp(max=k - 1))
        oks.append(((cnt < k) & (nxt < last))[:, 0])
        keeps.append(keep)
    kb, kt = keeps
    pk = torch.where(kb, pb, 0.0)
    qk = torch.where(kt, pt, 0.0)
    pk = pk / pk.sum(-1, keepdim=True)
    qk = qk / qk.sum(-1, keepdim=True)
    eq = (ids_b[:, :, None] == ids_t[:, None, :]) & kb[:, :, None] & kt[:, None, :]
    q_at_b = (eq * qk[:, None, :]).sum(-1)  # tuned's truncated prob at each base entry
    p_at_t = (eq * pk[:, :, None]).sum(1)

    def half(w, other):
        m = w + other
        return torch.where(w > 0, w * torch.log(2 * w / m), 0.0).sum(-1)

    js = (0.5 * (half(pk, q_at_b) + half(qk, p_at_t))).clamp(0.0, math.log(2.0))
    return js, oks[0] & oks[1]


def _triton_truncated(lb, lt, ids, pb, pt, lse_b, lse_t, tps) -> dict:
    """The truncated JS columns on the Triton path: from the top-K lists where both nuclei
    end inside them, from the device search (core/metrics/fused_triton_nucleus.py) for the
    other rows."""
    trunc = {name: truncated_js(ids[:, 0], pb, ids[:, 1], pt, tp) for name, tp in tps.items()}
    bad = torch.stack([~ok for _, ok in trunc.values()]).any(0)
    if bool(bad.any()):  # a nucleus beyond the top-K: searched on the device, those rows only
        from core.metrics.fused_triton_nucleus import truncated_rows

        rows = bad.nonzero()[:, 0]
        found = truncated_rows(lb, lt, lse_b, lse_t, rows, tps)
        for name, (js, _) in trunc.items():
            js[rows.to(js.device)] = found[name].to(js.device, js.dtype)
    return {name: js for name, (js, _) in trunc.items()}


def fused_chunk(lb: torch.Tensor, lt: torch.Tensor, tok: torch.Tensor, top_p: float,
                top_k: int, nuclei: dict[str, float], kernel: str = "fused-numba") -> dict:
    """Every registered metric and the scoring's top-k columns for rows of float32 logits
    lb, lt (N, V), from one fused kernel call: {name: (N,) tensor} plus "base_topk_ids",
    "base_topk_probs", "tuned_topk_ids", "tuned_topk_probs" (N, top_k),
    "tuned_top1_rank_base", "tuned_top1_prob_base" (N,). `nuclei`: {column: top_p} of the
    truncated JS columns."""
    n, v = lb.shape
    k = min(v, max(top_k, NUCLEUS_TOPK))
    tps = {"js_top_p": top_p, **nuclei}
    if kernel == "triton":
        from core.metrics.fused_triton import run_rows
        f64, i64, ids, tx = run_rows(lb, lt, tok, k)
    else:  # the numba kernel computes every nucleus itself, exactly
        from core.metrics.fused_numba import run_rows
        f64, i64, ids, tx, tjs = run_rows(lb, lt, tok, k, tuple(tps.values()))
    lse_b, lse_t = f64[:, 8], f64[:, 9]
    pb, pt = _probs(tx[:, 0], lse_b), _probs(tx[:, 1], lse_t)
    out = {name: f64[:, j] for j, name in enumerate(
        ("js", "kl_bt", "kl_tb", "entropy_base", "entropy_tuned", "logp_base", "logp_tuned",
         "dlogp"))}
    out["rank_base"], out["rank_tuned"] = i64[:, 0], i64[:, 1]
    out["top1_agree"] = i64[:, 2] == i64[:, 3]
    if kernel == "triton":
        out.update(_triton_truncated(lb, lt, ids, pb, pt, lse_b, lse_t, tps))
    else:
        out.update({name: tjs[:, j] for j, name in enumerate(tps)})
    out["base_topk_ids"], out["base_topk_probs"] = ids[:, 0, :top_k], pb[:, :top_k]
    out["tuned_topk_ids"], out["tuned_topk_probs"] = ids[:, 1, :top_k], pt[:, :top_k]
    out["tuned_top1_rank_base"] = i64[:, 4]
    at = i64[:, 3].to(lb.device)
    out["tuned_top1_prob_base"] = torch.exp(
        lb.gather(-1, at[:, None])[:, 0].double() - lse_b.to(lb.device))
    return out


def warm_up() -> str:
    """Compile (or load from numba's on-disk cache) the CPU kernel by scoring two small rows;
    returns the path that would score float32 math on CPU. scripts/test.sh runs it while the
    TRL tier's venv installs, so that the test workers load the kernel instead of each
    compiling it (about 30 s on a clean checkout)."""
    path = metric_path(torch.device("cpu"), torch.float32)
    if path == "fused-numba":
        g = torch.Generator().manual_seed(0)
        lb = torch.randn(2, 4096, generator=g)
        from core.metrics.registry import TRUNCATED_JS

        fused_chunk(lb, lb + 0.1 * torch.randn(lb.shape, generator=g),
                    torch.zeros(2, dtype=torch.long), 0.7, 10, dict(TRUNCATED_JS))
    return path
