"""Matrix products with bfloat16 weights on CPUs that compute in bfloat16 (AMX, AVX512-BF16).

A streaming update pushes a few dozen frames through every weight of the encoder: the
products are bound by reading the weights from memory, not by arithmetic. Keeping a
bfloat16 copy halves those bytes; MKL's `cblas_gemm_bf16bf16f32` multiplies it with the
activations rounded to bfloat16 and accumulates in float32. MLX's own bfloat16 products
on a Linux CPU are about 30x slower than its float32 ones (measured), so this goes around
MLX, through numpy.

Available only where MKL is loaded (asr.blas) and the CPU has bfloat16 instructions;
everything else keeps float32.
"""

from __future__ import annotations

import ctypes
import functools
import sys

import numpy as np

from . import blas

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_HARDWARE_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return any(flag in flags for flag in _HARDWARE_FLAGS)
    except OSError:
        pass
    return False


@functools.cache
def _gemm():
    """MKL's bfloat16 product, or None where it would not be fast."""
    if blas._loaded is None or not _cpu_has_bf16():
        return None
    try:
        function = ctypes.CDLL(blas._loaded).cblas_gemm_bf16bf16f32
    except (OSError, AttributeError):
        return None
    return blas.declare_cblas_gemm(function)


def available() -> bool:
    return _gemm() is not None


def to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits >> 16
    rounded &= 1
    rounded += 0x7FFF
    rounded += bits
    if sys.byteorder == "little":  # the high halves, without a shift and a cast
        return np.ascontiguousarray(rounded.view(np.uint16)[..., 1::2])
    return (rounded >> 16).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


class Bf16Matrix:
    """y = x @ weight.T + bias with the weight (out, in) kept in bfloat16."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None):
        if _gemm() is None:
            raise RuntimeError("bfloat16 products need MKL and a CPU with bfloat16 instructions")
        if weight.ndim != 2:
            raise ValueError(f"weight must be (out, in), got {weight.shape}")
        self.weight = to_bf16(weight)
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        self.out_features, self.in_features = weight.shape

    @property
    def nbytes(self) -> int:
        return self.weight.nbytes + (0 if self.bias is None else self.bias.nbytes)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected {self.in_features} inputs, got {x.shape}")
        rows = int(np.prod(x.shape[:-1]))
        a = to_bf16(x.reshape(rows, self.in_features))
        if self.bias is None:
            out = np.empty((rows, self.out_features), np.float32)
            beta = 0.0
        else:
            out = np.repeat(self.bias[None], rows, axis=0)
            beta = 1.0
        if rows:
            _gemm()(
                _ROW_MAJOR,
                _NO_TRANS,
                _TRANS,
                rows,
                self.out_features,
                self.in_features,
                1.0,
                a.ctypes.data,
                self.in_features,
                self.weight.ctypes.data,
                self.in_features,
                beta,
                out.ctypes.data,
                self.out_features,
            )
        return out.reshape(*x.shape[:-1], self.out_features)
