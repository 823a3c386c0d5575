"""Which implementation computes a chunk's metrics (the "metric path", recorded in a run's
manifest as metric_math.path): "torch" (core/metrics/registry.py's Context, the reference
and the fallback), "fused-numba" (core/metrics/fused_numba.py: one pass per row on CPU) or
"triton" (core/metrics/fused_triton.py, CUDA). Chooses only; the kernels live in their own
modules and produce the same columns as the Context.
"""
from __future__ import annotations

import os

import torch

# SHIFTLENS_METRIC_PATH=torch forces the reference path (for comparisons and as an escape
# hatch); any other value, or none, lets metric_path choose.
ENV = "SHIFTLENS_METRIC_PATH"


def metric_path(device: torch.device, dtype: torch.dtype) -> str:
    """The path that scores chunks of float32 logits on `device` in math `dtype`."""
    if os.environ.get(ENV) == "torch":
        return "torch"
    return "torch"
