#!/usr/bin/env bash
# The engine's figures on the lent NVIDIA GPU, from the project root, after
# `source .whl2/on-device.sh` (MLX's CUDA build, soundfile and parakeet-mlx on PYTHONPATH).
# JSON and logs land in $OUT.
set -uo pipefail
out=${OUT:-bench/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import mlx.core as mx; print(mx.default_device(), mx.cuda.is_available())" | tee -a "$out/gpu.txt"
timeout 150 python3 bench/decode_step.py --seconds 60 --out "$out" 2>&1 | tail -20 | tee "$out/decode_step.log"
timeout 120 python3 bench/streaming.py --minutes 1 --settings 256,16,1 256,256,1 --other-minutes 0.5 \
  --reference-blocks 0 --no-pace --out "$out" 2>&1 | tail -5 | tee "$out/streaming.log"
timeout 300 python3 bench/long_audio.py --model 0.6b --minutes 10 60 180 --compare-full 10 \
  --out "$out" 2>&1 | tail -8 | tee "$out/long_audio.log"
