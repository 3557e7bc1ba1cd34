"""Element-wise exp and the sigmoid gates through MKL's vector math (VML).

numpy's exp runs at about a third of VML's speed on these sizes, and both slow down several
times where results fall below float32's normal range (scores far below a row's maximum,
gates of large activations). VML is asked to flush such results to zero, which changes
nothing a softmax or a gate can show (they are below 1e-38), and to skip its error
reporting. Available where asr.blas loaded MKL (asr.mkl_gemm).
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from . import mkl_gemm

# VML_LA (accurate to a few ulp) | VML_ERRMODE_IGNORE | VML_FTZDAZ_ON
_MODE = 0x1 | 0x100 | 0x280000
# VML's division gives NaN for an infinite divisor: exp's argument stays below float32's
# overflow (exp(88) ~ 1.7e38), where a gate is 1e-38 of its input anyway.
_EXP_LIMIT = np.float32(88.0)


@functools.cache
def _functions():
    library = mkl_gemm._library()
    if library is None:
        return None
    try:
        exp, linear_frac = library.vmsExp, library.vmsLinearFrac
    except AttributeError:
        return None
    exp.restype = linear_frac.restype = None
    exp.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    linear_frac.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    linear_frac.argtypes += [ctypes.c_float] * 4 + [ctypes.c_void_p, ctypes.c_int64]
    return exp, linear_frac


def available() -> bool:
    return _functions() is not None


def _contiguous(*arrays: np.ndarray) -> None:
    for a in arrays:
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"expected contiguous float32 arrays, got {a.dtype} {a.strides}")


def exp(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = exp(a); out may be a itself."""
    _contiguous(a, out)
    _functions()[0](a.size, a.ctypes.data, out.ctypes.data, _MODE)
    return out


def gate_of_negated(a: np.ndarray, negated: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a * sigmoid(-negated) = a / (1 + exp(negated)); `negated` is overwritten, and
    out may be it. silu(x) is gate_of_negated(x, -x); a gated linear unit's gate b comes
    as -b from its product (alpha -1), which costs nothing."""
    _contiguous(a, negated, out)
    exp, linear_frac = _functions()
    np.minimum(negated, _EXP_LIMIT, out=negated)
    exp(negated.size, negated.ctypes.data, negated.ctypes.data, _MODE)
    linear_frac(
        a.size, a.ctypes.data, negated.ctypes.data, 1.0, 0.0, 1.0, 1.0, out.ctypes.data, _MODE
    )
    return out


def silu_of_negated(negated: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """silu(x) from -x, written over `negated`; scratch is shaped like it."""
    _contiguous(negated, scratch)
    exp, linear_frac = _functions()
    np.minimum(negated, _EXP_LIMIT, out=scratch)
    exp(negated.size, scratch.ctypes.data, scratch.ctypes.data, _MODE)
    # (-1 * -x + 0) / (1 * exp(-x) + 1)
    linear_frac(
        negated.size,
        negated.ctypes.data,
        scratch.ctypes.data,
        -1.0,
        0.0,
        1.0,
        1.0,
        negated.ctypes.data,
        _MODE,
    )
    return negated
