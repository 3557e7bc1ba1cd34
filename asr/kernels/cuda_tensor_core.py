"""Local attention for bfloat16/float16 on the tensor cores, in one pass over the band.

A block of WARPS warps takes 16 * WARPS queries of one (batch, head), 16 rows per warp, and
walks the keys their bands cover, 64 at a time. Per tile, each warp computes its 16 x 64
scores with mma.sync m16n8k16 (operands through ldmatrix, float32 accumulation), adds the
band term, keeps a running maximum and sum per row (online softmax, rescaling its output
rows when the maximum grows) and multiplies the probabilities, rounded to the input type,
by the values. Scores and probabilities never leave the registers. K, V and the band term
of the next tile are copied with cp.async while the current one is computed (two stages).

The band term needs no gather: for the block's rows q0 + r and keys k, its element sits at
(q0 * M + r * (M - 1) + k - (q0 - L)) in the (T, M) matrix of one head, M = L + R + 1,
so a tile of keys is a rectangle of row stride M - 1, copied like any other tile.
"""

from __future__ import annotations

import mlx.core as mx

from .cuda_common import HEADER, compiled_kernel, run_local_attention_kernel

BLOCK_K = 64
ELEMENT_BYTES = 2
MAX_SHARED_BYTES = 227 * 1024  # per block, on sm_90

# Inline PTX for the copies and the matrix products (sm_80 and later).
MMA_HEADER = (
    HEADER
    + r"""
template <typename X> struct la_is_half { static constexpr bool value = false; };
template <> struct la_is_half<__half> { static constexpr bool value = true; };

__device__ __forceinline__ unsigned int la_smem(const void* p) {
  return static_cast<unsigned int>(__cvta_generic_to_shared(p));
}
// 16 bytes from global to shared; bytes past `src_bytes` (0 or 16) are zero-filled.
__device__ __forceinline__ void la_cp16(unsigned int dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
               :: "r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void la_cp_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void la_cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}
__device__ __forceinline__ void la_ldsm4(unsigned int a, unsigned int* r) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}
__device__ __forceinline__ void la_ldsm4_t(unsigned int a, unsigned int* r) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}
// c += a (16x16, row major) * b (16x8, column major), float32 accumulators.
template <typename X>
__device__ __forceinline__ void la_mma(float* c, const unsigned int* a, unsigned int b0,
                                       unsigned int b1) {
  if constexpr (la_is_half<X>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}
__device__ __forceinline__ float la_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
// Two floats as one register of two 16-bit values, the first in the low half.
__device__ __forceinline__ unsigned int la_pack(float lo, float hi, const __nv_bfloat16*) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<unsigned int*>(&h);
}
__device__ __forceinline__ unsigned int la_pack(float lo, float hi, const __half*) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<unsigned int*>(&h);
}
"""
)

# Template constants: T (16-bit type), D, L, R, HAS_BIAS, BIAS_BCAST (bias batch is 1),
# HAS_MASK, WARPS. params[0] holds the scale.
SOURCE = r"""
constexpr int NW = WARPS;
constexpr int BQ = 16 * NW;
constexpr int BK = 64;
constexpr int NT = 32 * NW;
constexpr int KS = D + 8;           // row stride of q, k, v tiles: ldmatrix rows hit distinct banks
constexpr int DC = D / 8;           // 16-byte chunks in a row of q, k, v
constexpr int BC = BK / 8 + 1;      // 16-byte chunks of the band term per row and tile
constexpr int BS = BC * 8;          // row stride of the band-term tile
constexpr int M = L + R + 1;
constexpr int NS = BK / 8;          // n8 tiles of scores
constexpr int NO = D / 8;           // n8 tiles of output
constexpr bool Q_REGS = D <= 128;   // larger heads read Q from shared memory each tile
constexpr int STAGE = 2 * BK * KS + (HAS_BIAS ? BQ * BS : 0);
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
const int g = lane >> 2;
const int t4 = lane & 3;
const int wr0 = q0 + warp * 16;

extern __shared__ __align__(128) unsigned char la_smem_raw[];
T* smem = reinterpret_cast<T*>(la_smem_raw);
// Q overlays the second stage (it is in registers before that stage is first filled).
T* qs = Q_REGS ? smem + STAGE : smem + 2 * STAGE;

const size_t head_off = (size_t)bh * seq * D;
const T* qh = q + head_off;
const T* kh = k + head_off;
const T* vh = v + head_off;
const float qscale = params[0] * LOG2E;

const int kt0 = q0 - L;
const int i_first = kt0 >= 0 ? 0 : (-kt0) / BK;
const int i_last = (min(seq - 1, q0 + BQ - 1 + R) - kt0) / BK;

// The band term, as 16-byte chunks from an aligned base: chunk-aligned rows keep, across
// tiles, a fixed shift of their first element.
const long long bias_q0 = ((long long)((BIAS_BCAST ? 0 : bi) * heads + hi) * seq + q0) * M;
const int bias_lead = (int)((reinterpret_cast<unsigned long long>(bias) & 15ull) >> 1);
const T* bias_al = bias - bias_lead;
const long long bias_end =
    bias_lead + (long long)(BIAS_BCAST ? 1 : q_shape[0]) * heads * seq * M;
auto bias_pos = [&](int r) -> long long { return bias_lead + bias_q0 + (long long)r * (M - 1); };

auto load_tile = [&](int i, int s) {
  const int k0 = kt0 + i * BK;
  T* ks = smem + s * STAGE;
  T* vs = ks + BK * KS;
  for (int f = tid; f < BK * DC; f += NT) {
    const int r = f / DC;
    const int c = (f - r * DC) * 8;
    const int kj = k0 + r;
    const bool ok = kj >= 0 && kj < seq;
    const size_t src = (size_t)(ok ? kj : 0) * D + c;
    la_cp16(la_smem(ks + r * KS + c), kh + src, ok ? 16 : 0);
    la_cp16(la_smem(vs + r * KS + c), vh + src, ok ? 16 : 0);
  }
  if constexpr (HAS_BIAS) {
    T* bs = vs + BK * KS;
    for (int f = tid; f < BQ * BC; f += NT) {
      const int r = f / BC;
      const int c = f - r * BC;
      const long long a = ((bias_pos(r) + (long long)i * BK) & ~7ll) + 8 * c;
      const bool ok = a < bias_end;
      la_cp16(la_smem(bs + r * BS + 8 * c), bias_al + (ok ? a : 0), ok ? 16 : 0);
    }
  }
};

for (int f = tid; f < BQ * DC; f += NT) {
  const int r = f / DC;
  const int c = (f - r * DC) * 8;
  const bool ok = q0 + r < seq;
  la_cp16(la_smem(qs + r * KS + c), qh + (size_t)(ok ? q0 + r : 0) * D + c, ok ? 16 : 0);
}
la_cp_commit();
load_tile(i_first, 0);
la_cp_commit();

// Lane offsets (elements) of ldmatrix rows: A-like (Q, V transposed) and K.
const int a_lane = (((lane >> 3) & 1) * 8 + (lane & 7)) * KS + (lane >> 4) * 8;
const int k_lane = ((lane >> 4) * 8 + (lane & 7)) * KS + ((lane >> 3) & 1) * 8;

unsigned int qf[Q_REGS ? D / 16 : 1][4];
la_cp_wait<1>();
__syncthreads();
if constexpr (Q_REGS) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    la_ldsm4(la_smem(qs + warp * 16 * KS + kk * 16 + a_lane), qf[kk]);
  }
}
__syncthreads();

// This thread's rows: qa = wr0 + g and qb = qa + 8.
const int qa = wr0 + g;
const int qb = qa + 8;
int brow_a = 0;
int brow_b = 0;
if constexpr (HAS_BIAS) {
  brow_a = (warp * 16 + g) * BS + (int)(bias_pos(warp * 16 + g) & 7);
  brow_b = (warp * 16 + g + 8) * BS + (int)(bias_pos(warp * 16 + g + 8) & 7);
}

float o[NO][4];
#pragma unroll
for (int n = 0; n < NO; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
float m_a = NEG_INF, m_b = NEG_INF, l_a = 0.f, l_b = 0.f;

for (int i = i_first; i <= i_last; ++i) {
  const int s = (i - i_first) & 1;
  if (i < i_last) load_tile(i + 1, s ^ 1);
  la_cp_commit();
  la_cp_wait<1>();
  __syncthreads();

  const int k0 = kt0 + i * BK;
  const bool active = wr0 < seq && k0 <= wr0 + 15 + R && k0 + BK - 1 >= wr0 - L;
  if (active) {
    const T* ks = smem + s * STAGE;
    const T* vs = ks + BK * KS;
    const T* bs = vs + BK * KS;

    float sc[NS][4];
#pragma unroll
    for (int n = 0; n < NS; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      unsigned int a[4];
      if constexpr (Q_REGS) {
        a[0] = qf[kk][0]; a[1] = qf[kk][1]; a[2] = qf[kk][2]; a[3] = qf[kk][3];
      } else {
        la_ldsm4(la_smem(qs + warp * 16 * KS + kk * 16 + a_lane), a);
      }
#pragma unroll
      for (int n2 = 0; n2 < NS / 2; ++n2) {
        unsigned int b[4];
        la_ldsm4(la_smem(ks + n2 * 16 * KS + kk * 16 + k_lane), b);
        la_mma<T>(sc[2 * n2], a, b[0], b[1]);
        la_mma<T>(sc[2 * n2 + 1], a, b[2], b[3]);
      }
    }

    // Scores in log2 units, the band term added, -inf where a key may not be attended.
    const bool edge = HAS_MASK || k0 < 0 || k0 + BK > seq || k0 < wr0 + 15 - L ||
                      k0 + BK - 1 > wr0 + R;
    float tmax_a = NEG_INF, tmax_b = NEG_INF;
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      const int col = 8 * n + 2 * t4;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = sc[n][e] * qscale;
        if constexpr (HAS_BIAS) {
          x += la_to_float(bs[(e < 2 ? brow_a : brow_b) + col + (e & 1)]) * LOG2E;
        }
        if (edge) {
          const int kj = k0 + col + (e & 1);
          const int qi = e < 2 ? qa : qb;
          bool ok = kj >= 0 && kj < seq && kj >= qi - L && kj <= qi + R;
          if constexpr (HAS_MASK) {
            ok = ok && key_mask[(size_t)bi * seq + kj];
          }
          x = ok ? x : NEG_INF;
        }
        sc[n][e] = x;
      }
      tmax_a = fmaxf(tmax_a, fmaxf(sc[n][0], sc[n][1]));
      tmax_b = fmaxf(tmax_b, fmaxf(sc[n][2], sc[n][3]));
    }
    tmax_a = fmaxf(tmax_a, __shfl_xor_sync(0xffffffffu, tmax_a, 1));
    tmax_a = fmaxf(tmax_a, __shfl_xor_sync(0xffffffffu, tmax_a, 2));
    tmax_b = fmaxf(tmax_b, __shfl_xor_sync(0xffffffffu, tmax_b, 1));
    tmax_b = fmaxf(tmax_b, __shfl_xor_sync(0xffffffffu, tmax_b, 2));
    const float mn_a = fmaxf(m_a, tmax_a);
    const float mn_b = fmaxf(m_b, tmax_b);
    // A row that has met no valid key yet keeps -inf; subtracting 0 then gives p = 0.
    const float mu_a = mn_a == NEG_INF ? 0.f : mn_a;
    const float mu_b = mn_b == NEG_INF ? 0.f : mn_b;
    const float corr_a = la_exp2(m_a - mu_a);
    const float corr_b = la_exp2(m_b - mu_b);
    m_a = mn_a;
    m_b = mn_b;
    float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      sc[n][0] = la_exp2(sc[n][0] - mu_a);
      sc[n][1] = la_exp2(sc[n][1] - mu_a);
      sc[n][2] = la_exp2(sc[n][2] - mu_b);
      sc[n][3] = la_exp2(sc[n][3] - mu_b);
      sum_a += sc[n][0] + sc[n][1];
      sum_b += sc[n][2] + sc[n][3];
    }
    l_a = l_a * corr_a + sum_a;
    l_b = l_b * corr_b + sum_b;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      o[n][0] *= corr_a; o[n][1] *= corr_a;
      o[n][2] *= corr_b; o[n][3] *= corr_b;
    }

    // The score accumulators of two adjacent n8 tiles are the A operand of one k16 step.
#pragma unroll
    for (int kc = 0; kc < BK / 16; ++kc) {
      unsigned int a[4];
      a[0] = la_pack(sc[2 * kc][0], sc[2 * kc][1], qh);
      a[1] = la_pack(sc[2 * kc][2], sc[2 * kc][3], qh);
      a[2] = la_pack(sc[2 * kc + 1][0], sc[2 * kc + 1][1], qh);
      a[3] = la_pack(sc[2 * kc + 1][2], sc[2 * kc + 1][3], qh);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        unsigned int b[4];
        la_ldsm4_t(la_smem(vs + kc * 16 * KS + dp * 16 + a_lane), b);
        la_mma<T>(o[2 * dp], a, b[0], b[1]);
        la_mma<T>(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
  }
  __syncthreads();
}
la_cp_wait<0>();

l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
const float inv_a = l_a > 0.f ? 1.f / l_a : 0.f;
const float inv_b = l_b > 0.f ? 1.f / l_b : 0.f;

// Each warp parks its 16 rows in the first stage, then writes them out 16 bytes a lane.
T* os = smem + warp * 16 * KS;
#pragma unroll
for (int n = 0; n < NO; ++n) {
  *reinterpret_cast<unsigned int*>(os + g * KS + 8 * n + 2 * t4) =
      la_pack(o[n][0] * inv_a, o[n][1] * inv_a, qh);
  *reinterpret_cast<unsigned int*>(os + (g + 8) * KS + 8 * n + 2 * t4) =
      la_pack(o[n][2] * inv_b, o[n][3] * inv_b, qh);
}
__syncwarp();
T* oh = out + head_off;
for (int f = lane; f < 16 * DC; f += 32) {
  const int r = f / DC;
  const int c = (f - r * DC) * 8;
  if (wr0 + r < seq) {
    *reinterpret_cast<uint4*>(oh + (size_t)(wr0 + r) * D + c) =
        *reinterpret_cast<const uint4*>(os + r * KS + c);
  }
}
"""


def supports(q: mx.array) -> bool:
    d = q.shape[-1]
    return q.dtype in (mx.bfloat16, mx.float16) and d % 64 == 0 and d <= 256


def default_warps(d: int) -> int:
    # Measured on an H200 (bench/local_attention_gpu.py): 4 warps beat 8 at every length;
    # heads over 128 keep Q in shared memory, where 8 warps would not fit two stages.
    return 4


def shared_bytes(d: int, warps: int, has_bias: bool) -> int:
    """Two stages of K, V (and the band term); Q overlays the second unless d > 128."""
    block_q = 16 * warps
    row = d + 8
    stage = 2 * BLOCK_K * row + (block_q * (BLOCK_K + 8) if has_bias else 0)
    q_tile = 0 if d <= 128 else block_q * row
    return (2 * stage + q_tile) * ELEMENT_BYTES


def tensor_core_local_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    left: int,
    right: int,
    bias: mx.array | None,
    key_mask: mx.array | None,
    scale: float,
    warps: int | None = None,
) -> mx.array:
    d = q.shape[-1]
    warps = warps or default_warps(d)
    has_bias = bias is not None
    shared = shared_bytes(d, warps, has_bias)
    if shared > MAX_SHARED_BYTES:
        raise ValueError(f"{warps} warps with heads of {d} need {shared} bytes of shared memory")
    name = f"local_attention_mma_d{d}_w{warps}_{'b' if has_bias else 'n'}"
    kernel = compiled_kernel(name, SOURCE, MMA_HEADER, shared)
    if bias is not None and bias.dtype != q.dtype:
        bias = bias.astype(q.dtype)
    return run_local_attention_kernel(
        kernel,
        q,
        k,
        v,
        left,
        right,
        bias,
        key_mask,
        scale,
        block_q=16 * warps,
        threads=32 * warps,
        extra_template=[("WARPS", warps)],
    )
