"""Local attention as a CUDA kernel on the CUDA cores (compiled at run time through NVRTC).

One thread block of 256 threads takes 64 queries of one (batch, head) and walks the keys
their bands cover, 32 at a time, through shared memory: scores for the 64 x 32 tile (each
thread a 4 x 2 patch), then an online-softmax update per query row, then the tile's
probabilities times its values into the 64 x D accumulator (each thread 4 rows x D/16
columns). Everything is float32 inside, whatever the input dtype. Scores never leave the
chip, so global traffic is q, k, v, the band term and the output, each about once.
"""

from __future__ import annotations

import mlx.core as mx

from .cuda_common import HEADER, compiled_kernel, run_local_attention_kernel

BLOCK_Q = 64
BLOCK_K = 32
THREADS = 256
P_STRIDE = BLOCK_K + 4  # pads the probability rows so two rows read together differ in bank


# Template constants: T (q/k/v/out type), D, L, R, HAS_BIAS, BIAS_BCAST (bias batch is 1),
# HAS_MASK. params[0] holds the scale (MLX template ints must be >= 0).
SOURCE = r"""
constexpr int BQ = 64;
constexpr int BK = 32;
constexpr int NT = 256;
constexpr int PS = BK + 4;
constexpr int NG = D / 64;
constexpr int M = L + R + 1;
constexpr float LOG2E = 1.4426950408889634f;
const float NEG_INF = -cuda::std::numeric_limits<float>::infinity();

const int seq = q_shape[2];
const int heads = q_shape[1];
const int bh = blockIdx.y;
const int bi = bh / heads;
const int hi = bh - bi * heads;
const int q0 = blockIdx.x * BQ;
const int tid = threadIdx.x;
const int tx = tid & 15;
const int ty = tid >> 4;

extern __shared__ float4 la_smem[];
float* qs = reinterpret_cast<float*>(la_smem);  // [D][BQ], scaled by scale*log2(e)
float* ks = qs + D * BQ;                        // [D][BK]
float* vs = ks + D * BK;                        // [BK][D]
float* ps = vs + BK * D;                        // [BQ][PS]

const size_t head_off = (size_t)bh * seq * D;
const T* qh = q + head_off;
const T* kh = k + head_off;
const T* vh = v + head_off;
const float qscale = params[0] * LOG2E;

for (int f = tid; f < BQ * D / 4; f += NT) {
  const int r = f % BQ;
  const int d4 = (f / BQ) * 4;
  float x[4] = {0.f, 0.f, 0.f, 0.f};
  if (q0 + r < seq) la_load4(qh + (size_t)(q0 + r) * D + d4, x);
#pragma unroll
  for (int e = 0; e < 4; ++e) qs[(d4 + e) * BQ + r] = x[e] * qscale;
}

const int kbeg = max(0, q0 - L);
const int kend = min(seq, q0 + BQ + R);

float acc[4][NG][4];
float mrow[4];
float lrow[4];
#pragma unroll
for (int r = 0; r < 4; ++r) {
  mrow[r] = NEG_INF;
  lrow[r] = 0.f;
#pragma unroll
  for (int g = 0; g < NG; ++g)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[r][g][e] = 0.f;
}

for (int k0 = kbeg; k0 < kend; k0 += BK) {
  for (int f = tid; f < BK * D / 4; f += NT) {
    const int j = f % BK;
    const int d4 = (f / BK) * 4;
    float x[4] = {0.f, 0.f, 0.f, 0.f};
    if (k0 + j < kend) la_load4(kh + (size_t)(k0 + j) * D + d4, x);
#pragma unroll
    for (int e = 0; e < 4; ++e) ks[(d4 + e) * BK + j] = x[e];
  }
  for (int f = tid; f < BK * D / 4; f += NT) {
    const int j = f / (D / 4);
    const int d4 = (f % (D / 4)) * 4;
    float x[4] = {0.f, 0.f, 0.f, 0.f};
    if (k0 + j < kend) la_load4(vh + (size_t)(k0 + j) * D + d4, x);
    *reinterpret_cast<float4*>(vs + j * D + d4) = make_float4(x[0], x[1], x[2], x[3]);
  }
  __syncthreads();

  float s[4][2];
#pragma unroll
  for (int r = 0; r < 4; ++r) s[r][0] = s[r][1] = 0.f;
#pragma unroll 8
  for (int d = 0; d < D; ++d) {
    const float4 a = *reinterpret_cast<const float4*>(qs + d * BQ + 4 * ty);
    const float2 c = *reinterpret_cast<const float2*>(ks + d * BK + 2 * tx);
    s[0][0] += a.x * c.x; s[0][1] += a.x * c.y;
    s[1][0] += a.y * c.x; s[1][1] += a.y * c.y;
    s[2][0] += a.z * c.x; s[2][1] += a.z * c.y;
    s[3][0] += a.w * c.x; s[3][1] += a.w * c.y;
  }

#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int qi = q0 + 4 * ty + r;
    float rmax = NEG_INF;
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int kj = k0 + 2 * tx + c;
      const int rel = kj - qi + L;
      bool ok = kj < kend && rel >= 0 && rel < M && qi < seq;
      if constexpr (HAS_MASK) {
        ok = ok && key_mask[(size_t)bi * seq + kj];
      }
      float val = s[r][c];
      if constexpr (HAS_BIAS) {
        if (ok) {
          const size_t row = ((size_t)(BIAS_BCAST ? 0 : bi) * heads + hi) * seq + qi;
          val += la_to_float(bias[row * M + rel]) * LOG2E;
        }
      }
      s[r][c] = ok ? val : NEG_INF;
      rmax = fmaxf(rmax, s[r][c]);
    }
    rmax = fmaxf(rmax, __shfl_xor_sync(0xffffffffu, rmax, 8));
    rmax = fmaxf(rmax, __shfl_xor_sync(0xffffffffu, rmax, 4));
    rmax = fmaxf(rmax, __shfl_xor_sync(0xffffffffu, rmax, 2));
    rmax = fmaxf(rmax, __shfl_xor_sync(0xffffffffu, rmax, 1));
    const float mnew = fmaxf(mrow[r], rmax);
    // Until a row has met one valid key its maximum is -inf and nothing may be added.
    const bool live = mnew != NEG_INF;
    const float corr = live ? exp2f(mrow[r] - mnew) : 1.f;
    const float p0 = live ? exp2f(s[r][0] - mnew) : 0.f;
    const float p1 = live ? exp2f(s[r][1] - mnew) : 0.f;
    float rsum = p0 + p1;
    rsum += __shfl_xor_sync(0xffffffffu, rsum, 8);
    rsum += __shfl_xor_sync(0xffffffffu, rsum, 4);
    rsum += __shfl_xor_sync(0xffffffffu, rsum, 2);
    rsum += __shfl_xor_sync(0xffffffffu, rsum, 1);
    lrow[r] = lrow[r] * corr + rsum;
    mrow[r] = mnew;
#pragma unroll
    for (int g = 0; g < NG; ++g)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[r][g][e] *= corr;
    *reinterpret_cast<float2*>(ps + (4 * ty + r) * PS + 2 * tx) = make_float2(p0, p1);
  }
  __syncthreads();

#pragma unroll 2
  for (int j = 0; j < BK; j += 4) {
    float pr[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float4 x = *reinterpret_cast<const float4*>(ps + (4 * ty + r) * PS + j);
      pr[r][0] = x.x; pr[r][1] = x.y; pr[r][2] = x.z; pr[r][3] = x.w;
    }
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
#pragma unroll
      for (int g = 0; g < NG; ++g) {
        const float4 x = *reinterpret_cast<const float4*>(vs + (j + jj) * D + g * 64 + 4 * tx);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          acc[r][g][0] += pr[r][jj] * x.x;
          acc[r][g][1] += pr[r][jj] * x.y;
          acc[r][g][2] += pr[r][jj] * x.z;
          acc[r][g][3] += pr[r][jj] * x.w;
        }
      }
    }
  }
  __syncthreads();
}

#pragma unroll
for (int r = 0; r < 4; ++r) {
  const int qi = q0 + 4 * ty + r;
  if (qi < seq) {
    const float inv = lrow[r] > 0.f ? 1.f / lrow[r] : 0.f;
#pragma unroll
    for (int g = 0; g < NG; ++g) {
      float x[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) x[e] = acc[r][g][e] * inv;
      la_store4(out + ((size_t)bh * seq + qi) * D + g * 64 + 4 * tx, x);
    }
  }
}
"""


def shared_bytes(d: int) -> int:
    return 4 * (d * BLOCK_Q + d * BLOCK_K + BLOCK_K * d + BLOCK_Q * P_STRIDE)


def simt_local_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    left: int,
    right: int,
    bias: mx.array | None,
    key_mask: mx.array | None,
    scale: float,
) -> mx.array:
    d = q.shape[-1]
    kernel = compiled_kernel(f"local_attention_simt_d{d}", SOURCE, HEADER, shared_bytes(d))
    return run_local_attention_kernel(
        kernel, q, k, v, left, right, bias, key_mask, scale, block_q=BLOCK_Q, threads=THREADS
    )
