#!/usr/bin/env bash
# GPU check: stage-1 and function-tag steps on a LLaMA-7B-shaped model (random bf16 weights, built
# from its config, no network) at batch 4 x 1024 tokens; prints tokens/s and MFU. Sized to finish in
# well under 8 minutes on one H100/H200-class GPU.
#   bench/gpu_check.sh                        # on a CUDA machine
#   bench/gpu_check.sh --device cpu --shape tiny --tokens 128   # a dry check without a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
if [ "$#" -eq 0 ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    set -- --device cuda --shape llama-7b --batch 4 --tokens 1024
fi
exec timeout 480 "$PYTHON" bench/gpu_check.py "$@"
