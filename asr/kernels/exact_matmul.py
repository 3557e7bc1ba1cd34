"""Float32 matrix products at float32 precision on devices where MLX uses TF32.

MLX runs float32 products on NVIDIA GPUs (and some Apple GPUs) through TF32 tensor cores
unless MLX_ENABLE_TF32=0, keeping 10 mantissa bits of each input: errors near 1e-3. Where
that happens, each operand is split into a TF32-exact high part and the remainder, and
a @ b = hi@hi + hi@lo + lo@hi (dropping lo@lo, ~2^-20 relative) restores float32 accuracy
at three times the work.
"""

from __future__ import annotations

import os

import mlx.core as mx

_exact: dict[str, bool] = {}
_TF32_MASK = 0xFFFFE000  # sign, exponent and the top 10 mantissa bits


def matmul_is_exact() -> bool:
    """Whether float32 products on the default device keep all 24 mantissa bits."""
    device = mx.default_device()
    key = str(device)
    if key not in _exact:
        if device == mx.gpu and hasattr(mx, "cuda") and mx.cuda.is_available():
            # MLX's CUDA backend asks cuBLAS for TF32 unless MLX_ENABLE_TF32=0.
            _exact[key] = os.environ.get("MLX_ENABLE_TF32", "1") == "0"
        else:
            # Elsewhere ask the device: a product big enough to take the matrix path, whose
            # exact result needs more mantissa bits than TF32 has.
            a = mx.full((64, 64), 1.0 + 2.0**-20, mx.float32)
            _exact[key] = bool(mx.all((a @ mx.eye(64, dtype=mx.float32)) == a).item())
    return _exact[key]


def split(x: mx.array) -> tuple[mx.array, mx.array]:
    bits = mx.view(x, mx.uint32) & mx.array(_TF32_MASK, mx.uint32)
    hi = mx.view(bits, mx.float32)
    return hi, x - hi


def product(a: tuple[mx.array, ...], b: tuple[mx.array, ...], c: mx.array | None = None):
    """c + a @ b for operands given whole, (x,), or split, (hi, lo)."""
    out = a[0] @ b[0] if c is None else mx.addmm(c, a[0], b[0])
    if len(a) == 2 and len(b) == 2:
        out = out + a[0] @ b[1] + a[1] @ b[0]
    return out
