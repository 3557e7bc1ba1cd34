"""The CPU fast paths for exponential activations agree with MLX's own ops."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from asr import fast_math


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_activations_match_mlx(dtype):
    x = (mx.random.normal((2, 37, 64)) * 6).astype(dtype)
    pairs = [
        (fast_math.silu(x), nn.silu(x)),
        (fast_math.glu(x), nn.glu(x, axis=-1)),
        (fast_math.softmax(x), mx.softmax(x, axis=-1)),
    ]
    tolerance = 1e-5 if dtype == mx.float32 else 2e-2
    for ours, theirs in pairs:
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        difference = np.abs(np.array(ours.astype(mx.float32)) - np.array(theirs.astype(mx.float32)))
        assert difference.max() < tolerance * max(1.0, float(mx.abs(theirs).max()))


def test_softmax_of_extreme_scores_stays_finite():
    x = mx.array([[1e4, -1e4, 0.0], [-np.inf, 0.0, 0.0]], dtype=mx.float32)
    out = np.array(fast_math.softmax(x))
    assert np.isfinite(out).all()
    assert np.allclose(out.sum(axis=-1), 1.0)
