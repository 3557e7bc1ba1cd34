"""When the encoder's numpy path (asr.cpu_encoder, asr.cpu_subsampling) runs instead of MLX.

Only for float32 on the CPU with MKL loaded (asr.blas): there it is several times faster.
On a GPU, without MKL, or in another dtype, MLX's own path runs; it stays the reference.
PARAKEET_NO_CPU_ENCODER=1 keeps MLX everywhere (for comparing the two).
"""

from __future__ import annotations

import os

import mlx.core as mx

from . import mkl_gemm, mkl_vector


def usable(*arrays: mx.array) -> bool:
    if os.environ.get("PARAKEET_NO_CPU_ENCODER"):
        return False
    if not (mkl_gemm.available() and mkl_vector.available()):
        return False
    if mx.default_device() != mx.cpu:
        return False
    return all(a.dtype == mx.float32 for a in arrays)
