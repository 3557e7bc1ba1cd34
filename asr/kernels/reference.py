"""Local attention written as its definition: full attention with the band masked out.

Quadratic in length; it exists to check the real implementations against, on small inputs.
The reference computes in float64 with numpy, so it owes nothing to any device's
arithmetic (MLX rounds float32 products to TF32 on NVIDIA GPUs, for one).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def band_bias_to_full(bias: mx.array, left: int, right: int) -> mx.array:
    """Places a (.., T, left+right+1) band term at its diagonals of a (.., T, T) matrix.

    Column c of query i's band belongs to key j = i - left + c; elsewhere the result is 0.
    """
    t = bias.shape[-2]
    i = mx.arange(t)[:, None]
    j = mx.arange(t)[None, :]
    c = j - i + left
    inside = (c >= 0) & (c <= left + right)
    cols = mx.broadcast_to(mx.clip(c, 0, left + right), (*bias.shape[:-1], t))
    return mx.where(inside, mx.take_along_axis(bias, cols, axis=-1), 0.0)


def _float64(x: mx.array) -> np.ndarray:
    return np.array(x.astype(mx.float32), dtype=np.float64)


def reference_local_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    left: int,
    right: int,
    bias: mx.array | None = None,
    key_mask: mx.array | None = None,
    scale: float | None = None,
) -> mx.array:
    """The math of `local_attention` over the full T x T score matrix, in float64."""
    t, d = q.shape[-2], q.shape[-1]
    scale = d**-0.5 if scale is None else scale
    qf, kf, vf = _float64(q), _float64(k), _float64(v)
    scores = scale * (qf @ kf.swapaxes(-1, -2))
    i = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    offset = j - i + left
    allowed = (offset >= 0) & (offset <= left + right)
    if bias is not None:
        band = _float64(bias)
        cols = np.broadcast_to(np.clip(offset, 0, left + right), (*band.shape[:-1], t))
        scores = scores + np.where(allowed, np.take_along_axis(band, cols, axis=-1), 0.0)
    if key_mask is not None:
        allowed = allowed & np.array(key_mask)[:, None, None, :]
    scores = np.where(allowed, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
    total = weights.sum(axis=-1, keepdims=True)
    out = (weights @ vf) / np.where(total > 0, total, 1.0)
    return mx.array(out.astype(np.float32)).astype(q.dtype)
