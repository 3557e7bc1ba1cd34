"""The encoder's linear projections, optionally through bfloat16 copies of their weights.

Encoder modules call `project(layer, x)` instead of `layer(x)`. Normally that is the same
thing. Inside `Bf16Projections.active()` (per thread: the engine thread can stream in
bfloat16 while another thread transcribes a file in float32), the feed-forward, attention
and pointwise-convolution products go through `asr.bf16_matmul` instead, which halves the
bytes a CPU reads per product: what bounds a streaming update's speed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from . import bf16_matmul

_active: ContextVar[dict[int, tuple[int, bf16_matmul.Bf16Matrix]] | None] = ContextVar(
    "bf16_projections", default=None
)


def project(layer: nn.Module, x: mx.array) -> mx.array:
    """layer(x) for an nn.Linear or a kernel-1 nn.Conv1d."""
    table = _active.get()
    if table is not None:
        entry = table.get(id(layer))
        if entry is not None and entry[0] == id(layer.weight) and x.dtype == mx.float32:
            return mx.array(entry[1](np.asarray(x)))
    return layer(x)


def _projection_layers(encoder) -> list[nn.Module]:
    layers = []
    for block in encoder.layers:
        layers += [
            block.feed_forward1.linear1,
            block.feed_forward1.linear2,
            block.self_attn.linear_q,
            block.self_attn.linear_k,
            block.self_attn.linear_v,
            block.self_attn.linear_out,
            block.conv.pointwise_conv1,
            block.conv.pointwise_conv2,
            block.feed_forward2.linear1,
            block.feed_forward2.linear2,
        ]
    return layers


def _matrix(layer: nn.Module) -> bf16_matmul.Bf16Matrix:
    weight = np.asarray(layer.weight.astype(mx.float32))
    if weight.ndim == 3:  # Conv1d (out, kernel 1, in)
        weight = weight[:, 0, :]
    bias = np.asarray(layer.bias.astype(mx.float32)) if "bias" in layer else None
    return bf16_matmul.Bf16Matrix(weight, bias)


class Bf16Projections:
    """bfloat16 copies of one encoder's projection weights (half their float32 size)."""

    def __init__(self, encoder):
        self._table = {
            id(layer): (id(layer.weight), _matrix(layer)) for layer in _projection_layers(encoder)
        }
        self.key = self.key_of(encoder)

    @staticmethod
    def key_of(encoder) -> tuple[int, ...]:
        return tuple(id(layer.weight) for layer in _projection_layers(encoder))

    @property
    def nbytes(self) -> int:
        return sum(matrix.nbytes for _, matrix in self._table.values())

    @contextmanager
    def active(self) -> Iterator[None]:
        token = _active.set(self._table)
        try:
            yield
        finally:
            _active.reset(token)


def bf16_projections(encoder) -> Bf16Projections:
    """The encoder's bfloat16 copies, made once and again whenever its weights change."""
    cached = getattr(encoder, "_bf16_projections", None)
    if cached is None or cached.key != Bf16Projections.key_of(encoder):
        cached = Bf16Projections(encoder)
        object.__setattr__(encoder, "_bf16_projections", cached)
    return cached
