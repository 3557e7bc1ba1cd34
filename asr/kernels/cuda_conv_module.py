"""The middle of a conformer convolution module for a streaming window, in one CUDA kernel.

Between its two pointwise products the module gates (GLU), convolves each channel over time
(depthwise, kernel 2R+1), batch-normalizes and applies SiLU. For a window the time axis is
[R cached inputs, the window's gated frames, R zeros], frames past the window's real ones
gated to zero as offline padding would be. The batch norm is folded into the depthwise
weights beforehand (`fold_batch_norm`). The same launch writes the next update's cache: the
R inputs after the first `settle` frames.
"""

from __future__ import annotations

import mlx.core as mx

from .cuda_common import HEADER, custom_kernel

THREADS = 64
INPUTS = ["h", "conv", "weight", "bias", "counts"]
ROWS = 4  # output frames per block: few, so that a short window still makes many blocks

# Template: T, C (channels), R (radius), ROWS. h (NQ, 2C) the first pointwise product;
# conv (R, C) cached gated inputs; weight (2R+1, C), bias (C) float32 with the batch norm
# folded in; counts int32 [real frames, settle].
SOURCE = r"""
constexpr int KS = 2 * R + 1;
constexpr int SPAN = ROWS + 2 * R;
const int NQ = h_shape[0];
const int c = blockIdx.x * blockDim.x + threadIdx.x;
const int i0 = blockIdx.y * ROWS;
const int frames = counts[0];
const int settle = counts[1];
if (c >= C) return;

// Input q of [cache, gated window, zeros], rounded to T as the cache stores it.
auto input = [&](int q) -> float {
  if (q < R) return la_to_float(conv[(size_t)q * C + c]);
  const int j = q - R;
  if (j >= frames) return 0.f;
  const float a = la_to_float(h[(size_t)j * 2 * C + c]);
  const float b = la_to_float(h[(size_t)j * 2 * C + C + c]);
  return la_to_float(static_cast<T>(a / (1.f + __expf(-b))));
};

if (blockIdx.y == 0) {
  for (int r = 0; r < R; ++r) new_conv[(size_t)r * C + c] = static_cast<T>(input(settle + r));
}

float window[SPAN];
#pragma unroll
for (int q = 0; q < SPAN; ++q) window[q] = i0 + q < NQ + 2 * R ? input(i0 + q) : 0.f;
float w[KS];
#pragma unroll
for (int k = 0; k < KS; ++k) w[k] = weight[k * C + c];
const float b = bias[c];
#pragma unroll
for (int r = 0; r < ROWS; ++r) {
  if (i0 + r >= NQ) break;
  float s = b;
#pragma unroll
  for (int k = 0; k < KS; ++k) s += window[r + k] * w[k];
  y[(size_t)(i0 + r) * C + c] = static_cast<T>(s / (1.f + __expf(-s)));
}
"""


def fold_batch_norm(
    weight: mx.array,
    bias: mx.array,
    mean: mx.array,
    var: mx.array,
    scale: mx.array,
    shift: mx.array,
    eps: float,
) -> tuple[mx.array, mx.array]:
    """Depthwise weight (2R+1, C) and bias (C) with the batch norm after them folded in,
    in float32."""
    f32 = mx.float32
    factor = scale.astype(f32) * mx.rsqrt(var.astype(f32) + eps)
    folded_weight = weight.astype(f32) * factor
    folded_bias = (bias.astype(f32) - mean.astype(f32)) * factor + shift.astype(f32)
    return folded_weight, folded_bias


def conv_module_middle(
    h: mx.array, conv: mx.array, weight: mx.array, bias: mx.array, counts: mx.array
) -> tuple[mx.array, mx.array]:
    """h (NQ, 2C) the first pointwise product of the window; conv (R, C) the cache; weight
    (2R+1, C) and bias (C) folded (`fold_batch_norm`); counts int32 [frames, settle].
    Returns SiLU(BN(depthwise(GLU(h)))) (NQ, C) and the next cache (R, C)."""
    nq, channels = h.shape[0], h.shape[1] // 2
    radius = conv.shape[0]
    kernel = custom_kernel("conv_module_middle", INPUTS, ["y", "new_conv"], SOURCE, HEADER)
    y, new_conv = kernel(
        inputs=[h, conv, weight, bias, counts],
        template=[("T", h.dtype), ("C", channels), ("R", radius), ("ROWS", ROWS)],
        grid=(channels, -(-nq // ROWS), 1),
        threadgroup=(THREADS, 1, 1),
        output_shapes=[(nq, channels), conv.shape],
        output_dtypes=[h.dtype, conv.dtype],
    )
    return y, new_conv
