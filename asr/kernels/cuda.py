"""Local attention on NVIDIA GPUs: picks one of the two CUDA kernels.

bfloat16 and float16 inputs go to the tensor-core kernel; float32 inputs to the kernel on
the CUDA cores, which keeps float32 arithmetic throughout (tensor cores would round the
inputs to TF32, about 1e-3 off).
"""

from __future__ import annotations

import mlx.core as mx

from . import cuda_tensor_core
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
    if tensor_cores:
        return cuda_tensor_core.tensor_core_local_attention(
            q, k, v, left, right, bias, key_mask, scale
        )
    return simt_local_attention(q, k, v, left, right, bias, key_mask, scale)
