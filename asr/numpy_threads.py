"""numpy's own BLAS (OpenBLAS) on one thread, for live streaming.

The engine's numpy products are tiny (the decoder's matrix-vector steps, small windows).
OpenBLAS splits them over its threads, which spin while they wait for work; when the cores
are also busy with something else (MKL's threads running the encoder, the meeting app, a
browser), the spinning threads take turns with the real work. Measured on a 2-core machine
with one other busy process: a streaming update of the 0.6b model took 1.42 s with numpy's
default two threads and 0.52 s with one.

The limit is process-wide (OpenBLAS has one thread count), so only the live engine sets it.
"""

from __future__ import annotations


def limit_numpy_blas_threads() -> bool:
    """Sets OpenBLAS (numpy's BLAS) to one thread; MKL, which serves MLX, is left alone.
    Returns whether a library was limited."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return False
    selection = ThreadpoolController().select(internal_api="openblas")
    if not selection.lib_controllers:
        return False
    selection.limit(limits=1)
    return True
