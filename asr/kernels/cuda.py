"""Local attention on NVIDIA GPUs: picks one of the CUDA kernels.

bfloat16 and float16 inputs go to the tensor cores: on Hopper (sm_90, heads of 64 or 128)
through the warpgroup kernel (cuda_wgmma), elsewhere through the mma.sync kernel
(cuda_tensor_core); PARAKEET_CUDA_KERNEL=mma keeps the latter on Hopper too. float32 inputs
go to the kernel on the CUDA cores, which keeps float32 arithmetic throughout (tensor cores
would round the inputs to TF32, about 1e-3 off). Measured times: bench/local_attention_gpu.py.
"""

from __future__ import annotations

import os

import mlx.core as mx

from . import cuda_tensor_core, cuda_wgmma
from .cuda_common import is_available
from .cuda_simt import simt_local_attention

__all__ = ["cuda_local_attention", "is_available", "supports"]


def supports(q: mx.array) -> bool:
    d = q.shape[-1]
    return d % 64 == 0 and d <= 256


def cuda_local_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    left: int,
    right: int,
    bias: mx.array | None,
    key_mask: mx.array | None,
    scale: float,
    tensor_cores: bool | None = None,
) -> mx.array:
    """`tensor_cores` None: on for bfloat16/float16, off for float32 (which it cannot take)."""
    if tensor_cores is None:
        tensor_cores = cuda_tensor_core.supports(q)
    if not tensor_cores:
        return simt_local_attention(q, k, v, left, right, bias, key_mask, scale)
    if os.environ.get("PARAKEET_CUDA_KERNEL") != "mma" and cuda_wgmma.supports(q):
        return cuda_wgmma.wgmma_local_attention(q, k, v, left, right, bias, key_mask, scale)
    return cuda_tensor_core.tensor_core_local_attention(q, k, v, left, right, bias, key_mask, scale)
