#!/usr/bin/env bash
# The engine's figures on the lent NVIDIA GPU, from the project root, with MLX's CUDA build,
# soundfile, parakeet-mlx 0.6.0 and dacite (decode_step's reference) and pytest on
# PYTHONPATH. One device call carries at most 64 MiB including the project's tracked files
# (about 24 MB now), so MLX's CUDA wheel (90 MB) has to go over in three parts of ~31 MB
# (`split -b 31000000`), copied to /root/parts by two calls and joined in the third.
# JSON and logs land in $OUT.
set -uo pipefail
out=${OUT:-bench/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import mlx.core as mx; print(mx.default_device(), mx.cuda.is_available())" | tee -a "$out/gpu.txt"
timeout 150 python3 -m pytest tests/test_cuda_greedy.py -q -p no:cacheprovider 2>&1 | tail -5 | tee "$out/cuda_greedy.log"
timeout 150 python3 bench/decode_step.py --seconds 60 --out "$out" 2>&1 | tail -20 | tee "$out/decode_step.log"
timeout 240 python3 -m pytest tests/test_cuda_streaming.py -q -p no:cacheprovider 2>&1 | tail -5 | tee "$out/cuda_streaming.log"
timeout 200 python3 bench/streaming.py --minutes 1 --settings 256,16,1 256,16,1,eager 256,256,1 --other-minutes 0.5 \
  --reference-blocks 0 --no-pace --out "$out" 2>&1 | tail -5 | tee "$out/streaming.log"
# the same default setting through MLX's compiled layers instead of our CUDA kernels
mkdir -p "$out/mlx_compiled"
PARAKEET_NO_CUDA_STREAMING=1 timeout 100 python3 bench/streaming.py --minutes 1 --settings 256,16,1 \
  --reference-blocks 0 --no-pace --out "$out/mlx_compiled" 2>&1 | tail -2 | tee -a "$out/streaming.log"
timeout 300 python3 bench/long_audio.py --model 0.6b --minutes 10 60 180 --compare-full 10 \
  --out "$out" 2>&1 | tail -8 | tee "$out/long_audio.log"
