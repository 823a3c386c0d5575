"""Memory and time estimates for a precompute, from parameter counts and settings alone.

Estimates, not measurements: they need no model in memory and are meant to say "this fits
and takes about an hour" versus "this needs a GPU". The formulas (P = parameters, b = bytes
per parameter as loaded: 2 in bf16 on CUDA, 4 in fp32 on CPU; B = batch_size; T = longest
prompt in tokens + max_new_tokens; V = vocabulary; L, H_kv, d = layers, KV heads, head size):

  weights  = b * (P_base + max P_tuned)        both models of one pair stay loaded; the SFT
                                               model and series checkpoints run one at a time
  kv_cache = 2 * L * B * T * H_kv * d * b      sampling keeps keys and values for B sequences
  logits   = 2 * B * T * V * b + 6 * 4096 * V * 4   both models' batch logits, plus the fp32
                                               chunk of rows the metric math expands at once
  memory   = 1.2 * (weights + kv_cache + logits) + 0.5 GiB   (allocator slack + runtime)

  traces   = prompts * n * (2 if sample_from == "both" else 1)   (no sampling for traces_from)
  flops    = 2 * P_sampler * traces * max_new_tokens             sampling, every trace to the cap
           + 2 * (P_base + P_tuned) * traces * T                 teacher-forced scoring
  seconds  = flops / (efficiency * F) + ceil(traces / B) * max_new_tokens * L * step_overhead

F is this machine's matmul throughput: measured once per process on CPU with a 0.2 s probe,
assumed (a nominal figure per GPU) on CUDA. `efficiency` (0.5) and `step_overhead` (Python
and kernel-launch cost per layer and decoding step: 0.25 ms CPU, 0.05 ms CUDA) are assumptions
chosen so that tiny models, which are overhead-bound, and large ones, which are FLOP-bound,
both land within a small factor. The time is an upper-end figure: real traces often stop
before the length cap.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

GIB = 1024**3
EFFICIENCY = 0.5
STEP_OVERHEAD_S = {"cpu": 0.25e-3, "cuda": 0.05e-3}
ASSUMED_GPU_FLOPS = 200e12  # bf16 dense, a nominal modern datacentre GPU


@dataclass
class Estimate:
    device: str              # "cpu" or "cuda"
    dtype: str               # as loaded: float32 (CPU) or bfloat16 (CUDA)
    weights_bytes: int
    kv_cache_bytes: int
    logits_bytes: int
    total_bytes: int         # the memory estimate
    available_bytes: int     # free RAM (CPU) or total GPU memory (CUDA) on this machine
    traces: int
    sampled_tokens: int      # upper bound: every trace runs to max_new_tokens
    scored_tokens: int
    flops: float
    throughput_flops: float  # F in the formula
    throughput_source: str   # "measured" or "assumed"
    seconds: float

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.available_bytes

    def memory_line(self) -> str:
        """Memory needed vs available, as one sentence."""
        return (f"about {fmt_bytes(self.total_bytes)} of {self.device} memory needed, "
                f"{fmt_bytes(self.available_bytes)} available (weights "
                f"{fmt_bytes(self.weights_bytes)} in {self.dtype}; estimate)")


def fmt_bytes(n: float) -> str:
    """'1.5 GiB' or '120 MiB'."""
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 1024**2:.0f} MiB"


def fmt_seconds(s: float) -> str:
    """'40 s', '12 min' or '3.5 h'."""
    if s < 90:
        return f"{max(s, 1):.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def resolve_device(device: str = "auto") -> str:
    """'cuda' or 'cpu', as core.engine.pair.pick_device would choose, without touching a GPU."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def available_memory(device: str) -> int:
    """Bytes: MemAvailable from /proc/meminfo on CPU, the GPU's total memory on CUDA."""
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)
    from core.engine.heads import free_ram

    return free_ram()


@functools.lru_cache(maxsize=4)
def throughput(device: str) -> tuple[float, str]:
    """(matmul FLOP/s, "measured" | "assumed"): a short fp32 matmul probe on CPU."""
    if device == "cuda":
        return ASSUMED_GPU_FLOPS, "assumed"
    import torch

    n = 512
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.2:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0), "measured"


def estimate(*, params_base: int, params_tuned: int, params_other: int = 0, layers: int,
             kv_heads: int, head_dim: int, vocab: int, prompts: int, prompt_tokens: int,
             n: int, sample_from: str, max_new_tokens: int, batch_size: int,
             reuse_traces: bool = False, device: str = "auto") -> Estimate:
    """The estimate for one pair (plus optional other tuned checkpoints run after it).

    params_*: parameter counts; params_other: the largest extra checkpoint (SFT or series).
    prompt_tokens: the longest prompt in tokens. Returns an Estimate (see module docstring).
    """
    dev = resolve_device(device)
    b = 2 if dev == "cuda" else 4
    T = prompt_tokens + max_new_tokens
    B = max(1, batch_size)
    weights = b * (params_base + max(params_tuned, params_other))
    kv = 2 * layers * B * T * kv_heads * head_dim * b
    logits = 2 * B * T * vocab * b + 6 * 4096 * vocab * 4
    total = int(1.2 * (weights + kv + logits) + 0.5 * GIB)
    traces = prompts * n * (2 if sample_from == "both" else 1)
    sampled = 0 if reuse_traces else traces * max_new_tokens
    sampler = params_tuned if sample_from != "base" else params_base
    flops = 2.0 * sampler * sampled + 2.0 * (params_base + params_tuned) * traces * T
    f, source = throughput(dev)
    steps = 0 if reuse_traces else math.ceil(traces / B) * max_new_tokens
    seconds = flops / (EFFICIENCY * f) + steps * max(layers, 1) * STEP_OVERHEAD_S[dev]
    return Estimate(dev, "bfloat16" if dev == "cuda" else "float32", weights, kv, logits, total,
                    available_memory(dev), traces, sampled, traces * T, flops, f, source,
                    seconds)
