"""GPU scoring benchmark on a randomly initialised 1.5B-class pair (no download).

    python benchmarks/gpu_scoring.py [--traces 64] [--length 1024] [--batch-size 0]
                                     [--peak-tflops 989] [--mode both|sequential]
    python benchmarks/gpu_scoring.py --tiny      # CPU smoke run: figures are NOT meaningful

Builds two Qwen2-1.5B-shaped models (hidden 1536, 28 layers, 12 heads / 2 KV heads, MLP 8960,
vocab 151936, tied embeddings) in bf16 on the GPU, scores `--traces` synthetic traces of
`--length` tokens (prompt 64 + response) with core.engine.scoring.score_traces (or the sequential
mode), after one warm-up batch, and prints:
  tokens/s   forward tokens (prompt + response, no padding: equal lengths) per second
  MFU        achieved FLOPs / peak dense bf16 FLOPs of the GPU, where achieved FLOPs =
             2 x matmul params x forward tokens x 2 models (attention score FLOPs and the
             metric math are not counted, so this is conservative). Matmul params = all
             parameters minus the input embedding table (counted once when tied, as lm_head).
Peak dense bf16 TFLOPS by GPU name: H100/H200 SXM 989, H100 PCIe 756, A100 312, L40S 362,
L4 121, A10 125; --peak-tflops overrides (needed for anything else).
Target (issue 7): MFU >= 50% on an H100-class GPU. Never run on a GPU by its author.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.engine.scoring import ScoreSettings, _resolve_batch_size, score_traces  # noqa: E402
from core.engine.sequential import score_traces_sequential  # noqa: E402

PEAK_BF16_TFLOPS = [("H100 PCIE", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
                    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0)]


def peak_tflops(name: str) -> float | None:
    up = name.upper()
    for key, value in PEAK_BF16_TFLOPS:
        if key in up:
            return value
    return None


def build(tiny: bool, seed: int, device: torch.device, dtype: torch.dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if tiny:
        cfg = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          tie_word_embeddings=True)
    else:
        cfg = Qwen2Config(vocab_size=151_936, hidden_size=1536, intermediate_size=8960,
                          num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                          max_position_embeddings=32_768, tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def matmul_params(model) -> int:
    total = sum(p.numel() for p in model.parameters())
    tied = model.config.tie_word_embeddings
    return total if tied else total - model.get_input_embeddings().weight.numel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny config on CPU (smoke run)")
    ap.add_argument("--traces", type=int, default=None)
    ap.add_argument("--length", type=int, default=None, help="tokens per trace")
    ap.add_argument("--batch-size", type=int, default=0, help="0 = auto from free memory")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--mode", choices=["both", "sequential"], default="both")
    ap.add_argument("--k", type=int, default=64, help="kept support for --mode sequential")
    a = ap.parse_args()
    on_gpu = torch.cuda.is_available() and not a.tiny
    dev = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    n = a.traces or (64 if on_gpu else 4)
    length = a.length or (1024 if on_gpu else 64)
    if not on_gpu and not a.tiny:
        print("no CUDA GPU: running the --tiny config on CPU instead")
        a.tiny = True

    base, tuned = build(a.tiny, 1, dev, dtype), build(a.tiny, 2, dev, dtype)
    v = base.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompt = min(64, length // 2)
    traces = [(torch.randint(3, v, (prompt,), generator=g).tolist(),
               torch.randint(3, v, (length - prompt,), generator=g).tolist()) for _ in range(n)]
    st = ScoreSettings(batch_size=a.batch_size, top_k=10)
    bs = _resolve_batch_size(st, base, [length] * n)
    print(f"device {torch.cuda.get_device_name(dev) if on_gpu else 'cpu'}, {dtype}, "
          f"{n} traces x {length} tokens, batch size {bs}, mode {a.mode}")

    def run(tr):
        if a.mode == "sequential":
            return score_traces_sequential(lambda: base, lambda: tuned, tr, 0, st, k=a.k)
        return score_traces(base, tuned, tr, 0, st)

    run(traces[:min(bs, n)])  # warm-up (kernels, allocator)
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run(traces)
    if on_gpu:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tokens = n * length
    flops = 2 * (matmul_params(base) + matmul_params(tuned)) * tokens
    print(f"matmul params per model {matmul_params(base) / 1e6:,.2f} M")
    print(f"elapsed {dt:.2f} s, {tokens / dt:,.0f} forward tokens/s "
          f"({n * (length - prompt) / dt:,.0f} scored response tokens/s)")
    print(f"achieved {flops / dt / 1e12:.1f} TFLOPS")
    peak = a.peak_tflops or (peak_tflops(torch.cuda.get_device_name(dev)) if on_gpu else None)
    if peak:
        print(f"MFU {100 * flops / dt / (peak * 1e12):.1f}% of {peak:.0f} TFLOPS dense bf16")
    else:
        print("MFU: unknown peak for this device (pass --peak-tflops)")
    if on_gpu:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 1024**3:.1f} GiB")
    else:
        print("NOTE: CPU run of a tiny config: these figures are not meaningful")


if __name__ == "__main__":
    main()
