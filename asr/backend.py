"""Which device MLX computes on by default, in words for a person."""

from __future__ import annotations

import mlx.core as mx


def backend_name() -> str:
    """ "Metal", "CUDA" or "CPU" (or "GPU" for another kind)."""
    try:
        if mx.default_device().type != mx.DeviceType.gpu:
            return "CPU"
        if mx.metal.is_available():
            return "Metal"
        cuda = getattr(mx, "cuda", None)
        if cuda is not None and cuda.is_available():
            return "CUDA"
        return "GPU"
    except Exception:
        return "CPU"
