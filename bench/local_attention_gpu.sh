#!/usr/bin/env bash
# The local-attention run on the lent GPU machine, from the project root, once
# `source .whl2/on-device.sh` has put MLX on PYTHONPATH: the tests, then the figures.
# Logs and the JSON land in $OUT (bench/results when OUT is unset).
set -uo pipefail
out=${OUT:-bench/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pytest tests/test_local_attention.py -rs -p no:cacheprovider 2>&1 | tee "$out/pytest.log"
python3 bench/local_attention_gpu.py --out "$out/local_attention_gpu.json" 2>&1 | tee "$out/bench.log"
