"""Local attention for bfloat16/float16 on Hopper (sm_90a) with warpgroup matrix products.

The structure is that of cuda_tensor_core (one pass over the band, online softmax in
registers, cp.async double buffering, the band term as a rectangle of row stride M - 1),
with the two products done by `wgmma` for a warpgroup of 4 warps and 64 query rows: the
tensor cores read the keys and values straight from shared memory, once per 64 rows
instead of once per 16. The queries and the probabilities are the register operand; the
score and output accumulators have the same per-thread layout as mma.sync's, so the
softmax code is the same. Each product is waited for before the softmax (no overlap of
the two yet). On an H200 this is as fast as the mma.sync kernel, not faster, so it is
opt-in (asr.kernels.cuda); blocks of 3 warpgroups beat 1 or 2 by about 1.3x.

K and V tiles sit in shared memory as 8 x 8 "core matrices" (8 rows of 16 bytes, 128
contiguous bytes, no swizzling): K with the head dimension inside a core matrix (K-major
operand), V with the head dimension inside too, which for the second product is the N
dimension (an MN-major operand, read transposed). Compiled by NVRTC for sm_90a (MLX's own
kernels are built for sm_90, where wgmma is not allowed) and run through
`mx.fast.precompiled_cuda_kernel`.
"""

from __future__ import annotations

import struct

import mlx.core as mx

from . import nvrtc
from .cuda_common import is_available

BLOCK_K = 64
ELEMENT_BYTES = 2

# Blocks of 3 warpgroups (192 queries) read each key and value tile from L2 for three
# times as many queries as one warpgroup would; 4 would not fit the registers.
WARPGROUPS = 3

# Bit 0 swaps the roles of the two strides in K's descriptor, bit 1 in V's.
DESCRIPTOR_FLAGS = 0


def _wgmma_function(name: str, n: int, ptx_type: str, trans_b: int) -> str:
    """A device function issuing one m64n{n}k16 product, A from registers."""
    regs = n // 2
    d_list = ", ".join(f"%{i}" for i in range(regs))
    a_list = ", ".join(f"%{regs + i}" for i in range(4))
    body = (
        "{\\n.reg .pred p;\\n"
        f"setp.ne.b32 p, %{regs + 5}, 0;\\n"
        f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx_type}.{ptx_type} "
        f"{{{d_list}}}, {{{a_list}}}, %{regs + 4}, p, 1, 1, {trans_b};\\n}}\\n"
    )
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(regs))
    ins = '"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d)'
    return (
        f"__device__ __forceinline__ void {name}(float* d, const unsigned int* a, "
        "unsigned long long desc, int scale_d) {\n"
        f'  asm volatile("{body}" : {outs} : {ins} : "memory");\n'
        "}\n"
    )


HELPERS = r"""
typedef unsigned short u16;

__device__ __forceinline__ unsigned int la_smem(const void* p) {
  unsigned int r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}
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
__device__ __forceinline__ void la_fence_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void la_wg_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void la_wg_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void la_wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// A shared-memory matrix descriptor without swizzling.
__device__ __forceinline__ unsigned long long la_desc(unsigned int addr, unsigned int lbo,
                                                      unsigned int sbo) {
  return (unsigned long long)((addr & 0x3FFFFu) >> 4) |
         ((unsigned long long)((lbo >> 4) & 0x3FFFu) << 16) |
         ((unsigned long long)((sbo >> 4) & 0x3FFFu) << 32);
}
__device__ __forceinline__ float la_shfl_xor(float x, int mask) {
  float r;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(x), "r"(mask));
  return r;
}
__device__ __forceinline__ void la_sync() { asm volatile("bar.sync 0;" ::: "memory"); }
__device__ __forceinline__ void la_syncwarp() {
  asm volatile("bar.warp.sync 0xffffffff;" ::: "memory");
}
__device__ __forceinline__ int la_min(int a, int b) { return a < b ? a : b; }
struct __attribute__((aligned(16))) la_u4 { unsigned int x, y, z, w; };
__device__ __forceinline__ float la_max(float a, float b) {
  float r;
  asm("max.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ __forceinline__ float la_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float la_rcp(float x) {
  float y;
  asm("rcp.rn.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float la_neg_inf() {
  float r;
  asm("mov.b32 %0, 0xff800000;" : "=f"(r));
  return r;
}
__device__ __forceinline__ float la_to_float(u16 x) {
  float r;
#if LA_HALF
  asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(x));
#else
  asm("mov.b32 %0, %1;" : "=f"(r) : "r"((unsigned int)x << 16));
#endif
  return r;
}
// Two floats as two 16-bit values in one register, the first in the low half.
__device__ __forceinline__ unsigned int la_pack(float lo, float hi) {
  unsigned int r;
#if LA_HALF
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
  return r;
}
"""

# Constants defined before this: D, L, R, HAS_BIAS, BIAS_BCAST, HAS_MASK, NWG (warpgroups
# per block), LA_HALF. Scalars: seq, heads, batch, scale, flags.
KERNEL = r"""
extern "C" __global__ void __launch_bounds__(128 * NWG) KERNEL_NAME(
    const u16* __restrict__ q, const u16* __restrict__ k, const u16* __restrict__ v,
    const u16* __restrict__ bias, const unsigned char* __restrict__ key_mask,
    u16* __restrict__ out, int seq, int heads, int batch, float scale, int flags) {
  constexpr int BQ = 64 * NWG;
  constexpr int BK = 64;
  constexpr int NT = 128 * NWG;
  constexpr int QS = D + 8;            // row stride of the Q tile (and of the output rows)
  constexpr int DC = D / 8;            // 16-byte chunks in a row of q, k, v
  constexpr int BC = BK / 8 + 1;       // 16-byte chunks of the band term per row and tile
  constexpr int BS = BC * 8;           // row stride of the band-term tile
  constexpr int M = L + R + 1;
  constexpr int NS = BK / 8;           // n8 column groups of the scores
  constexpr int NO = D / 8;            // n8 column groups of the output
  constexpr int KV_BYTES = BK * D * 2;
  constexpr int STAGE = 2 * KV_BYTES + (HAS_BIAS ? BQ * BS * 2 : 0);
  constexpr float LOG2E = 1.4426950408889634f;
  const float NEG_INF = la_neg_inf();

  const int bh = blockIdx.y;
  const int bi = bh / heads;
  const int hi = bh - bi * heads;
  const int q0 = blockIdx.x * BQ;
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int t4 = lane & 3;
  const int wg = warp >> 2;
  const int wr0 = q0 + warp * 16;      // this warp's first query row
  const int gr0 = q0 + wg * 64;        // this warpgroup's first query row

  extern __shared__ __attribute__((aligned(1024))) unsigned char smem[];
  u16* qs = reinterpret_cast<u16*>(smem + STAGE);  // Q overlays the second stage at first

  const unsigned long long head_off = (unsigned long long)bh * seq * D;
  const u16* qh = q + head_off;
  const u16* kh = k + head_off;
  const u16* vh = v + head_off;
  const float qscale = scale * LOG2E;

  const int kt0 = q0 - L;
  const int i_first = kt0 >= 0 ? 0 : (-kt0) / BK;
  const int i_last = (la_min(seq - 1, q0 + BQ - 1 + R) - kt0) / BK;

  const long long bias_q0 = ((long long)((BIAS_BCAST ? 0 : bi) * heads + hi) * seq + q0) * M;
  const int bias_lead = (int)((reinterpret_cast<unsigned long long>(bias) & 15ull) >> 1);
  const u16* bias_al = bias - bias_lead;
  const long long bias_end = bias_lead + (long long)(BIAS_BCAST ? 1 : batch) * heads * seq * M;

  auto load_tile = [&](int i, int s) {
    const int k0 = kt0 + i * BK;
    unsigned char* base = smem + s * STAGE;
    const unsigned int ks = la_smem(base);
    const unsigned int vs = ks + KV_BYTES;
    // Lanes 0-7 take rows 0-7 of one 16-byte column: one core matrix, 128 bytes in a row.
    for (int f = tid; f < BK * DC; f += NT) {
      const int r = (f & 7) + 8 * (f / (8 * DC));
      const int c = (f >> 3) % DC;
      const int kj = k0 + r;
      const bool ok = kj >= 0 && kj < seq;
      const unsigned long long src = (unsigned long long)(ok ? kj : 0) * D + c * 8;
      la_cp16(ks + (r >> 3) * (16 * D) + c * 128 + (r & 7) * 16, kh + src, ok ? 16 : 0);
      la_cp16(vs + c * (BK * 16) + (r >> 3) * 128 + (r & 7) * 16, vh + src, ok ? 16 : 0);
    }
    if constexpr (HAS_BIAS) {
      u16* bs = reinterpret_cast<u16*>(base + 2 * KV_BYTES);
      for (int f = tid; f < BQ * BC; f += NT) {
        const int r = f / BC;
        const int c = f - r * BC;
        const long long pos = bias_lead + bias_q0 + (long long)r * (M - 1) + (long long)i * BK;
        const long long a = (pos & ~7ll) + 8 * c;
        const bool ok = a < bias_end;
        la_cp16(la_smem(bs + r * BS + 8 * c), bias_al + (ok ? a : 0), ok ? 16 : 0);
      }
    }
  };

  for (int f = tid; f < BQ * DC; f += NT) {
    const int r = f / DC;
    const int c = (f - r * DC) * 8;
    const bool ok = q0 + r < seq;
    const unsigned long long src = (unsigned long long)(ok ? q0 + r : 0) * D + c;
    la_cp16(la_smem(qs + r * QS + c), qh + src, ok ? 16 : 0);
  }
  la_cp_commit();
  load_tile(i_first, 0);
  la_cp_commit();

  // Q as the register operand: rows of this warp, the same fragments as mma.sync's A.
  const int a_lane = (((lane >> 3) & 1) * 8 + (lane & 7)) * QS + (lane >> 4) * 8;
  unsigned int qf[D / 16][4];
  la_cp_wait<1>();
  la_sync();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    la_ldsm4(la_smem(qs + warp * 16 * QS + kk * 16 + a_lane), qf[kk]);
  }
  la_sync();

  const int qa = wr0 + g;
  const int qb = qa + 8;
  int brow_a = 0;
  int brow_b = 0;
  if constexpr (HAS_BIAS) {
    const long long p0 = bias_lead + bias_q0;
    brow_a = (warp * 16 + g) * BS + (int)((p0 + (long long)(warp * 16 + g) * (M - 1)) & 7);
    brow_b = (warp * 16 + g + 8) * BS + (int)((p0 + (long long)(warp * 16 + g + 8) * (M - 1)) & 7);
  }
  const unsigned int k_lbo = (flags & 1) ? 16 * D : 128;
  const unsigned int k_sbo = (flags & 1) ? 128 : 16 * D;
  const unsigned int v_lbo = (flags & 2) ? BK * 16 : 128;
  const unsigned int v_sbo = (flags & 2) ? 128 : BK * 16;

  float o[NO * 4];
#pragma unroll
  for (int n = 0; n < NO * 4; ++n) o[n] = 0.f;
  float m_a = NEG_INF, m_b = NEG_INF, l_a = 0.f, l_b = 0.f;

  for (int i = i_first; i <= i_last; ++i) {
    const int s = (i - i_first) & 1;
    if (i < i_last) load_tile(i + 1, s ^ 1);
    la_cp_commit();
    la_cp_wait<1>();
    la_fence_async();
    la_sync();

    const int k0 = kt0 + i * BK;
    // Uniform over the warpgroup: wgmma needs all of its 4 warps.
    const bool active = gr0 < seq && k0 <= gr0 + 63 + R && k0 + BK - 1 >= gr0 - L;
    if (active) {
      const unsigned int ks = la_smem(smem + s * STAGE);
      const unsigned int vs = ks + KV_BYTES;
      const u16* bs = reinterpret_cast<const u16*>(smem + s * STAGE + 2 * KV_BYTES);

      float sc[NS * 4];
#pragma unroll
      for (int n = 0; n < NS * 4; ++n) sc[n] = 0.f;
      la_wg_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        la_wgmma_s(sc, qf[kk], la_desc(ks + kk * 256, k_lbo, k_sbo), 1);
      }
      la_wg_commit();
      la_wg_wait();

      const bool edge = HAS_MASK || k0 < 0 || k0 + BK > seq || k0 < wr0 + 15 - L ||
                        k0 + BK - 1 > wr0 + R;
      float tmax_a = NEG_INF, tmax_b = NEG_INF;
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        const int col = 8 * n + 2 * t4;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = sc[4 * n + e] * qscale;
          if constexpr (HAS_BIAS) {
            x += la_to_float(bs[(e < 2 ? brow_a : brow_b) + col + (e & 1)]) * LOG2E;
          }
          if (edge) {
            const int kj = k0 + col + (e & 1);
            const int qi = e < 2 ? qa : qb;
            bool ok = kj >= 0 && kj < seq && kj >= qi - L && kj <= qi + R;
            if constexpr (HAS_MASK) {
              ok = ok && key_mask[(unsigned long long)bi * seq + kj] != 0;
            }
            x = ok ? x : NEG_INF;
          }
          sc[4 * n + e] = x;
        }
        tmax_a = la_max(tmax_a, la_max(sc[4 * n], sc[4 * n + 1]));
        tmax_b = la_max(tmax_b, la_max(sc[4 * n + 2], sc[4 * n + 3]));
      }
      tmax_a = la_max(tmax_a, la_shfl_xor(tmax_a, 1));
      tmax_a = la_max(tmax_a, la_shfl_xor(tmax_a, 2));
      tmax_b = la_max(tmax_b, la_shfl_xor(tmax_b, 1));
      tmax_b = la_max(tmax_b, la_shfl_xor(tmax_b, 2));
      const float mn_a = la_max(m_a, tmax_a);
      const float mn_b = la_max(m_b, tmax_b);
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
        sc[4 * n] = la_exp2(sc[4 * n] - mu_a);
        sc[4 * n + 1] = la_exp2(sc[4 * n + 1] - mu_a);
        sc[4 * n + 2] = la_exp2(sc[4 * n + 2] - mu_b);
        sc[4 * n + 3] = la_exp2(sc[4 * n + 3] - mu_b);
        sum_a += sc[4 * n] + sc[4 * n + 1];
        sum_b += sc[4 * n + 2] + sc[4 * n + 3];
      }
      l_a = l_a * corr_a + sum_a;
      l_b = l_b * corr_b + sum_b;
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        o[4 * n] *= corr_a;
        o[4 * n + 1] *= corr_a;
        o[4 * n + 2] *= corr_b;
        o[4 * n + 3] *= corr_b;
      }
      unsigned int pf[BK / 16][4];
#pragma unroll
      for (int kc = 0; kc < BK / 16; ++kc) {
        pf[kc][0] = la_pack(sc[8 * kc], sc[8 * kc + 1]);
        pf[kc][1] = la_pack(sc[8 * kc + 2], sc[8 * kc + 3]);
        pf[kc][2] = la_pack(sc[8 * kc + 4], sc[8 * kc + 5]);
        pf[kc][3] = la_pack(sc[8 * kc + 6], sc[8 * kc + 7]);
      }
      la_wg_fence();
#pragma unroll
      for (int kc = 0; kc < BK / 16; ++kc) {
        la_wgmma_o(o, pf[kc], la_desc(vs + kc * 256, v_lbo, v_sbo), 1);
      }
      la_wg_commit();
      la_wg_wait();
    }
    la_sync();
  }
  la_cp_wait<0>();

  l_a += la_shfl_xor(l_a, 1);
  l_a += la_shfl_xor(l_a, 2);
  l_b += la_shfl_xor(l_b, 1);
  l_b += la_shfl_xor(l_b, 2);
  const float inv_a = l_a > 0.f ? la_rcp(l_a) : 0.f;
  const float inv_b = l_b > 0.f ? la_rcp(l_b) : 0.f;

  // Each warp parks its 16 rows in the first stage, then writes them out 16 bytes a lane.
  u16* os = reinterpret_cast<u16*>(smem) + warp * 16 * QS;
#pragma unroll
  for (int n = 0; n < NO; ++n) {
    *reinterpret_cast<unsigned int*>(os + g * QS + 8 * n + 2 * t4) =
        la_pack(o[4 * n] * inv_a, o[4 * n + 1] * inv_a);
    *reinterpret_cast<unsigned int*>(os + (g + 8) * QS + 8 * n + 2 * t4) =
        la_pack(o[4 * n + 2] * inv_b, o[4 * n + 3] * inv_b);
  }
  la_syncwarp();
  u16* oh = out + head_off;
  for (int f = lane; f < 16 * DC; f += 32) {
    const int r = f / DC;
    const int c = (f - r * DC) * 8;
    if (wr0 + r < seq) {
      *reinterpret_cast<la_u4*>(oh + (unsigned long long)(wr0 + r) * D + c) =
          *reinterpret_cast<const la_u4*>(os + r * QS + c);
    }
  }
}
"""


def supports(q: mx.array) -> bool:
    """bfloat16/float16 heads of 64 or 128 on a Hopper GPU whose NVRTC can build sm_90a."""
    if q.dtype not in (mx.bfloat16, mx.float16) or q.shape[-1] not in (64, 128):
        return False
    return _hopper()


_is_hopper: bool | None = None


def _hopper() -> bool:
    global _is_hopper
    if _is_hopper is None:
        try:
            _is_hopper = is_available() and nvrtc.compute_capability() == (9, 0)
            nvrtc.library()
        except (OSError, nvrtc.NVRTCError):
            _is_hopper = False
    return _is_hopper


def source(name: str, d: int, left: int, right: int, flags: dict[str, bool], nwg: int) -> str:
    ptx_type = "f16" if flags["half"] else "bf16"
    consts = [
        f"#define LA_HALF {int(flags['half'])}",
        f"#define KERNEL_NAME {name}",
        f"constexpr int D = {d};",
        f"constexpr int L = {left};",
        f"constexpr int R = {right};",
        f"constexpr int NWG = {nwg};",
        f"constexpr bool HAS_BIAS = {str(flags['bias']).lower()};",
        f"constexpr bool BIAS_BCAST = {str(flags['bcast']).lower()};",
        f"constexpr bool HAS_MASK = {str(flags['mask']).lower()};",
    ]
    return (
        "\n".join(consts)
        + HELPERS
        + _wgmma_function("la_wgmma_s", BLOCK_K, ptx_type, 0)
        + _wgmma_function("la_wgmma_o", d, ptx_type, 1)
        + KERNEL
    )


def shared_bytes(d: int, nwg: int, has_bias: bool) -> int:
    block_q = 64 * nwg
    stage = 2 * BLOCK_K * d * ELEMENT_BYTES + (
        block_q * (BLOCK_K + 8) * ELEMENT_BYTES if has_bias else 0
    )
    return 2 * stage


_cubins: dict[str, bytes] = {}


def wgmma_local_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    left: int,
    right: int,
    bias: mx.array | None,
    key_mask: mx.array | None,
    scale: float,
    warpgroups: int = WARPGROUPS,
    descriptor_flags: int | None = None,
) -> mx.array:
    b, h, t, d = q.shape
    flags = {
        "half": q.dtype == mx.float16,
        "bias": bias is not None,
        "bcast": bias is not None and bias.shape[0] == 1,
        "mask": key_mask is not None,
    }
    tag = "".join(str(int(x)) for x in flags.values())
    name = f"la_wgmma_d{d}_l{left}_r{right}_g{warpgroups}_{tag}"
    if name not in _cubins:
        code = source(name, d, left, right, flags, warpgroups)
        _cubins[name] = nvrtc.compile_cubin(code, name, "sm_90a")
    if bias is None:
        bias = mx.zeros((8,), q.dtype)
    elif bias.dtype != q.dtype:
        bias = bias.astype(q.dtype)
    if key_mask is None:
        key_mask = mx.zeros((1,), mx.bool_)
    block_q = 64 * warpgroups
    threads = 128 * warpgroups
    flags_value = DESCRIPTOR_FLAGS if descriptor_flags is None else descriptor_flags
    (out,) = mx.fast.precompiled_cuda_kernel(
        name=name,
        compiled_source=_cubins[name],
        inputs=[q, k, v, bias, key_mask],
        output_shapes=[q.shape],
        output_dtypes=[q.dtype],
        # nanobind takes a Python float as a C float only where that loses nothing.
        scalars=[t, h, b, struct.unpack("f", struct.pack("f", scale))[0], flags_value],
        grid=(-(-t // block_q) * threads, b * h, 1),
        threadgroup=(threads, 1, 1),
        shared_memory=shared_bytes(d, warpgroups, flags["bias"]),
        ensure_row_contiguous=True,
    )
    return out
