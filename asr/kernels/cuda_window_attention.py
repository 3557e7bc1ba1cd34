"""A streaming window's rel-pos attention over its cached keys, in one CUDA kernel.

Queries are the window's frames; keys and values are the P cached frames followed by the
window's own. Query i sits at key P + i, so with P = left its band is keys i .. i + L + R
and key i + c has band column c: score = (q + u) . k + (q + v) . p[c], scaled, softmax over
the band's valid keys (key_bias 0), times the values. One block per (query, head) does all
of it; the same launch also writes the cache the next update starts from (the P frames
after the first `settle` of [cache, window]), so an update needs no concatenation or
gather for the keys and values.
"""

from __future__ import annotations

import mlx.core as mx

from .cuda_common import HEADER, custom_kernel

THREADS = 256
INPUTS = ["qkv", "kv", "bias_u", "bias_v", "positions", "key_bias", "counts", "params"]

# Template: T, H, D, P (cached frames), W (band width L + R + 1).
# qkv (NQ, 3, H, D); kv (2, H, P, D); bias_u, bias_v (H, D); positions (H, W, D);
# key_bias (P + NQ) float, 0 or -inf; counts int32 [real frames, settle]; params [scale].
SOURCE = r"""
constexpr int NW = THREADS / 32;
constexpr int DC = (D + 127) / 128;  // chunks of 4 elements per lane for a row of values
const int NQ = qkv_shape[0];
const int qi = blockIdx.x;
const int h = blockIdx.y;
const int tid = threadIdx.x;
const int warp = tid >> 5;
const int lane = tid & 31;
const size_t qkv_row = (size_t)3 * H * D;

auto key_row = [&](int j, int which) -> const T* {  // which: 0 keys, 1 values
  return j < P ? kv + (((size_t)which * H + h) * P + j) * D
               : qkv + (size_t)(j - P) * qkv_row + (size_t)(1 + which) * H * D + (size_t)h * D;
};

// The next cache: rows s = qi, qi + NQ, ... of it come from row s + settle of [cache, window].
const int settle = counts[1];
for (int s = qi; s < P; s += NQ) {
  for (int which = 0; which < 2; ++which) {
    const T* src = key_row(s + settle, which);
    T* dst = new_kv + (((size_t)which * H + h) * P + s) * D;
    for (int d = tid; d < D; d += THREADS) dst[d] = src[d];
  }
}

__shared__ float qu[D];
__shared__ float qv[D];
__shared__ float scores[W];
__shared__ float reduce[NW];
__shared__ float partial[NW][D];
const T* q = qkv + (size_t)qi * qkv_row + (size_t)h * D;
for (int d = tid; d < D; d += THREADS) {
  const float x = la_to_float(q[d]);
  qu[d] = x + la_to_float(bias_u[h * D + d]);
  qv[d] = x + la_to_float(bias_v[h * D + d]);
}
__syncthreads();

// Scores: a thread per key, its row and its position row read whole (all loads in flight).
const float scale = params[0];
const float NEG_INF = -cuda::std::numeric_limits<float>::infinity();
const T* pos = positions + (size_t)h * W * D;
for (int c = tid; c < W; c += THREADS) {
  const int j = qi + c;
  float s = NEG_INF;
  if (j < P + NQ && key_bias[j] == 0.f) {
    const T* k = key_row(j, 0);
    const T* p = pos + (size_t)c * D;
    float dot = 0.f;
#pragma unroll 8
    for (int d = 0; d < D; d += 4) {
      float kf[4], pf[4];
      la_load4(k + d, kf);
      la_load4(p + d, pf);
      dot += qu[d] * kf[0] + qu[d + 1] * kf[1] + qu[d + 2] * kf[2] + qu[d + 3] * kf[3];
      dot += qv[d] * pf[0] + qv[d + 1] * pf[1] + qv[d + 2] * pf[2] + qv[d + 3] * pf[3];
    }
    s = dot * scale;
  }
  scores[c] = s;
}
__syncthreads();

auto block_reduce = [&](float x, bool is_max) -> float {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, o);
    x = is_max ? fmaxf(x, y) : x + y;
  }
  __syncthreads();
  if (lane == 0) reduce[warp] = x;
  __syncthreads();
  float r = reduce[0];
  for (int w2 = 1; w2 < NW; ++w2) r = is_max ? fmaxf(r, reduce[w2]) : r + reduce[w2];
  return r;
};

float m = NEG_INF;
for (int c = tid; c < W; c += THREADS) m = fmaxf(m, scores[c]);
m = block_reduce(m, true);
const float shift = m == NEG_INF ? 0.f : m;  // a query with no valid key gives zeros
float sum = 0.f;
for (int c = tid; c < W; c += THREADS) {
  const float e = __expf(scores[c] - shift);
  scores[c] = e;
  sum += e;
}
sum = block_reduce(sum, false);  // its barriers also publish the exponentials
const float inv = sum > 0.f ? 1.f / sum : 0.f;

// Values: each warp sums every NW-th key, a lane 4 elements of the row (masked keys add 0);
// then the warps' sums are added.
const int last = min(W, P + NQ - qi);
float acc[DC][4];
#pragma unroll
for (int ch = 0; ch < DC; ++ch) acc[ch][0] = acc[ch][1] = acc[ch][2] = acc[ch][3] = 0.f;
#pragma unroll 4
for (int c = warp; c < last; c += NW) {
  const float p = scores[c];
  const T* v = key_row(qi + c, 1);
#pragma unroll
  for (int ch = 0; ch < DC; ++ch) {
    const int d = 128 * ch + 4 * lane;
    if (d < D) {
      float vf[4];
      la_load4(v + d, vf);
      acc[ch][0] += p * vf[0]; acc[ch][1] += p * vf[1];
      acc[ch][2] += p * vf[2]; acc[ch][3] += p * vf[3];
    }
  }
}
#pragma unroll
for (int ch = 0; ch < DC; ++ch) {
  const int d = 128 * ch + 4 * lane;
  if (d < D) {
    partial[warp][d] = acc[ch][0]; partial[warp][d + 1] = acc[ch][1];
    partial[warp][d + 2] = acc[ch][2]; partial[warp][d + 3] = acc[ch][3];
  }
}
__syncthreads();
for (int d = tid; d < D; d += THREADS) {
  float o = 0.f;
#pragma unroll
  for (int w2 = 0; w2 < NW; ++w2) o += partial[w2][d];
  out[(size_t)qi * H * D + (size_t)h * D + d] = static_cast<T>(o * inv);
}
"""


def window_attention(
    qkv: mx.array,
    kv: mx.array,
    bias_u: mx.array,
    bias_v: mx.array,
    positions: mx.array,
    key_bias: mx.array,
    counts: mx.array,
    params: mx.array,
) -> tuple[mx.array, mx.array]:
    """qkv (NQ, 3*H*D) the window's projections; kv (2, H, P, D) the cache, P = left;
    positions (H, L+R+1, D); key_bias (P + NQ,) float32; counts int32 [frames, settle];
    params float32 [scale]. Returns the attention output (NQ, H*D) and the next cache."""
    _, heads, cached, head_dim = kv.shape
    width = positions.shape[1]
    nq = qkv.shape[0]
    kernel = custom_kernel("window_attention", INPUTS, ["out", "new_kv"], SOURCE, HEADER)
    out, new_kv = kernel(
        inputs=[qkv, kv, bias_u, bias_v, positions, key_bias, counts, params],
        template=[
            ("T", qkv.dtype),
            ("H", heads),
            ("D", head_dim),
            ("P", cached),
            ("W", width),
            ("THREADS", THREADS),
        ],  # fmt: skip
        grid=(nq * THREADS, heads, 1),
        threadgroup=(THREADS, 1, 1),
        output_shapes=[(nq, heads * head_dim), kv.shape],
        output_dtypes=[qkv.dtype, kv.dtype],
    )
    return out, new_kv
