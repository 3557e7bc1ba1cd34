"""Load an optimized BLAS for MLX's Linux CPU backend before MLX itself is imported.

MLX's Linux CPU wheel links a reference BLAS (a few GFLOP/s). Its library resolves
`cblas_sgemm` through the global symbol scope first, so a BLAS loaded earlier with
RTLD_GLOBAL (Intel MKL's single dynamic library, installed from PyPI as `mkl`) serves every
matrix product instead. Where no such library is installed, or MLX was already imported,
nothing changes and the reference BLAS is used.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

_loaded: str | None = None


def _candidates() -> list[str]:
    names = []
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, os.path.expanduser("~/.local")]):
        names += sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")), reverse=True)
    return names


def load_fast_blas() -> str | None:
    """Returns the path of the BLAS now serving MLX's matrix products, or None."""
    global _loaded
    if _loaded is not None or not sys.platform.startswith("linux"):
        return _loaded
    if os.environ.get("PARAKEET_NO_FAST_BLAS") or "mlx.core" in sys.modules:
        return None
    # MKL's default threading layer is Intel OpenMP, which is installed beside it.
    os.environ.setdefault("MKL_THREADING_LAYER", "INTEL")
    for path in _candidates():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _loaded = path
        break
    return _loaded


def declare_cblas_gemm(function: ctypes._CFuncPtr) -> ctypes._CFuncPtr:
    """Declares the arguments of one of MKL's `cblas_*gemm*` functions (layout, transa,
    transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), to be called with pointers."""
    function.restype = None
    function.argtypes = [ctypes.c_int] * 6 + [
        ctypes.c_float,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_float,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    return function


def blas_in_use() -> str:
    return os.path.basename(_loaded) if _loaded else "reference"
