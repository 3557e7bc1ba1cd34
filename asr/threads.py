"""MLX work on threads other than the main one.

MLX keeps streams per thread and, since 0.32, expects each thread that used it to destroy
them before it ends (`mx.clear_streams`); otherwise the process can abort at exit
("terminate called without an active exception"), after all the work is done.
"""

from __future__ import annotations

import mlx.core as mx


def release_thread_streams() -> None:
    """Call last on any thread (not the main one) that ran MLX operations."""
    clear = getattr(mx, "clear_streams", None)
    if clear is not None:
        clear()
