"""Streaming encoder layers for the CPU: numpy, with bfloat16 projection weights.

A streaming update pushes a few dozen frames through every layer. Two costs dominate on a
CPU: reading every projection weight once (the products are bound by memory, not
arithmetic), and the dozens of small operations around them. The weights are kept in
bfloat16 and multiplied by MKL (asr.bf16_matmul), which halves the bytes read; the small
operations run in numpy, where each costs microseconds, instead of through MLX's CPU
scheduler, which costs more per operation than these operations themselves (measured on
the 0.6b model, 26 frames per update: about 8 ms per layer around the products in MLX).

The layers compute what ConformerBlock.stream computes (asr.conformer), with the caches as
numpy arrays.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .attention import AttentionContext, window_band
from .bf16_matmul import Bf16Matrix
from .fast_math import silu_numpy


def _np(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32), dtype=np.float32)


class Float32Matrix:
    """Bf16Matrix's float32 twin (the same products as MLX's, for checking)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None):
        self.weight_t = np.ascontiguousarray(weight.T)
        self.bias = bias

    @property
    def nbytes(self) -> int:
        return self.weight_t.nbytes + (0 if self.bias is None else self.bias.nbytes)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x @ self.weight_t
        return out if self.bias is None else out + self.bias


def _matrix(layer, bf16: bool) -> Bf16Matrix | Float32Matrix:
    weight = _np(layer.weight)
    if weight.ndim == 3:  # Conv1d (out, kernel 1, in)
        weight = weight[:, 0, :]
    bias = _np(layer.bias) if "bias" in layer else None
    return Bf16Matrix(weight, bias) if bf16 else Float32Matrix(weight, bias)


class _LayerNorm:
    def __init__(self, norm):
        self.weight, self.bias, self.eps = _np(norm.weight), _np(norm.bias), norm.eps

    def __call__(self, x: np.ndarray) -> np.ndarray:
        centred = x - x.mean(axis=-1, keepdims=True)
        variance = np.square(centred).mean(axis=-1, keepdims=True)
        return centred / np.sqrt(variance + self.eps) * self.weight + self.bias


class _FeedForward:
    def __init__(self, ff, bf16: bool):
        self.linear1, self.linear2 = _matrix(ff.linear1, bf16), _matrix(ff.linear2, bf16)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.linear2(silu_numpy(self.linear1(x)))


class NumpyLayerCache:
    """LayerCache's numpy twin for one context.

    Keys and values live in one buffer (H, capacity, D): the settled frames' (at most
    `left` of them), then room for a window. A window's keys are written right after the
    settled ones, so attention reads one contiguous slice, and settling the window's first
    frames only moves a pointer; the buffer is compacted when the room runs out."""

    def __init__(self, context: AttentionContext, keep_conv: int):
        self.context = context
        self.keep_attention, self.keep_conv = context[0], keep_conv
        self._keys: np.ndarray | None = None
        self._values: np.ndarray | None = None
        self._start = self._end = 0  # settled frames: buffer[:, start:end]
        self.conv: np.ndarray | None = None  # (<= radius, C) settled conv inputs

    def window(self, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The settled keys and values followed by the window's (H, T, D) ones."""
        t = k.shape[1]
        if self._keys is None or self._end + t > self._keys.shape[1]:
            self._make_room(k, t)
        self._keys[:, self._end : self._end + t] = k
        self._values[:, self._end : self._end + t] = v
        return self._keys[:, self._start : self._end + t], self._values[
            :, self._start : self._end + t
        ]

    def _make_room(self, k: np.ndarray, t: int) -> None:
        settled = self._end - self._start
        capacity = max(2 * self.keep_attention, settled + 2 * t)
        heads, _, dim = k.shape
        keys = np.empty((heads, capacity, dim), np.float32)
        values = np.empty((heads, capacity, dim), np.float32)
        if settled:
            keys[:, :settled] = self._keys[:, self._start : self._end]
            values[:, :settled] = self._values[:, self._start : self._end]
        self._keys, self._values, self._start, self._end = keys, values, 0, settled

    def settle(self, frames: int, conv: np.ndarray) -> None:
        """The window's first `frames` (already in the buffer) join the settled ones."""
        self._end += frames
        self._start = max(self._start, self._end - self.keep_attention)
        if len(conv):
            joined = conv if self.conv is None else np.concatenate([self.conv, conv])
            self.conv = joined[max(0, len(joined) - self.keep_conv) :].copy()


class NumpyStreamingLayer:
    """One ConformerBlock for streaming windows (T, d) in numpy."""

    def __init__(self, block, bf16: bool = True):
        att, conv = block.self_attn, block.conv
        self.norm_ff1 = _LayerNorm(block.norm_feed_forward1)
        self.ff1 = _FeedForward(block.feed_forward1, bf16)
        self.norm_att = _LayerNorm(block.norm_self_att)
        self.q, self.k, self.v = (
            _matrix(m, bf16) for m in (att.linear_q, att.linear_k, att.linear_v)
        )
        self.out = _matrix(att.linear_out, bf16)
        self.heads, self.head_dim, self.scale = att.n_heads, att.head_dim, att.scale
        self.bias_u, self.bias_v = _np(att.pos_bias_u), _np(att.pos_bias_v)
        self._attention = att
        self._positions: dict[AttentionContext, np.ndarray] = {}
        self.norm_conv = _LayerNorm(block.norm_conv)
        self.pointwise1 = _matrix(conv.pointwise_conv1, bf16)
        self.pointwise2 = _matrix(conv.pointwise_conv2, bf16)
        self.depthwise = _np(conv.depthwise_conv.weight)[:, :, 0].T.copy()  # (kernel, C)
        dw = conv.depthwise_conv
        self.depthwise_bias = _np(dw.bias) if "bias" in dw else None
        bn = conv.batch_norm
        self.bn_scale = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
        self.bn_shift = _np(bn.bias) - _np(bn.running_mean) * self.bn_scale
        self.norm_ff2 = _LayerNorm(block.norm_feed_forward2)
        self.ff2 = _FeedForward(block.feed_forward2, bf16)
        self.norm_out = _LayerNorm(block.norm_out)

    @property
    def conv_radius(self) -> int:
        return (len(self.depthwise) - 1) // 2

    def positions(self, context: AttentionContext) -> np.ndarray:
        """The band's projected positions (H, D, L+R+1) for this context."""
        if context not in self._positions:
            self._positions[context] = _np(self._attention.projected_positions(context))
        return self._positions[context]

    def _attend(self, x: np.ndarray, cache: NumpyLayerCache):
        t = len(x)
        positions = self.positions(cache.context)
        q = self.q(x).reshape(t, self.heads, self.head_dim)
        k = self.k(x).reshape(t, self.heads, self.head_dim).transpose(1, 0, 2)
        keys, values = cache.window(k, self.v(x).reshape(t, self.heads, -1).transpose(1, 0, 2))
        q_u = np.ascontiguousarray((q + self.bias_u).transpose(1, 0, 2))
        q_v = np.ascontiguousarray((q + self.bias_v).transpose(1, 0, 2))
        column, mask = window_band(t, keys.shape[1], cache.context[0], positions.shape[-1])
        by_distance = np.matmul(q_v, positions)  # (H, T, L+R+1)
        scores = np.matmul(q_u, keys.transpose(0, 2, 1))
        scores += np.take_along_axis(by_distance, np.broadcast_to(column, scores.shape), axis=-1)
        scores *= np.float32(self.scale)
        scores += mask
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        out = np.matmul(scores, values).transpose(1, 0, 2).reshape(t, -1)
        return self.out(out)

    def _convolve(self, gated: np.ndarray, past: np.ndarray | None) -> np.ndarray:
        """'Same' depthwise convolution with the cached inputs before the window and zeros
        for frames not heard yet."""
        radius, t = self.conv_radius, len(gated)
        have = 0 if past is None else min(radius, len(past))
        padded = np.zeros((radius + t + radius, gated.shape[1]), np.float32)
        if have:
            padded[radius - have : radius] = past[len(past) - have :]
        padded[radius : radius + t] = gated
        out = padded[0:t] * self.depthwise[0]
        for i in range(1, len(self.depthwise)):
            out += padded[i : i + t] * self.depthwise[i]
        if self.depthwise_bias is not None:
            out += self.depthwise_bias
        return out

    def stream(self, x: np.ndarray, cache: NumpyLayerCache, settle: int) -> np.ndarray:
        """x: (T, d) after the frames the cache holds; the first `settle` frames then join
        the cache."""
        x = x + 0.5 * self.ff1(self.norm_ff1(x))
        x = x + self._attend(self.norm_att(x), cache)
        a, b = np.split(self.pointwise1(self.norm_conv(x)), 2, axis=-1)
        gated = a / (1.0 + np.exp(-b))
        convolved = self._convolve(gated, cache.conv) * self.bn_scale + self.bn_shift
        x = x + self.pointwise2(silu_numpy(convolved))
        x = x + 0.5 * self.ff2(self.norm_ff2(x))
        cache.settle(settle, gated[:settle])
        return self.norm_out(x)


class NumpyStreamingEncoder:
    """The encoder's layers for streaming on the CPU; each stream keeps its own caches."""

    def __init__(self, encoder, bf16: bool = True):
        self.layers = [NumpyStreamingLayer(block, bf16) for block in encoder.layers]
        self.key = self.key_of(encoder)

    @staticmethod
    def key_of(encoder) -> tuple[int, ...]:
        return tuple(id(v) for _, v in tree_flatten([b.parameters() for b in encoder.layers]))

    @property
    def nbytes(self) -> int:
        return sum(
            m.nbytes
            for layer in self.layers
            for m in (layer.q, layer.k, layer.v, layer.out, layer.pointwise1, layer.pointwise2)
            + (layer.ff1.linear1, layer.ff1.linear2, layer.ff2.linear1, layer.ff2.linear2)
        )

    def new_caches(self, context: AttentionContext) -> list[NumpyLayerCache]:
        return [NumpyLayerCache(context, layer.conv_radius) for layer in self.layers]

    def __call__(self, x: np.ndarray, caches: list[NumpyLayerCache], settle: int) -> np.ndarray:
        for layer, cache in zip(self.layers, caches, strict=True):
            x = layer.stream(x, cache, settle)
        return x


def numpy_streaming_encoder(encoder) -> NumpyStreamingEncoder:
    """The encoder's numpy layers, made once (its weights converted) and again whenever the
    weights change."""
    cached = getattr(encoder, "_numpy_streaming", None)
    if cached is None or cached.key != NumpyStreamingEncoder.key_of(encoder):
        cached = NumpyStreamingEncoder(encoder)
        object.__setattr__(encoder, "_numpy_streaming", cached)
    return cached
