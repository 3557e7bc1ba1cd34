"""Local attention for bfloat16/float16 on the tensor cores (WMMA, float32 accumulation).

A block of 4 warps takes 64 queries of one (batch, head), 16 per warp, each warp holding
its query rows as tensor-core fragments, and walks the keys of their bands 64 at a time.
Two passes over those keys: the first computes each row's maximum and normaliser, the
second the probabilities (already normalised) and their product with the values. Because
the softmax statistics are final before any value is weighed, the output accumulates in
fragments with no rescaling; the price is computing the scores twice, which the tensor
cores make cheap. The probabilities enter the second product rounded to the input type,
as in other flash-attention kernels; everything else is float32.
"""

from __future__ import annotations

import mlx.core as mx

from .cuda_common import HEADER, compiled_kernel, run_local_attention_kernel

BLOCK_Q = 64
BLOCK_K = 64
THREADS = 128

TC_HEADER = HEADER + "\n#include <mma.h>\n"

# Template constants: T (q/k/v/out type, 16-bit), D, L, R, HAS_BIAS, BIAS_BCAST (bias batch
# is 1), HAS_MASK. params[0] holds the scale.
SOURCE = r"""
namespace wmma = nvcuda::wmma;
constexpr int BQ = 64;
constexpr int BK = 64;
constexpr int NT = 128;
constexpr int KS = D + 8;    // row stride of the K, V (and Q) tiles, in elements
constexpr int SS = BK + 4;   // row stride of a warp's scores, in floats
constexpr int PSS = BK + 8;  // row stride of a warp's probabilities, in elements
constexpr int OS = D + 4;    // row stride of a warp's output rows, in floats
constexpr int ND = D / 16;
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
const int warp = tid >> 5;
const int lane = tid & 31;

extern __shared__ __align__(128) unsigned char la_smem[];
T* sm_k = reinterpret_cast<T*>(la_smem);                       // [BK][KS]
T* sm_v = sm_k + BK * KS;                                       // [BK][KS]
float* sm_s = reinterpret_cast<float*>(sm_v + BK * KS);         // [4][16][SS]
T* sm_p = reinterpret_cast<T*>(sm_s + 4 * 16 * SS);             // [4][16][PSS]
float* ss_w = sm_s + warp * 16 * SS;
T* ps_w = sm_p + warp * 16 * PSS;

const size_t head_off = (size_t)bh * seq * D;
const T* qh = q + head_off;
const T* kh = k + head_off;
const T* vh = v + head_off;
const float qscale = params[0] * LOG2E;
constexpr int CHUNKS = D / 8;  // 16-byte chunks per row

// Copies rows [r0, r0 + BK) of a (seq, D) matrix into a tile, zeros past `limit`.
auto load_tile = [&](T* dst, const T* src, int r0, int limit) {
  for (int f = tid; f < BK * CHUNKS; f += NT) {
    const int r = f / CHUNKS;
    const int c = (f % CHUNKS) * 8;
    uint4 x = make_uint4(0u, 0u, 0u, 0u);
    if (r0 + r < limit) x = *reinterpret_cast<const uint4*>(src + (size_t)(r0 + r) * D + c);
    *reinterpret_cast<uint4*>(dst + r * KS + c) = x;
  }
};

load_tile(sm_k, qh, q0, seq);
__syncthreads();
wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[ND];
#pragma unroll
for (int kk = 0; kk < ND; ++kk) wmma::load_matrix_sync(qf[kk], sm_k + warp * 16 * KS + kk * 16, KS);
__syncthreads();

// Each pair of lanes owns one query row of the warp; lane `half` takes every other column.
const int r = lane >> 1;
const int half = lane & 1;
const int qi = q0 + warp * 16 + r;
const size_t bias_row = ((size_t)(BIAS_BCAST ? 0 : bi) * heads + hi) * seq + qi;
const int kbeg = max(0, q0 - L);
const int kend = min(seq, q0 + BQ + R);

auto scores_to_smem = [&]() {
#pragma unroll
  for (int n = 0; n < BK / 16; ++n) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
#pragma unroll
    for (int kk = 0; kk < ND; ++kk) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
      wmma::load_matrix_sync(kf, sm_k + n * 16 * KS + kk * 16, KS);
      wmma::mma_sync(acc, qf[kk], kf, acc);
    }
    wmma::store_matrix_sync(ss_w + n * 16, acc, SS, wmma::mem_row_major);
  }
  __syncwarp();
};

// Score of this lane's row against key k0 + c, in log2 units; -inf outside the band.
auto score = [&](int k0, int c) -> float {
  const int kj = k0 + c;
  const int rel = kj - qi + L;
  bool ok = kj < kend && rel >= 0 && rel < M && qi < seq;
  if constexpr (HAS_MASK) {
    ok = ok && key_mask[(size_t)bi * seq + kj];
  }
  float s = ss_w[r * SS + c] * qscale;
  if constexpr (HAS_BIAS) {
    if (ok) s += la_to_float(bias[bias_row * M + rel]) * LOG2E;
  }
  return ok ? s : NEG_INF;
};

float mrow = NEG_INF;
float lrow = 0.f;
for (int k0 = kbeg; k0 < kend; k0 += BK) {
  load_tile(sm_k, kh, k0, kend);
  __syncthreads();
  scores_to_smem();
  float s[BK / 2];
  float tmax = NEG_INF;
#pragma unroll
  for (int i = 0; i < BK / 2; ++i) {
    s[i] = score(k0, half + 2 * i);
    tmax = fmaxf(tmax, s[i]);
  }
  tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
  const float mnew = fmaxf(mrow, tmax);
  const bool live = mnew != NEG_INF;
  float tsum = 0.f;
#pragma unroll
  for (int i = 0; i < BK / 2; ++i) tsum += live ? exp2f(s[i] - mnew) : 0.f;
  tsum += __shfl_xor_sync(0xffffffffu, tsum, 1);
  if (live) {
    lrow = lrow * exp2f(mrow - mnew) + tsum;
    mrow = mnew;
  }
  __syncthreads();
}

const float inv = lrow > 0.f ? 1.f / lrow : 0.f;
wmma::fragment<wmma::accumulator, 16, 16, 16, float> of[ND];
#pragma unroll
for (int nd = 0; nd < ND; ++nd) wmma::fill_fragment(of[nd], 0.f);

for (int k0 = kbeg; k0 < kend; k0 += BK) {
  load_tile(sm_k, kh, k0, kend);
  load_tile(sm_v, vh, k0, kend);
  __syncthreads();
  scores_to_smem();
#pragma unroll
  for (int i = 0; i < BK / 2; ++i) {
    const int c = half + 2 * i;
    const float sc = score(k0, c);
    const float p = sc == NEG_INF ? 0.f : exp2f(sc - mrow) * inv;
    ps_w[r * PSS + c] = T(p);
  }
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf[BK / 16];
#pragma unroll
  for (int kk = 0; kk < BK / 16; ++kk) wmma::load_matrix_sync(pf[kk], ps_w + kk * 16, PSS);
#pragma unroll
  for (int nd = 0; nd < ND; ++nd) {
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
      wmma::load_matrix_sync(vf, sm_v + kk * 16 * KS + nd * 16, KS);
      wmma::mma_sync(of[nd], pf[kk], vf, of[nd]);
    }
  }
  __syncthreads();
}

// The K and V tiles are free now: each warp parks its 16 output rows there as floats.
float* os_w = reinterpret_cast<float*>(la_smem) + warp * 16 * OS;
#pragma unroll
for (int nd = 0; nd < ND; ++nd) {
  wmma::store_matrix_sync(os_w + nd * 16, of[nd], OS, wmma::mem_row_major);
}
__syncwarp();
if (qi < seq) {
  T* dst = out + head_off + (size_t)qi * D;
  for (int d = half * 4; d < D; d += 8) la_store4(dst + d, os_w + r * OS + d);
}
"""


def supports(q: mx.array) -> bool:
    d = q.shape[-1]
    return q.dtype in (mx.bfloat16, mx.float16) and d % 64 == 0 and d <= 256


def shared_bytes(d: int) -> int:
    # K and V tiles (the output rows reuse them at the end), then scores and probabilities.
    tiles = 2 * BLOCK_K * (d + 8) * 2
    return tiles + 4 * 16 * (BLOCK_K + 4) * 4 + 4 * 16 * (BLOCK_K + 8) * 2


def tensor_core_local_attention(
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
    kernel = compiled_kernel(f"local_attention_tc_d{d}", SOURCE, TC_HEADER, shared_bytes(d))
    return run_local_attention_kernel(
        kernel, q, k, v, left, right, bias, key_mask, scale, block_q=BLOCK_Q, threads=THREADS
    )
