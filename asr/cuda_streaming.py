"""Streaming encoder layers on an NVIDIA GPU, as 15 kernels a layer.

An update pushes a few dozen frames through every layer, so its cost is the number of
operations, not their arithmetic: on an H200 a cuBLAS product of 32 rows costs ~25 us (MLX
records it into a CUDA graph through stream capture) and an MLX element-wise kernel ~6 us,
against ~4 us for a kernel of our own. The MLX-compiled layers (asr.compiled_streaming)
still run about 30 operations a layer, 11 of them products. Here a layer is:

- the products as `skinny_linear`, with bias, SiLU and the residual connection folded in
  (8 launches);
- attention over the cached keys and the window, plus the next key/value cache, as one
  kernel (`window_attention`);
- GLU, depthwise convolution, batch norm and SiLU, plus the next convolution cache, as
  one kernel (`conv_module_middle`);
- MLX's fused layer norm (5 launches).

Caches, window padding and masks are those of asr.compiled_streaming (fixed shapes, one
compiled function for all layers). Padded frames are kept out of every real frame's
result by the key mask and the convolution's frame count; their own rows stay finite and
are cut off at the end.
"""

from __future__ import annotations

import os

import mlx.core as mx
import numpy as np

from .attention import AttentionContext
from .compiled_streaming import (
    NEG_INF,
    CompiledStreamingEncoder,
    FixedShapeCache,
    _bias,
    _pointwise,
    attention_weights,
    feed_forward_weights,
    make_encoder_step,
    padded_length,
)
from .kernels import cuda_common
from .kernels.cuda_conv_module import conv_module_middle, fold_batch_norm
from .kernels.cuda_skinny_gemm import skinny_linear
from .kernels.cuda_window_attention import window_attention

CONSTANTS = 3  # key_bias, counts, params: the inputs every layer shares
MAX_BAND = 8192  # the attention kernel keeps a band's scores in shared memory


def _layer_norm(x: mx.array, weight: mx.array, bias: mx.array, eps: float) -> mx.array:
    return mx.fast.layer_norm(x, weight, bias, eps)


def _make_step(eps: float):
    def step(x, key_values, conv, key_bias, counts, params, *w):
        (
            ff1_nw, ff1_nb, ff1_w1, ff1_b1, ff1_w2, ff1_b2,
            att_nw, att_nb, w_qkv, b_qkv, wo, bo, bias_u, bias_v, positions,
            conv_nw, conv_nb, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b,
            ff2_nw, ff2_nb, ff2_w1, ff2_b1, ff2_w2, ff2_b2,
            out_nw, out_nb,
        ) = w  # fmt: skip
        h = skinny_linear(_layer_norm(x, ff1_nw, ff1_nb, eps), ff1_w1, ff1_b1, silu=True)
        x = skinny_linear(h, ff1_w2, ff1_b2, residual=x, residual_scale=0.5)

        qkv = skinny_linear(_layer_norm(x, att_nw, att_nb, eps), w_qkv, b_qkv)
        attended, key_values = window_attention(
            qkv, key_values, bias_u, bias_v, positions, key_bias, counts, params
        )
        x = skinny_linear(attended, wo, bo, residual=x)

        h = skinny_linear(_layer_norm(x, conv_nw, conv_nb, eps), pw1_w, pw1_b)
        y, conv = conv_module_middle(h, conv, dw_w, dw_b, counts)
        x = skinny_linear(y, pw2_w, pw2_b, residual=x)

        h = skinny_linear(_layer_norm(x, ff2_nw, ff2_nb, eps), ff2_w1, ff2_b1, silu=True)
        x = skinny_linear(h, ff2_w2, ff2_b2, residual=x, residual_scale=0.5)
        return _layer_norm(x, out_nw, out_nb, eps), key_values, conv

    return step


def _layer_weights(block, context: AttentionContext) -> tuple[mx.array, ...]:
    """The arrays `step` unpacks, in its order, for one ConformerBlock and context."""
    att, conv = block.self_attn, block.conv
    d = att.linear_q.weight.shape[0]
    dtype = att.linear_q.weight.dtype
    # positions (H, L+R+1, head_dim): a key's position row is contiguous
    positions = mx.contiguous(att.projected_positions(context).transpose(0, 2, 1))
    bn = conv.batch_norm
    dw = conv.depthwise_conv
    dw_w, dw_b = fold_batch_norm(
        dw.weight[:, :, 0].T, _bias(dw, d, dtype),
        bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps,
    )  # fmt: skip
    return (
        *feed_forward_weights(block.norm_feed_forward1, block.feed_forward1),
        *attention_weights(block, positions),
        block.norm_conv.weight, block.norm_conv.bias,
        *_pointwise(conv.pointwise_conv1),
        dw_w, dw_b,
        *_pointwise(conv.pointwise_conv2),
        *feed_forward_weights(block.norm_feed_forward2, block.feed_forward2),
        block.norm_out.weight, block.norm_out.bias,
    )  # fmt: skip


def disabled() -> bool:
    """PARAKEET_NO_CUDA_STREAMING=1 keeps the MLX-compiled layers (for comparison)."""
    return os.environ.get("PARAKEET_NO_CUDA_STREAMING", "") not in ("", "0")


def supports(encoder) -> bool:
    """An NVIDIA GPU, 16-bit weights, and sizes the kernels take."""
    if disabled() or not cuda_common.is_available():
        return False
    first = encoder.layers[0]
    att = first.self_attn
    d = att.n_heads * att.head_dim
    d_ff = first.feed_forward1.linear1.weight.shape[0]
    return (
        att.linear_q.weight.dtype in (mx.bfloat16, mx.float16)
        and d % 32 == 0
        and d_ff % 32 == 0
        and first.conv.kernel_size % 2 == 1
    )


class CudaStreamingEncoder:
    """The encoder's layers for streaming through the kernels above; each stream keeps its
    own caches (`new_caches`). Same interface as asr.compiled_streaming's encoder."""

    def __init__(self, encoder, compile: bool = True):
        self.encoder = encoder
        first = encoder.layers[0]
        att, conv = first.self_attn, first.conv
        self.heads, self.head_dim = att.n_heads, att.head_dim
        self.radius = (conv.kernel_size - 1) // 2
        self.dtype = att.linear_q.weight.dtype
        step = make_encoder_step(_make_step(first.norm_out.eps), len(encoder.layers), CONSTANTS)
        self._step = mx.compile(step) if compile else step
        self._params = mx.array([att.scale], mx.float32)
        self._weights: tuple[AttentionContext, list[tuple[mx.array, ...]]] | None = None

    def weights(self, context: AttentionContext) -> list[tuple[mx.array, ...]]:
        """Every layer's inputs for this context; only the last context's are kept."""
        if self._weights is None or self._weights[0] != context:
            if sum(context) + 1 > MAX_BAND:
                raise ValueError(f"context {context} is wider than {MAX_BAND} frames")
            layers = [_layer_weights(b, context) for b in self.encoder.layers]
            mx.eval(layers)
            self._weights = (context, layers)
        return self._weights[1]

    def new_caches(self, context: AttentionContext) -> list[FixedShapeCache]:
        left = context[0]
        channels = self.heads * self.head_dim
        return [
            FixedShapeCache(
                key_values=mx.zeros((2, self.heads, left, self.head_dim), self.dtype),
                conv=mx.zeros((self.radius, channels), self.dtype),
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
        x = x[0].astype(self.dtype)
        if padded > t:
            x = mx.pad(x, [(0, padded - t), (0, 0)])
        left = context[0]
        filled = caches[0].filled
        key_bias = np.zeros(left + padded, np.float32)
        key_bias[: left - filled] = NEG_INF
        key_bias[left + t :] = NEG_INF
        constants = (mx.array(key_bias), mx.array([t, settle], mx.int32), self._params)
        inputs = [x, *constants]
        for cache, weights in zip(caches, self.weights(context), strict=True):
            inputs += [cache.key_values, cache.conv, *weights]
        x, *states = self._step(*inputs)
        for i, cache in enumerate(caches):
            cache.key_values, cache.conv = states[2 * i : 2 * i + 2]
            cache.filled = min(left, filled + settle)
        return x[None, :t]


def cuda_streaming_encoder(encoder) -> CudaStreamingEncoder | None:
    """The encoder's kernel streaming layers, made once per set of weights; None where
    they don't apply (no NVIDIA GPU, float32 weights, odd sizes)."""
    if not supports(encoder):
        return None
    key = CompiledStreamingEncoder.key_of(encoder)
    cached = getattr(encoder, "_cuda_streaming", None)
    if cached is None or cached[0] != key:
        cached = (key, CudaStreamingEncoder(encoder))
        object.__setattr__(encoder, "_cuda_streaming", cached)
    return cached[1]
