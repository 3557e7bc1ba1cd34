"""One worker thread per core, for numpy and MKL work split into equal shares.

numpy's element-wise operations run on one core, and MKL spreads each product over all of
them; between products, the other cores idle. Splitting a whole stretch of work (products
and element-wise passes alike) into one share per core, each worker running MKL on its own
core, keeps every core busy. numpy and ctypes release the GIL while they compute, so plain
threads run in parallel. The workers never touch MLX.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import mkl_gemm

_pool: ThreadPoolExecutor | None = None


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _the_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            cores(), thread_name_prefix="asr-core", initializer=mkl_gemm.use_one_thread
        )
    return _pool


def run_shares(task: Callable[[int], None], shares: int) -> None:
    """task(0) ... task(shares - 1) on the workers (shares beyond the number of cores wait
    for a free one), returning when all are done; the first exception raised by a share is
    raised here. Shares must not wait for each other."""
    if shares == 1:
        task(0)
        return
    for future in [_the_pool().submit(task, i) for i in range(shares)]:
        future.result()


@atexit.register
def _shut_down() -> None:
    if _pool is not None:
        _pool.shutdown(wait=False)


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
