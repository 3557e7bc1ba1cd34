"""Local attention as one Metal kernel (compiled at run time by MLX).

One simdgroup (32 threads) per query row, each thread holding D/32 of the row's columns.
The row walks its band once with an online softmax: per key, a dot product summed across
the simdgroup, a running maximum and normaliser, and the value row folded into the
accumulator. Neighbouring rows share a threadgroup and read mostly the same keys, which
the GPU's caches then serve. Work is in float32 whatever the input dtype.
"""

from __future__ import annotations

import mlx.core as mx

ROWS_PER_GROUP = 8

# Template constants: T (q/k/v/out type), D, L, R, HAS_BIAS, BIAS_BCAST (bias batch is 1),
# HAS_MASK. params[0] holds the scale (MLX template ints must be >= 0).
SOURCE = r"""
constexpr int M = L + R + 1;
constexpr int NPER = (D + 31) / 32;
const int seq = q_shape[2];
const int heads = q_shape[1];
const int lane = int(thread_position_in_grid.x);
const int qi = int(thread_position_in_grid.y);
const int bh = int(thread_position_in_grid.z);
if (qi >= seq) {
  return;
}
const int bi = bh / heads;
const int hi = bh - bi * heads;
const size_t head_off = size_t(bh) * size_t(seq) * size_t(D);
const float qscale = params[0];

float qv[NPER];
float acc[NPER];
for (int e = 0; e < NPER; ++e) {
  const int d = lane + 32 * e;
  qv[e] = d < D ? float(q[head_off + size_t(qi) * D + d]) * qscale : 0.0f;
  acc[e] = 0.0f;
}

const int j0 = metal::max(0, qi - L);
const int j1 = metal::min(seq - 1, qi + R);
const size_t bias_row = (size_t(BIAS_BCAST ? 0 : bi) * heads + hi) * size_t(seq) + qi;
float m = -INFINITY;
float l = 0.0f;
for (int j = j0; j <= j1; ++j) {
  if (HAS_MASK && !key_mask[size_t(bi) * seq + j]) {
    continue;
  }
  const size_t krow = head_off + size_t(j) * D;
  float part = 0.0f;
  for (int e = 0; e < NPER; ++e) {
    const int d = lane + 32 * e;
    if (d < D) {
      part += qv[e] * float(k[krow + d]);
    }
  }
  float s = metal::simd_sum(part);
  if (HAS_BIAS) {
    s += float(bias[bias_row * M + (j - qi + L)]);
  }
  const float mnew = metal::max(m, s);
  if (mnew == -INFINITY) {
    continue;
  }
  const float corr = metal::exp(m - mnew);
  const float p = metal::exp(s - mnew);
  l = l * corr + p;
  for (int e = 0; e < NPER; ++e) {
    const int d = lane + 32 * e;
    if (d < D) {
      acc[e] = acc[e] * corr + p * float(v[krow + d]);
    }
  }
  m = mnew;
}

const float inv = l > 0.0f ? 1.0f / l : 0.0f;
for (int e = 0; e < NPER; ++e) {
  const int d = lane + 32 * e;
  if (d < D) {
    out[head_off + size_t(qi) * D + d] = static_cast<T>(acc[e] * inv);
  }
}
"""

_kernel = None


def is_available() -> bool:
    return mx.metal.is_available()


def supports(q: mx.array) -> bool:
    return q.shape[-1] <= 256


def _get_kernel():
    global _kernel
    if _kernel is None:
        _kernel = mx.fast.metal_kernel(
            name="local_attention",
            input_names=["q", "k", "v", "bias", "key_mask", "params"],
            output_names=["out"],
            source=SOURCE,
            ensure_row_contiguous=True,
        )
    return _kernel


def metal_local_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    left: int,
    right: int,
    bias: mx.array | None,
    key_mask: mx.array | None,
    scale: float,
) -> mx.array:
    b, h, t, d = q.shape
    has_bias = bias is not None
    has_mask = key_mask is not None
    if bias is None:
        bias = mx.zeros((1,), q.dtype)
    if key_mask is None:
        key_mask = mx.zeros((1,), mx.bool_)
    (out,) = _get_kernel()(
        inputs=[q, k, v, bias, key_mask, mx.array([scale], mx.float32)],
        template=[
            ("T", q.dtype),
            ("D", d),
            ("L", left),
            ("R", right),
            ("HAS_BIAS", has_bias),
            ("BIAS_BCAST", has_bias and bias.shape[0] == 1),
            ("HAS_MASK", has_mask),
        ],
        grid=(32, t, b * h),
        threadgroup=(32, ROWS_PER_GROUP, 1),
        output_shapes=[q.shape],
        output_dtypes=[q.dtype],
    )
    return out
