"""float32 matrix products on numpy arrays straight through MKL's `cblas_sgemm`.

numpy's own products go to its bundled OpenBLAS (about 15% slower than MKL here) and always
write a fresh array. Calling MKL directly lets a product read column slices of a wider
array (one head of the attention's projections) and write into a slice of another, and
accumulate into its output (C = alpha A B + beta C): a residual connection costs no pass of
its own. Each calling thread can have its own MKL thread count, so worker threads that
split the work among themselves each run MKL on one core.

Available only where asr.blas loaded MKL; callers keep their MLX path elsewhere.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from . import blas

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_FLOAT = np.dtype(np.float32).itemsize


@functools.cache
def _library() -> ctypes.CDLL | None:
    if blas._loaded is None:
        return None
    try:
        library = ctypes.CDLL(blas._loaded)
        sgemm = library.cblas_sgemm
        library.MKL_Set_Num_Threads_Local.argtypes = [ctypes.c_int]
    except (OSError, AttributeError):
        return None
    blas.declare_cblas_gemm(sgemm)
    return library


def available() -> bool:
    return _library() is not None


def use_one_thread() -> None:
    """MKL runs this thread's products on one core (other threads keep their setting)."""
    library = _library()
    if library is not None:
        library.MKL_Set_Num_Threads_Local(1)


def _operand(a: np.ndarray) -> tuple[int, int, int]:
    """(pointer, leading dimension, transpose flag) of a 2-D float32 view whose rows or
    columns are contiguous."""
    if a.dtype != np.float32 or a.ndim != 2:
        raise ValueError(f"expected a 2-D float32 array, got {a.dtype} {a.shape}")
    rows, cols = a.strides
    if cols == _FLOAT and rows % _FLOAT == 0 and rows >= max(a.shape[1], 1) * _FLOAT:
        return a.ctypes.data, rows // _FLOAT, _NO_TRANS
    if rows == _FLOAT and cols % _FLOAT == 0 and cols >= max(a.shape[0], 1) * _FLOAT:
        return a.ctypes.data, cols // _FLOAT, _TRANS
    raise ValueError(f"neither rows nor columns are contiguous: strides {a.strides}")


def gemm(
    a: np.ndarray, b: np.ndarray, out: np.ndarray, alpha: float = 1.0, beta: float = 0.0
) -> np.ndarray:
    """out = alpha * a @ b + beta * out, in place. a (M, K), b (K, N), out (M, N): 2-D
    float32 views with contiguous rows (or, for a and b, contiguous columns: `w.T`)."""
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or out.shape != (m, n):
        raise ValueError(f"shapes {a.shape} @ {b.shape} -> {out.shape}")
    if m == 0 or n == 0:
        return out
    if k == 0:
        out *= np.float32(beta)
        return out
    pa, lda, ta = _operand(a)
    pb, ldb, tb = _operand(b)
    pc, ldc, tc = _operand(out)
    if tc != _NO_TRANS:
        raise ValueError("the output's rows must be contiguous")
    _library().cblas_sgemm(_ROW_MAJOR, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc)
    return out
