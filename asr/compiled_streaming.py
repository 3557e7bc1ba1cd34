"""Streaming encoder layers as compiled MLX graphs of fixed shapes.

A streaming update pushes a few dozen frames through every layer. On a GPU the arithmetic
is nothing; what costs is the ~75 small operations per layer, each built in Python and
launched on its own (measured on an H200 with the 0.6b model: ~10 ms of graph building and
~23 ms of evaluation per update). `mx.compile` traces a function once, fuses its
element-wise chains and replays the trace, but it traces again for every new input shape, and a
stream's shapes change at every update: the caches grow until they hold `left` frames and
the windows vary by a frame or two. So here the shapes are fixed:

- each layer's cache holds exactly `left` keys and values (slots not filled yet are
  masked out of attention) and `radius` convolution inputs (zeros before the stream's
  start, as offline);
- windows are padded to a few lengths; padded frames are masked out of attention, zeroed
  before the convolution and at each layer's output, so the real frames' outputs are those
  of the unpadded window.

All layers are one traced function (weights and caches are its inputs), and settling
frames into the caches is a gather inside the trace, so an update is one compiled call.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .attention import AttentionContext, window_band

NEG_INF = float("-inf")


def compile_pays_off() -> bool:
    """Compiled layers pay off on a GPU, where an update is launch-bound. On a CPU MLX's
    compiled element-wise code was slower than its own kernels for these windows (and
    needs a C++ compiler at run time), so streams there run the layers as they are."""
    return mx.default_device() != mx.cpu


def padded_length(frames: int) -> int:
    """The window length a window of `frames` frames is padded to: a multiple of 8 up to
    64 frames (a few seconds), of 32 beyond, so a stream meets only a handful of shapes."""
    step = 8 if frames <= 64 else 32
    return -(-frames // step) * step


@dataclass
class FixedShapeCache:
    """One layer's settled state, in arrays whose shapes never change."""

    key_values: mx.array  # (1, 2, H, left, head_dim): keys then values, oldest first
    conv: mx.array  # (1, radius, channels), zeros before the stream's start
    filled: int = 0  # how many of the `left` slots hold a settled frame

    def arrays(self) -> list[mx.array]:
        return [self.key_values, self.conv]


def _linear(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    return mx.addmm(bias, x, weight.T)


def _layer_norm(x: mx.array, weight: mx.array, bias: mx.array, eps: float) -> mx.array:
    return mx.fast.layer_norm(x, weight, bias, eps)


@dataclass(frozen=True)
class _Shape:
    """What the traced function needs besides arrays: fixed per model and context."""

    heads: int
    head_dim: int
    scale: float
    kernel: int
    norm_eps: float
    batch_norm_eps: float


def _make_step(shape: _Shape):
    heads, head_dim, scale, kernel = shape.heads, shape.head_dim, shape.scale, shape.kernel
    eps, bn_eps = shape.norm_eps, shape.batch_norm_eps

    def feed_forward(x, norm_w, norm_b, w1, b1, w2, b2):
        hidden = nn.silu(_linear(_layer_norm(x, norm_w, norm_b, eps), w1, b1))
        return _linear(hidden, w2, b2)

    def step(
        x,  # (1, T, d), padded frames zero
        key_values,  # (1, 2, H, P, D)
        conv,  # (1, radius, d)
        frame_valid,  # (T,) bool: real frames
        key_bias,  # (P + T,) 0 for real keys, -inf for empty slots and padding
        band_column,  # (T, P + T) int32
        band_mask,  # (T, P + T) 0 inside the band, -inf outside
        take_keys,  # (P,) int32: the cache after settling, as rows of [keys, window]
        take_conv,  # (radius,) int32: likewise for the convolution inputs
        conv_zeros,  # (1, radius, d) zeros: the frames after the window
        *w,
    ):
        (
            ff1_nw, ff1_nb, ff1_w1, ff1_b1, ff1_w2, ff1_b2,
            att_nw, att_nb, w_qkv, b_qkv, wo, bo, bias_u, bias_v, positions,
            conv_nw, conv_nb, pw1_w, pw1_b, dw_w, dw_b, bn_mean, bn_var, bn_w, bn_b,
            pw2_w, pw2_b,
            ff2_nw, ff2_nb, ff2_w1, ff2_b1, ff2_w2, ff2_b2,
            out_nw, out_nb,
        ) = w  # fmt: skip
        b, t, d = x.shape
        valid = frame_valid[None, :, None]
        x = x + 0.5 * feed_forward(x, ff1_nw, ff1_nb, ff1_w1, ff1_b1, ff1_w2, ff1_b2)

        # attention over the cached keys and the window's own
        h = _layer_norm(x, att_nw, att_nb, eps)
        qkv = _linear(h, w_qkv, b_qkv).reshape(b, t, 3, heads, head_dim)
        q = qkv[:, :, 0]
        # keys and values side by side: one copy joins both to the cache, one gather
        # settles both
        all_kv = mx.concatenate([key_values, qkv[:, :, 1:].transpose(0, 2, 3, 1, 4)], axis=3)
        all_keys, all_values = all_kv[:, 0], all_kv[:, 1]
        q_u = (q + bias_u).transpose(0, 2, 1, 3)
        q_v = (q + bias_v).transpose(0, 2, 1, 3)
        by_distance = q_v @ positions  # (1, H, T, L+R+1)
        column = mx.broadcast_to(band_column, (b, heads, *band_column.shape))
        scores = q_u @ all_keys.transpose(0, 1, 3, 2)
        scores = scores + mx.take_along_axis(by_distance, column, axis=-1)
        scores = scores.astype(mx.float32) * scale + band_mask + key_bias
        probs = mx.softmax(scores, axis=-1).astype(all_values.dtype)
        attended = (probs @ all_values).transpose(0, 2, 1, 3).reshape(b, t, d)
        x = x + _linear(attended, wo, bo)

        # convolution: the cached inputs, the window's, zeros for frames not heard yet
        gated = nn.glu(_linear(_layer_norm(x, conv_nw, conv_nb, eps), pw1_w, pw1_b), axis=-1)
        gated = mx.where(valid, gated, 0)
        inputs = mx.concatenate([conv, gated, conv_zeros], axis=1)
        # slices of the weights, not indexing: an integer index is a gather kernel each
        convolved = inputs[:, 0:t] * dw_w[0:1]
        for i in range(1, kernel):
            convolved = convolved + inputs[:, i : i + t] * dw_w[i : i + 1]
        convolved = convolved + dw_b
        normalized = (convolved - bn_mean) * mx.rsqrt(bn_var + bn_eps) * bn_w + bn_b
        x = x + _linear(nn.silu(normalized), pw2_w, pw2_b)

        x = x + 0.5 * feed_forward(x, ff2_nw, ff2_nb, ff2_w1, ff2_b1, ff2_w2, ff2_b2)
        x = mx.where(valid, _layer_norm(x, out_nw, out_nb, eps), 0)
        new_kv = mx.take(all_kv, take_keys, axis=3)
        new_conv = mx.take(inputs, take_conv, axis=1)
        return x, new_kv, new_conv

    return step


CONSTANTS = 7  # the inputs of `step` after the caches that every layer shares


def make_encoder_step(step, layers: int, constants: int = CONSTANTS):
    """All layers in one function (one compiled call per update): inputs x, the
    `constants` every layer shares, then per layer its keys and values, convolution inputs
    and weights; outputs x and the layers' new caches."""

    def encoder_step(x, *inputs):
        shared, rest = inputs[:constants], inputs[constants:]
        per_layer = len(rest) // layers
        states = []
        for i in range(layers):
            key_values, conv, *weights = rest[i * per_layer : (i + 1) * per_layer]
            x, key_values, conv = step(x, key_values, conv, *shared, *weights)
            states += [key_values, conv]
        return (x, *states)

    return encoder_step


def _bias(module, size: int, dtype) -> mx.array:
    return module.bias if "bias" in module else mx.zeros((size,), dtype)


def _pointwise(conv) -> tuple[mx.array, mx.array]:
    weight = conv.weight[:, 0, :]  # Conv1d (out, kernel 1, in)
    return weight, _bias(conv, weight.shape[0], weight.dtype)


def feed_forward_weights(norm, module) -> tuple[mx.array, ...]:
    """A feed-forward module's norm, products and biases (zeros where it has none)."""
    d_ff, d = module.linear1.weight.shape
    dtype = module.linear1.weight.dtype
    return (
        norm.weight, norm.bias,
        module.linear1.weight, _bias(module.linear1, d_ff, dtype),
        module.linear2.weight, _bias(module.linear2, d, dtype),
    )  # fmt: skip


def attention_weights(block, positions: mx.array) -> tuple[mx.array, ...]:
    """The attention module's norm, one product for queries, keys and values, the output
    product, the position biases, and the band's projected `positions`."""
    att = block.self_attn
    d = att.linear_q.weight.shape[0]
    dtype = att.linear_q.weight.dtype
    projections = (att.linear_q, att.linear_k, att.linear_v)
    return (
        block.norm_self_att.weight, block.norm_self_att.bias,
        mx.concatenate([m.weight for m in projections]),
        mx.concatenate([_bias(m, d, dtype) for m in projections]),
        att.linear_out.weight, _bias(att.linear_out, d, dtype),
        att.pos_bias_u.astype(dtype), att.pos_bias_v.astype(dtype), positions,
    )  # fmt: skip


def _layer_weights(block, context: AttentionContext) -> tuple[mx.array, ...]:
    """The arrays `step` unpacks, in its order, for one ConformerBlock and context."""
    att, conv = block.self_attn, block.conv
    d = att.linear_q.weight.shape[0]
    dtype = att.linear_q.weight.dtype
    attention = attention_weights(block, att.projected_positions(context))
    bn = conv.batch_norm
    dw = conv.depthwise_conv
    convolution = (
        block.norm_conv.weight, block.norm_conv.bias,
        *_pointwise(conv.pointwise_conv1),
        dw.weight[:, :, 0].T, _bias(dw, d, dtype),
        bn.running_mean, bn.running_var, bn.weight, bn.bias,
        *_pointwise(conv.pointwise_conv2),
    )  # fmt: skip
    return (
        *feed_forward_weights(block.norm_feed_forward1, block.feed_forward1),
        *attention,
        *convolution,
        *feed_forward_weights(block.norm_feed_forward2, block.feed_forward2),
        block.norm_out.weight,
        block.norm_out.bias,
    )


class CompiledStreamingEncoder:
    """The encoder's layers for streaming through one compiled MLX function; each stream
    keeps its own caches (`new_caches`)."""

    def __init__(self, encoder):
        self.encoder = encoder
        first = encoder.layers[0]
        att, conv = first.self_attn, first.conv
        self.heads, self.head_dim = att.n_heads, att.head_dim
        self.radius = (conv.kernel_size - 1) // 2
        self.dtype = att.linear_q.weight.dtype
        shape = _Shape(
            heads=att.n_heads,
            head_dim=att.head_dim,
            scale=att.scale,
            kernel=conv.kernel_size,
            norm_eps=first.norm_out.eps,
            batch_norm_eps=conv.batch_norm.eps,
        )
        self._step = mx.compile(make_encoder_step(_make_step(shape), len(encoder.layers)))
        self._conv_zeros = mx.zeros((1, self.radius, att.n_heads * att.head_dim), self.dtype)
        self._weights: tuple[AttentionContext, list[tuple[mx.array, ...]]] | None = None
        self._bands: dict[tuple[int, AttentionContext], tuple[mx.array, mx.array]] = {}
        self.key = self.key_of(encoder)

    @staticmethod
    def key_of(encoder) -> tuple[int, ...]:
        return tuple(id(v) for _, v in tree_flatten([b.parameters() for b in encoder.layers]))

    def weights(self, context: AttentionContext) -> list[tuple[mx.array, ...]]:
        """Every layer's inputs for this context; only the last context's are kept (they
        hold a copy of the query, key and value weights: 150 MB for 0.6b in bfloat16)."""
        if self._weights is None or self._weights[0] != context:
            self._weights = (context, [_layer_weights(b, context) for b in self.encoder.layers])
        return self._weights[1]

    def _band(self, padded: int, context: AttentionContext) -> tuple[mx.array, mx.array]:
        key = (padded, context)
        if key not in self._bands:
            left, right = context
            column, mask = window_band(padded, left + padded, left, left + right + 1)
            self._bands[key] = (mx.array(column.astype(np.int32)), mx.array(mask))
        return self._bands[key]

    def new_caches(self, context: AttentionContext) -> list[FixedShapeCache]:
        left = context[0]
        channels = self.heads * self.head_dim
        return [
            FixedShapeCache(
                key_values=mx.zeros((1, 2, self.heads, left, self.head_dim), self.dtype),
                conv=mx.zeros((1, self.radius, channels), self.dtype),
            )
            for _ in self.encoder.layers
        ]

    def __call__(
        self, x: mx.array, caches: list[FixedShapeCache], settle: int, context: AttentionContext
    ) -> mx.array:
        """x (1, T, d): the window after the frames the caches hold. Returns (1, T, d) and
        settles the first `settle` frames into the caches."""
        t = x.shape[1]
        padded = padded_length(t)
        if padded > t:
            x = mx.pad(x, [(0, 0), (0, padded - t), (0, 0)])
        left = context[0]
        filled = caches[0].filled
        frame_valid = mx.array(np.arange(padded) < t)
        key_bias = np.zeros(left + padded, np.float32)
        key_bias[: left - filled] = NEG_INF
        key_bias[left + t :] = NEG_INF
        constants = (
            frame_valid,
            mx.array(key_bias),
            *self._band(padded, context),
            mx.array(np.arange(left, dtype=np.int32) + settle),
            mx.array(np.arange(self.radius, dtype=np.int32) + settle),
            self._conv_zeros,
        )
        inputs = [x, *constants]
        for cache, weights in zip(caches, self.weights(context), strict=True):
            inputs += [cache.key_values, cache.conv, *weights]
        x, *states = self._step(*inputs)
        for i, cache in enumerate(caches):
            cache.key_values, cache.conv = states[2 * i : 2 * i + 2]
            cache.filled = min(left, filled + settle)
        return x[:, :t]


def compiled_streaming_encoder(encoder) -> CompiledStreamingEncoder:
    """The encoder's compiled streaming layers, made once per set of weights."""
    cached = getattr(encoder, "_compiled_streaming", None)
    if cached is None or cached.key != CompiledStreamingEncoder.key_of(encoder):
        cached = CompiledStreamingEncoder(encoder)
        object.__setattr__(encoder, "_compiled_streaming", cached)
    return cached
