#!/usr/bin/env bash
# The prepared GPU check of issue 24, for one 80 GB GPU, in at most 8 minutes:
#   1. the `gpu` test tier (tests marked gpu; they skip without CUDA);
#   2. the fused Triton kernel against the float64 reference on the GPU (its nucleus search
#      included), and its ms per row against the torch float32 Context
#      (benchmarks/triton_check.py);
#   3. benchmarks/realistic_shapes.py on CUDA: a Qwen2.5-1.5B-shaped pair at full depth (28
#      layers, vocabulary 151,936, hidden 1,536), random weights, bf16, at 512, 2,048 and
#      8,192 tokens, float32 math (the Triton kernel) and the torch path side by side:
#      tokens/s, overhead over the bare forward passes, share of the bf16 roofline.
# It has NOT run on a GPU yet (no device was lent when it was written).
#
#   bash benchmarks/gpu_check.sh            run it (needs CUDA, torch, triton)
#   bash benchmarks/gpu_check.sh --dry-run  print the steps and run what CPU can: the
#                                           scripts' syntax and --help, and step 2 on CPU
#                                           under TRITON_INTERPRET=1 at a small vocabulary
# Environment: PYTHON (default python), PEAK_TFLOPS (default 989, H100 SXM dense bf16),
# DRY_KERNEL=0 (dry run without the interpreter step; tests/test_gpu_check.py uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PEAK=${PEAK_TFLOPS:-989}
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }

# each step has its own time limit; together at most 7.5 minutes
T_TESTS=120 T_KERNEL=60 T_SHAPES=270

if ((DRY)); then
  step "dry run: syntax and entry points"
  bash -n "$0"
  "$PY" -m py_compile benchmarks/triton_check.py benchmarks/realistic_shapes.py \
    core/metrics/fused_triton.py core/metrics/fused_triton_nucleus.py
  "$PY" benchmarks/realistic_shapes.py --help > /dev/null
  echo "would run: $PY -m pytest -m gpu -q (limit ${T_TESTS}s)"
  echo "would run: $PY benchmarks/triton_check.py --device cuda (limit ${T_KERNEL}s)"
  echo "would run: $PY benchmarks/realistic_shapes.py --device cuda --layers 28" \
       "--model-dtype bfloat16 --lengths 512,2048,8192 --math-dtypes float32,float64" \
       "--peak-tflops $PEAK (limit ${T_SHAPES}s)"
  if [[ "${DRY_KERNEL:-1}" == "0" ]]; then echo; echo "dry run ok (step 2 skipped)"; exit 0; fi
  step "step 2 on CPU under the Triton interpreter (small vocabulary)"
  TRITON_INTERPRET=1 timeout 300 "$PY" -W ignore benchmarks/triton_check.py --device cpu \
    --rows 4 --vocab 8192
  echo; echo "dry run ok"
  exit 0
fi

"$PY" -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.cuda.get_device_name(0), 'torch', torch.__version__, 'triton', triton.__version__)"
status=0
step "1. gpu test tier"
timeout "$T_TESTS" "$PY" -m pytest -m gpu -q -p no:cacheprovider || status=1
step "2. fused Triton kernel vs float64 reference on the GPU"
timeout "$T_KERNEL" "$PY" benchmarks/triton_check.py --device cuda || status=1
step "3. realistic shapes on CUDA: Qwen2.5-1.5B-shaped pair, 28 layers, bf16"
timeout "$T_SHAPES" "$PY" benchmarks/realistic_shapes.py --device cuda --layers 28 \
  --model-dtype bfloat16 --lengths 512,2048,8192 --math-dtypes float32,float64 \
  --peak-tflops "$PEAK" || status=1
step "done (status $status)"
exit $status
