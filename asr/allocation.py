"""Large buffers reused from the heap instead of mapped afresh each time (glibc on Linux).

glibc serves allocations above a threshold (32 MiB at most, adapting) with fresh memory
mappings and unmaps them when freed, so every such array's pages fault in again on first
touch; the heap likewise hands back free memory at its top above 128 KiB. The encoder makes
and frees arrays of tens of megabytes in every layer (attention scores, products, numpy
temporaries), and on the machines measured a fault costs more than the arithmetic that
fills the page: a batched product of the 0.6b model's attention (8 x 750 x 1499 float32)
took 27 ms with fresh pages and 9 ms with reused ones. Raising both thresholds keeps up to
TRIM_BYTES of freed memory for the next array (allocations above MMAP_BYTES still get
mappings of their own). PARAKEET_NO_MALLOC_TUNING=1 leaves glibc's defaults.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_BYTES = 256 << 20
TRIM_BYTES = 512 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_freed_memory() -> bool:
    """Sets glibc's thresholds; returns whether it did."""
    if not sys.platform.startswith("linux") or os.environ.get("PARAKEET_NO_MALLOC_TUNING"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES)
    )
