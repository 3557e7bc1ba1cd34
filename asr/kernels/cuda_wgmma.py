"""Local attention for bfloat16/float16 on Hopper (sm_90a) with warpgroup matrix products.

A block of 2 consumer warpgroups (4 warps each; 1 also works) takes chunks of 128 queries
of one (batch, head), 64 rows per warpgroup, and walks the keys their bands cover, 64 at a
time, with an online softmax in registers as in cuda_tensor_core. The two products run on
`wgmma`: the queries and the probabilities are the register operand, the keys and values
are read by the tensor cores straight from shared memory, where cp.async puts them in the
128-byte swizzle layout (K as a K-major operand, V as an MN-major one, read transposed).

- Warp specialization: one more warpgroup, the producer, does every copy, with 40
  registers a thread (setmaxnreg) so that the consumers get 232. Stages pass between them
  on mbarriers (full: copies landed; empty: both consumers done), with no block barrier:
  the consumers never wait for each other, nor issue a copy. On an H200 at 3 hours this
  took the kernel from 1.145 to 1.055 ms, and ping-pong to 1.003 ms.
- Ping-pong: the consumers take turns issuing their products (named barriers 3 and 4),
  so that one's softmax runs while the other's products are on the tensor cores.
- Overlap: each step issues the scores of tile i and the values product of tile i - 1,
  then runs the softmax of tile i while the latter is on the tensor cores.
- Pipeline: 4 stages of K, V and the band term; copies run two tiles ahead.
- Several chunks per block (every G-th chunk of the head, G blocks per head, so that the
  blocks running at one time share their key and value tiles in L2): the copies and the
  next chunk's queries are fetched while the last tiles of a chunk are computed, so only a
  block's first tiles wait on memory.
- The band term is copied as a rectangle of row stride M - 1 (see cuda_tensor_core). On a
  chunk's first and last tiles, the 16-byte pieces of a row wholly outside its band are not
  copied. (No evict-first L2 hint: in the producer's code, ptxas 13 on the H200 put the
  hint's policy in an odd uniform register, and the copy died as an illegal instruction.)
- The output rows leave through shared memory (stmatrix), as 16-byte stores of whole rows;
  the next chunk's queries load during the softmax of a chunk's last tile.
- Softmax: a row's reference maximum moves only when a tile's maximum passes it by more
  than 2^8 (in probability), so the output rows are rescaled on few tiles; probabilities
  stay below 2^8, exact enough in 16 bits and safe to sum in float32.

Compiled by NVRTC for sm_90a (MLX's own kernels are built for sm_90, where wgmma is not
allowed) and run through `mx.fast.precompiled_cuda_kernel`. Measured on an H200 in
bench/local_attention_gpu.py; asr.kernels.cuda picks it for 16-bit heads of 64 and 128.
"""

from __future__ import annotations

import struct

import mlx.core as mx

from . import nvrtc
from .cuda_common import is_available

BLOCK_K = 64
ELEMENT_BYTES = 2
MAX_SHARED_BYTES = 227 * 1024  # per block, on sm_90

# Blocks of 2 warpgroups (128 queries) read each key and value tile from L2 for twice as
# many queries as one warpgroup would, and leave room for 4 stages.
WARPGROUPS = 2
# Registers per thread after setmaxnreg: 128 x (2 x 232 + 40) fills the 64K of a multiprocessor.
PRODUCER_REGS = 40
CONSUMER_REGS = 232
# 8 bytes per mbarrier, two per stage (full and empty).
BARRIER_BYTES_PER_STAGE = 16


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
// The same with constant offsets from both addresses.
template <int SO, int GO>
__device__ __forceinline__ void la_cp16_at(unsigned int dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0+%3], [%1+%4], 16, %2;\n"
               :: "r"(dst), "l"(src), "r"(src_bytes), "n"(SO), "n"(GO) : "memory");
}
__device__ __forceinline__ void la_cp_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void la_cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
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
template <int N> __device__ __forceinline__ void la_wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N) : "memory");
}
// Pins a register array at this point of the program: no access to it moves across.
template <int N> __device__ __forceinline__ void la_fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// Shared-memory matrix descriptors, 128-byte swizzle mode: the low word (address and
// leading stride) and the high word (stride and mode). The 14-bit address field cannot
// overflow within shared memory, so offsets (in 16 bytes) add to the low word.
__device__ __forceinline__ unsigned int la_desc_lo(unsigned int addr, unsigned int lbo) {
  return ((addr & 0x3FFFFu) >> 4) | (((lbo >> 4) & 0x3FFFu) << 16);
}
__device__ __forceinline__ constexpr unsigned long long la_desc_hi(unsigned int sbo) {
  return ((unsigned long long)((sbo >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}
__device__ __forceinline__ float la_shfl_xor(float x, int mask) {
  float r;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(x), "r"(mask));
  return r;
}
__device__ __forceinline__ void la_sync() { asm volatile("bar.sync 0;" ::: "memory"); }
// Ping-pong of the two consumer warpgroups: w waits for its turn to issue products (barrier
// 3 + w) and, having issued them, gives the turn to the other. Each step of each warpgroup
// waits once and passes once, on every path.
__device__ __forceinline__ void la_pp_wait(int wg) {
  if (!PING_PONG) return;
  if (wg == 0) {
    asm volatile("bar.sync 3, 256;" ::: "memory");
  } else {
    asm volatile("bar.sync 4, 256;" ::: "memory");
  }
}
__device__ __forceinline__ void la_pp_pass(int wg) {
  if (!PING_PONG) return;
  if (wg == 0) {
    asm volatile("bar.arrive 4, 256;" ::: "memory");
  } else {
    asm volatile("bar.arrive 3, 256;" ::: "memory");
  }
}
__device__ __forceinline__ void la_mbar_init(unsigned int bar, unsigned int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void la_mbar_arrive(unsigned int bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bar) : "memory");
}
__device__ __forceinline__ void la_mbar_wait(unsigned int bar, unsigned int parity) {
  asm volatile("{\n.reg .pred P1;\nLA_WAIT:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
               "@P1 bra LA_DONE;\nbra LA_WAIT;\nLA_DONE:\n}\n"
               :: "r"(bar), "r"(parity) : "memory");
}
template <int N> __device__ __forceinline__ void la_setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" :: "n"(N));
}
template <int N> __device__ __forceinline__ void la_setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(N));
}
// The 128 threads of consumer warpgroup wg (barrier 0 is the block's).
__device__ __forceinline__ void la_sync_wg(int wg) {
  if (wg == 0) {
    asm volatile("bar.sync 1, 128;" ::: "memory");
  } else {
    asm volatile("bar.sync 2, 128;" ::: "memory");
  }
}
// Four 8x8 16-bit matrices from the fragments of an mma accumulator (one 32-bit word per
// thread and matrix) to shared memory; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void la_stmatrix4(unsigned int addr, unsigned int a, unsigned int b,
                                             unsigned int c, unsigned int d) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};"
               :: "r"(addr), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}
__device__ __forceinline__ void la_stg128(void* p, uint4 v) {
  asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};"
               :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}
__device__ __forceinline__ uint4 la_lds128(unsigned int addr) {
  uint4 r;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "r"(addr) : "memory");
  return r;
}
__device__ __forceinline__ int la_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int la_max_i(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ float la_fma(float a, float b, float c) {
  float r;
  asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(r) : "f"(a), "f"(b), "f"(c));
  return r;
}
__device__ __forceinline__ bool la_any(bool p) {
  unsigned int r;
  asm volatile("{ .reg .pred a, b; setp.ne.u32 a, %1, 0; vote.sync.any.pred b, a, 0xffffffff; "
               "selp.u32 %0, 1, 0, b; }" : "=r"(r) : "r"((unsigned int)p));
  return r != 0;
}
template <bool B> struct la_bool { static constexpr bool value = B; };
template <int I> struct la_int { static constexpr int value = I; };
// f(la_int<0>{}), ..., f(la_int<N - 1>{}): loop indices usable as template arguments.
template <int N, int I = 0, class F> __device__ __forceinline__ void la_static_for(F&& f) {
  if constexpr (I < N) {
    f(la_int<I>{});
    la_static_for<N, I + 1>(f);
  }
}
// Elements between the band term's pointer and the 16-byte boundary below it.
__device__ __forceinline__ long long la_bias_lead(const u16* p) {
  return (long long)((reinterpret_cast<unsigned long long>(p) & 15ull) >> 1);
}
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
// The two 16-bit values of a 32-bit word, low half first.
__device__ __forceinline__ void la_pair_to_float(unsigned int w, float* r) {
#if LA_HALF
  r[0] = la_to_float((u16)(w & 0xFFFFu));
  r[1] = la_to_float((u16)(w >> 16));
#else
  asm("mov.b32 %0, %1;" : "=f"(r[0]) : "r"(w << 16));
  asm("mov.b32 %0, %1;" : "=f"(r[1]) : "r"(w & 0xFFFF0000u));
#endif
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

# Constants defined before this: D, L, R, HAS_BIAS, BIAS_BCAST, HAS_MASK, NWG (consumer
# warpgroups per block), STAGES, PRODUCER_REGS, CONSUMER_REGS, PING_PONG, LA_HALF. Scalars:
# seq, heads, batch, scale.
KERNEL = r"""
extern "C" __global__ void __launch_bounds__(128 * (NWG + 1), 1) KERNEL_NAME(
    const u16* __restrict__ q, const u16* __restrict__ k, const u16* __restrict__ v,
    const u16* __restrict__ bias, const unsigned char* __restrict__ key_mask,
    u16* __restrict__ out, int seq, int heads, int batch, float scale) {
  constexpr int BQ = 64 * NWG;         // query rows of a chunk; a block takes several
  constexpr int BK = 64;
  constexpr int NT = 128 * NWG;
  constexpr int DC = D / 8;            // 16-byte chunks in a row of q, k, v
  constexpr int ATOM = BK * 128;       // one swizzle column: 64 rows of 128 bytes
  constexpr int KV_BYTES = BK * D * 2;
  constexpr int BC = BK / 8 + 1;       // 16-byte chunks of the band term per row and tile
  constexpr int BS = BC * 8;           // row stride of the band-term tile
  constexpr int BIAS_BYTES = HAS_BIAS ? BQ * BS * 2 : 0;
  constexpr int STAGE = (2 * KV_BYTES + BIAS_BYTES + 1023) / 1024 * 1024;
  constexpr int M = L + R + 1;
  constexpr int NS = BK / 8;           // n8 column groups of the scores
  constexpr int NO = D / 8;            // n8 column groups of the output
  constexpr float LOG2E = 1.4426950408889634f;
  const float NEG_INF = la_neg_inf();

  const int bh = blockIdx.y;
  const int bi = bh / heads;
  const int hi = bh - bi * heads;
  const int n_chunks = (seq + BQ - 1) / BQ;
  // Block x takes chunks x, x + G, x + 2G, ... (G blocks per head): the blocks running at
  // one time work on neighbouring chunks, whose key and value tiles are then shared in L2.
  const int c_step = gridDim.x;
  const int q_step = c_step * BQ;
  const int q_end = n_chunks * BQ;
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int t4 = lane & 3;
  const int wg = warp >> 2;

  // Swizzled operands need 1024-byte aligned tiles; the launch asks for 1 KB more.
  extern __shared__ __attribute__((aligned(1024))) unsigned char smem_raw[];
  const unsigned int pad = (1024u - (la_smem(smem_raw) & 1023u)) & 1023u;
  unsigned char* smem = smem_raw + pad;
  const unsigned int sbase = la_smem(smem);
  // full[s]: the producers' copies of stage s have landed; empty[s]: the consumers are done
  // with it. full[s] at bars + 8 s, empty[s] at bars + 8 (STAGES + s).
  const unsigned int bars = sbase + STAGES * STAGE + (HAS_BIAS ? 0 : BQ * D * 2);
  constexpr int NP = 128;  // producer threads
  if (tid == 0) {
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      la_mbar_init(bars + 8 * s, NP);
      la_mbar_init(bars + 8 * (STAGES + s), NT);
    }
  }
  la_sync();

  const unsigned long long head_off = (unsigned long long)bh * seq * D;
  const u16* qh = q + head_off;
  const u16* kh = k + head_off;
  const u16* vh = v + head_off;
  u16* oh = out + head_off;

  // The band term of query row r sits at bias_head + r * M. Chunks start at multiples of
  // 8 rows, so a row's offset within 16 bytes does not depend on its chunk.
  const long long bias_head = la_bias_lead(bias) +
      (long long)((BIAS_BCAST ? 0 : bi) * heads + hi) * seq * M;
  const u16* bias_al = bias - la_bias_lead(bias);
  const long long bias_end =
      la_bias_lead(bias) + (long long)(BIAS_BCAST ? 1 : batch) * heads * seq * M;

  auto first_tile = [&](int q0) { return q0 >= L ? 0 : (L - q0) / BK; };
  auto last_tile = [&](int q0) { return (la_min(seq - 1, q0 + BQ - 1 + R) - (q0 - L)) / BK; };

  // The producer: the last warpgroup.
  if (tid >= NT) {
    la_setmaxnreg_dec<PRODUCER_REGS>();
    const int ptid = tid - NT;
    // K and V rows as 128-byte lines of 64-column swizzle atoms: 16-byte chunk c of row r
    // sits at chunk (c ^ r) of its line, as the 128-byte swizzle mode reads it back. Each
    // thread copies the same chunk of every (NP / DC)-th row of each tile.
    static_assert(NP % DC == 0 && (NP / DC) % 8 == 0 && (BK * DC) % NP == 0, "tile split");
    constexpr int KV_ROWS = NP / DC;
    const int kv_r0 = ptid / DC;
    const int kv_c = ptid - kv_r0 * DC;
    const unsigned int kv_dst0 =
        (kv_c >> 3) * ATOM + kv_r0 * 128 + (((kv_c & 7) ^ (kv_r0 & 7)) << 4);
    // The band term: chunks 0-7 of rows ptid / 8 + (NP / 8) * n, and chunk 8 of row ptid. A
    // row's chunks start at its first element rounded down to 16 bytes; rounding commutes
    // with steps of 8 elements, so one base per thread serves every tile.
    static_assert(NP % 8 == 0 && BQ % (NP / 8) == 0 && BQ <= NP, "band-term split");
    constexpr int B_ROWS = NP / 8;
    const int b_r0 = ptid >> 3;
    const int b_c = ptid & 7;
    const long long b_base = ((bias_head + (long long)b_r0 * (M - 1)) & ~7ll) + 8 * b_c;
    const long long b_last = ((bias_head + (long long)ptid * (M - 1)) & ~7ll) + 8 * (BC - 1);

    // Each thread's first K and V chunk and band-term chunks; a tile adds whole rows to them.
    const u16* kp_thread = kh + kv_r0 * D + kv_c * 8;
    const u16* bp_thread = bias_al + b_base;
    const long long v_from_k = vh - kh;
    const int b_last_from_first = (int)(b_last - b_base);
    // A row's ninth chunk holds keys of the tile only where the row does not start on 16 bytes.
    const bool b_last_needed = ptid < BQ && ((bias_head + (long long)ptid * (M - 1)) & 7) != 0;
    // Whether every band-term copy of chunk q0 up to tile `last` stays inside the buffer
    // (all but the last chunks of the last head), so that they need no test.
    auto bias_inside = [&](int q0, int last) {
      return bias_head + (long long)(q0 + BQ) * M + (long long)last * BK + 8 * BC <= bias_end;
    };

    // The band columns of row r that tile i's band-term chunk c holds start at
    // BK * i + 8 * c - r - (r's offset within 16 bytes); rows read the band rectangle, so a row's
    // first and last tiles of a chunk hold chunks wholly outside its band, which need no copy.
    const int b_lead0 = (int)(bias_head & 7);
    auto row_lead = [&](int r) { return (b_lead0 + r * ((M - 1) & 7)) & 7; };
    const int b_col0 = 8 * b_c - b_r0 + 7;
    const int b_col_last = 8 * (BC - 1) - ptid - row_lead(ptid) + 7;
    auto band_edge = [&](int i) { return BK * i < BQ - 1 || BK * i + 8 * (BC - 1) > M - 1; };
    // Copies key row k0 on (its tile, this thread's chunks from kp) and the band term of tile i
    // of its chunk (this thread's chunks from bp) into stage s.
    auto load_tile = [&](int k0, int i, const u16* kp, const u16* bp, bool bias_safe, int s) {
      const unsigned int ks = sbase + s * STAGE + kv_dst0;
      const unsigned int vs = ks + KV_BYTES;
      if (k0 >= 0 && k0 + BK <= seq) {
        const u16* vp = kp + v_from_k;
        la_static_for<BK / KV_ROWS>([&](auto n) {
          constexpr int N = decltype(n)::value;
          la_cp16_at<N * KV_ROWS * 128, N * KV_ROWS * D * 2>(ks, kp, 16);
          la_cp16_at<N * KV_ROWS * 128, N * KV_ROWS * D * 2>(vs, vp, 16);
        });
      } else {
#pragma unroll
        for (int n = 0; n < BK / KV_ROWS; ++n) {
          const int kj = k0 + kv_r0 + n * KV_ROWS;
          const bool ok = kj >= 0 && kj < seq;
          const int off = ok ? kj * D : 0;
          la_cp16(ks + n * KV_ROWS * 128, kh + kv_c * 8 + off, ok ? 16 : 0);
          la_cp16(vs + n * KV_ROWS * 128, vh + kv_c * 8 + off, ok ? 16 : 0);
        }
      }
      if constexpr (HAS_BIAS) {
        const unsigned int bs = sbase + s * STAGE + 2 * KV_BYTES + (b_r0 * BS + 8 * b_c) * 2;
        const unsigned int bl =
            sbase + s * STAGE + 2 * KV_BYTES + (ptid * BS + 8 * (BC - 1)) * 2;
        if (bias_safe && band_edge(i)) {
          // (unsigned)(first column + 7) <= M + 6: some of the chunk's 8 columns are in the band.
          const int t0 = BK * i + b_col0;
          la_static_for<BQ / B_ROWS>([&](auto n) {
            constexpr int N = decltype(n)::value;
            const unsigned int t = t0 - N * B_ROWS - row_lead(b_r0 + N * B_ROWS);
            la_cp16_at<N * B_ROWS * BS * 2, N * B_ROWS * (M - 1) * 2>(
                bs, bp, t <= (unsigned int)(M + 6) ? 16 : 0);
          });
          if (b_last_needed && (unsigned int)(BK * i + b_col_last) <= (unsigned int)(M + 6)) {
            la_cp16(bl, bp + b_last_from_first, 16);
          }
        } else if (bias_safe) {
          la_static_for<BQ / B_ROWS>([&](auto n) {
            constexpr int N = decltype(n)::value;
            la_cp16_at<N * B_ROWS * BS * 2, N * B_ROWS * (M - 1) * 2>(bs, bp, 16);
          });
          if (b_last_needed) la_cp16(bl, bp + b_last_from_first, 16);
        } else {
          const long long b0 = bp - bias_al;
#pragma unroll
          for (int n = 0; n < BQ / B_ROWS; ++n) {
            const long long a = b0 + (long long)n * B_ROWS * (M - 1);
            const bool ok = a < bias_end;
            la_cp16(bs + n * B_ROWS * BS * 2, bias_al + (ok ? a : 0), ok ? 16 : 0);
          }
          if (b_last_needed) {
            const long long a = b0 + b_last_from_first;
            const bool ok = a < bias_end;
            la_cp16(bl, bias_al + (ok ? a : 0), ok ? 16 : 0);
          }
        }
      }
    };

    // The copies run ahead of the products, across chunk boundaries.
    int load_q0 = blockIdx.x * BQ;
    int load_i = first_tile(load_q0);
    int load_last = last_tile(load_q0);
    int load_k0 = load_q0 - L + load_i * BK;
    // Running copy addresses, kept from tile to tile rather than recomputed from the head's.
    const u16* load_kp = kp_thread + (long long)load_k0 * D;
    const u16* load_bp = bp_thread + ((long long)load_q0 * M + load_i * BK);
    bool load_inside = bias_inside(load_q0, load_last);
    // Tile j goes to stage j % STAGES once the consumers have released tile j - STAGES; its
    // copies are waited for LAG tiles later and announced on full[] (each producer thread's
    // own copies, made visible to the tensor cores' proxy first).
    constexpr int LAG = STAGES - 2;
    unsigned int j = 0;
    while (load_q0 < q_end) {
      // Tile j - LAG is announced before waiting for a stage, so that its consumers never wait
      // on the release of the tile before it.
      if (j >= LAG) {
        la_cp_wait<LAG - 1>();
        la_fence_async();
        la_mbar_arrive(bars + 8 * ((j - LAG) % STAGES));
      }
      const int s = (int)(j % STAGES);
      if (j >= STAGES) la_mbar_wait(bars + 8 * (STAGES + s), ((j / STAGES) - 1) & 1);
      load_tile(load_k0, load_i, load_kp, load_bp, load_inside, s);
      la_cp_commit();
      ++j;
      load_k0 += BK;
      load_kp += BK * D;
      load_bp += BK;
      if (++load_i > load_last) {
        load_q0 += q_step;
        load_i = first_tile(load_q0);
        load_last = last_tile(load_q0);
        load_k0 = load_q0 - L + load_i * BK;
        load_kp = kp_thread + (long long)load_k0 * D;
        load_bp = bp_thread + ((long long)load_q0 * M + load_i * BK);
        load_inside = bias_inside(load_q0, load_last);
      }
    }
    // The last LAG tiles are announced once all copies have landed.
    la_cp_wait<0>();
    la_fence_async();
    for (unsigned int t = j > LAG ? j - LAG : 0; t < j; ++t) {
      la_mbar_arrive(bars + 8 * (t % STAGES));
    }
    return;
  }
  la_setmaxnreg_inc<CONSUMER_REGS>();

  // Q as the register operand: the rows of this warp, the fragments of mma.sync's A,
  // read straight from global memory (rows past the end read the last row; never written).
  unsigned int qf[D / 16][4];
  auto load_q = [&](int q0) {
    const int ra = la_min(q0 + warp * 16 + g, seq - 1);
    const int rb = la_min(q0 + warp * 16 + g + 8, seq - 1);
    const unsigned int* pa = reinterpret_cast<const unsigned int*>(qh + (long long)ra * D) + t4;
    const unsigned int* pb = reinterpret_cast<const unsigned int*>(qh + (long long)rb * D) + t4;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      qf[kk][0] = pa[8 * kk];
      qf[kk][1] = pb[8 * kk];
      qf[kk][2] = pa[8 * kk + 4];
      qf[kk][3] = pb[8 * kk + 4];
    }
  };
  load_q(blockIdx.x * BQ);

  int brow_a = 0;
  int brow_b = 0;
  if constexpr (HAS_BIAS) {
    brow_a = (warp * 16 + g) * BS + (int)((bias_head + (long long)(warp * 16 + g) * (M - 1)) & 7);
    brow_b = (warp * 16 + g + 8) * BS +
             (int)((bias_head + (long long)(warp * 16 + g + 8) * (M - 1)) & 7);
  }
  // With an even row stride every row of the block starts on the same parity, so when that
  // is even each pair of adjacent columns is one aligned 32-bit word.
  const bool bias_pairs = (M - 1) % 2 == 0 && (brow_a & 1) == 0;
  // Descriptor strides: K-major K (leading 16 bytes, 8-row groups 1024 bytes apart);
  // MN-major V (64-column atoms ATOM bytes apart, 8-row groups 1024 bytes apart).
  constexpr unsigned int k_lbo = 16, k_sbo = 1024, v_lbo = ATOM, v_sbo = 1024;

  float o[NO * 4];
#pragma unroll
  for (int n = 0; n < NO * 4; ++n) o[n] = 0.f;
  float sc[NS * 4];
  unsigned int pf[BK / 16][4];
#pragma unroll
  for (int kc = 0; kc < BK / 16; ++kc) pf[kc][0] = pf[kc][1] = pf[kc][2] = pf[kc][3] = 0u;
  float m_a = NEG_INF, m_b = NEG_INF, l_a = 0.f, l_b = 0.f;

  // The chunk being computed, as seen by this thread (set at the top of each chunk).
  int kt0 = 0, wr0 = 0, lo_a = 0, lo_b = 0;
  unsigned int cnt_a = 0, cnt_b = 0;

  // Products are issued here and waited for by the caller.
  auto issue_scores = [&](int s) {
    const unsigned int ks = sbase + s * STAGE;
    const unsigned int kd = la_desc_lo(ks, k_lbo);
    la_fence_regs(sc);
    la_wg_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const unsigned int off = ((kk >> 2) * ATOM + (kk & 3) * 32) >> 4;
      la_wgmma_s(sc, qf[kk], la_desc_hi(k_sbo) | (kd + off), kk > 0);
    }
    la_wg_commit();
  };
  auto issue_values = [&](int s) {
    const unsigned int vs = sbase + s * STAGE + KV_BYTES;
    const unsigned int vd = la_desc_lo(vs, v_lbo);
    la_fence_regs(o);
    la_wg_fence();
#pragma unroll
    for (int kc = 0; kc < BK / 16; ++kc) {
      la_wgmma_o(o, pf[kc], la_desc_hi(v_sbo) | (vd + kc * 2048 / 16), 1);
    }
    la_wg_commit();
  };
  // Scores of tile i to probabilities (in sc), the sums updated; returns the factors the
  // output rows must be rescaled by. Tiles where some key of this warp's rows is out of
  // band, out of the sequence or masked take the EDGE path; the others skip those tests.
  // PAIRS: each two adjacent columns of the band term are one aligned 32-bit word.
  //
  // The maximum a row's probabilities are taken against (m) moves only when the tile's
  // maximum passes it by more than RESCALE_AT (in natural units): probabilities up to
  // 2^8 are exact enough in 16 bits and sum safely in float32, and the output rows are
  // then rescaled only on the few tiles where a row's maximum jumps.
  auto softmax = [&](auto edge_tag, auto pairs_tag, int k0, int s, float& corr_a,
                     float& corr_b) {
    constexpr bool EDGE = decltype(edge_tag)::value;
    constexpr bool PAIRS = decltype(pairs_tag)::value;
    constexpr float RESCALE_AT = 8.f / LOG2E;
    const u16* bs = reinterpret_cast<const u16*>(smem + s * STAGE + 2 * KV_BYTES);
    // The band term first, all loads in flight at once.
    float bv[NS * 4];
    if constexpr (HAS_BIAS && PAIRS) {
      unsigned int words[NS * 2];
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        words[2 * n] = *reinterpret_cast<const unsigned int*>(bs + brow_a + 8 * n + 2 * t4);
        words[2 * n + 1] = *reinterpret_cast<const unsigned int*>(bs + brow_b + 8 * n + 2 * t4);
      }
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        la_pair_to_float(words[2 * n], bv + 4 * n);
        la_pair_to_float(words[2 * n + 1], bv + 4 * n + 2);
      }
    } else if constexpr (HAS_BIAS) {
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        const int col = 8 * n + 2 * t4;
        bv[4 * n] = la_to_float(bs[brow_a + col]);
        bv[4 * n + 1] = la_to_float(bs[brow_a + col + 1]);
        bv[4 * n + 2] = la_to_float(bs[brow_b + col]);
        bv[4 * n + 3] = la_to_float(bs[brow_b + col + 1]);
      }
    }
    float tmax_a = NEG_INF, tmax_b = NEG_INF;
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      const int col = 8 * n + 2 * t4;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = HAS_BIAS ? la_fma(sc[4 * n + e], scale, bv[4 * n + e]) : sc[4 * n + e] * scale;
        if constexpr (EDGE) {
          const int kj = k0 + col + (e & 1);
          bool ok = (unsigned int)(kj - (e < 2 ? lo_a : lo_b)) < (e < 2 ? cnt_a : cnt_b);
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
    // -inf + RESCALE_AT is -inf: a row's first valid key always sets its maximum.
    const float mn_a = tmax_a > m_a + RESCALE_AT ? tmax_a : m_a;
    const float mn_b = tmax_b > m_b + RESCALE_AT ? tmax_b : m_b;
    // A row that has met no valid key yet keeps -inf; subtracting 0 then gives p = 0.
    const float mu_a = (mn_a == NEG_INF ? 0.f : mn_a) * LOG2E;
    const float mu_b = (mn_b == NEG_INF ? 0.f : mn_b) * LOG2E;
    corr_a = mn_a == m_a ? 1.f : la_exp2(la_fma(m_a, LOG2E, -mu_a));
    corr_b = mn_b == m_b ? 1.f : la_exp2(la_fma(m_b, LOG2E, -mu_b));
    m_a = mn_a;
    m_b = mn_b;
    float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      sc[4 * n] = la_exp2(la_fma(sc[4 * n], LOG2E, -mu_a));
      sc[4 * n + 1] = la_exp2(la_fma(sc[4 * n + 1], LOG2E, -mu_a));
      sc[4 * n + 2] = la_exp2(la_fma(sc[4 * n + 2], LOG2E, -mu_b));
      sc[4 * n + 3] = la_exp2(la_fma(sc[4 * n + 3], LOG2E, -mu_b));
      sum_a += sc[4 * n] + sc[4 * n + 1];
      sum_b += sc[4 * n + 2] + sc[4 * n + 3];
    }
    l_a = l_a * corr_a + sum_a;
    l_b = l_b * corr_b + sum_b;
  };
  auto softmax_tile = [&](int i, int s, float& corr_a, float& corr_b) {
    const int k0 = kt0 + i * BK;
    const bool edge = HAS_MASK || k0 < 0 || k0 + BK > seq || k0 < wr0 + 15 - L ||
                      k0 + BK - 1 > wr0 + R;
    if (bias_pairs) {
      if (edge) {
        softmax(la_bool<true>{}, la_bool<true>{}, k0, s, corr_a, corr_b);
      } else {
        softmax(la_bool<false>{}, la_bool<true>{}, k0, s, corr_a, corr_b);
      }
    } else if (edge) {
      softmax(la_bool<true>{}, la_bool<false>{}, k0, s, corr_a, corr_b);
    } else {
      softmax(la_bool<false>{}, la_bool<false>{}, k0, s, corr_a, corr_b);
    }
  };
  auto rescale_and_pack = [&](float corr_a, float corr_b) {
    // Once the maxima settle, most tiles change no row's maximum.
    if (la_any(corr_a != 1.f || corr_b != 1.f)) {
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        o[4 * n] *= corr_a;
        o[4 * n + 1] *= corr_a;
        o[4 * n + 2] *= corr_b;
        o[4 * n + 3] *= corr_b;
      }
    }
#pragma unroll
    for (int kc = 0; kc < BK / 16; ++kc) {
      pf[kc][0] = la_pack(sc[8 * kc], sc[8 * kc + 1]);
      pf[kc][1] = la_pack(sc[8 * kc + 2], sc[8 * kc + 3]);
      pf[kc][2] = la_pack(sc[8 * kc + 4], sc[8 * kc + 5]);
      pf[kc][3] = la_pack(sc[8 * kc + 6], sc[8 * kc + 7]);
    }
  };
  // The rows of chunk o_q0 are complete: normalize them and start afresh (the next softmax
  // rescales o by 0). The warpgroup's own band-term rows of the previous tile hold them on
  // the way out, in passes of as many rows as fit (without a band term, a buffer of their
  // own): this warpgroup has read them, the other reads only its own rows, and the producer
  // waits for the stage's release at the end of this step. stmatrix writes the fragments as
  // 16-byte row pieces, swizzled (piece c of row r at c ^ (r % 8)) so that neither side
  // conflicts, and each thread then stores whole 16-byte pieces: a warp writes two full rows
  // at a time.
  int o_q0 = blockIdx.x * BQ;
  int q_loaded = blockIdx.x * BQ;  // the chunk whose queries qf holds
  constexpr int OUT_ROW = D * 2;
  auto finish_chunk = [&](int s_prev) {
    l_a += la_shfl_xor(l_a, 1);
    l_a += la_shfl_xor(l_a, 2);
    l_b += la_shfl_xor(l_b, 1);
    l_b += la_shfl_xor(l_b, 2);
    const float inv_a = l_a > 0.f ? la_rcp(l_a) : 0.f;
    const float inv_b = l_b > 0.f ? la_rcp(l_b) : 0.f;
    if (o_q0 + q_step < q_end && q_loaded != o_q0 + q_step) {
      q_loaded = o_q0 + q_step;
      load_q(q_loaded);
    }
    // This warpgroup's band-term rows of the previous tile, or a buffer of its own.
    constexpr int OWN_BYTES = HAS_BIAS ? 64 * BS * 2 : 64 * OUT_ROW;
    constexpr int PASS_ROWS = OWN_BYTES / OUT_ROW >= 64 ? 64 : OWN_BYTES / OUT_ROW / 16 * 16;
    static_assert(PASS_ROWS >= 16 && 64 % PASS_ROWS == 0, "output passes");
    const unsigned int ob = HAS_BIAS ? sbase + s_prev * STAGE + 2 * KV_BYTES + wg * OWN_BYTES
                                     : sbase + STAGES * STAGE + wg * OWN_BYTES;
    const int row0 = o_q0 + wg * 64;
    const int wt = tid & 127;
    constexpr int PIECES = PASS_ROWS * DC / 128;
    constexpr int PIECE_ROWS = 128 / DC;
    const int r0 = wt / DC;
    const int c = wt - r0 * DC;
    const int mi = lane >> 3;
    const int wr = (warp & 3) * 16 + (mi & 1) * 8 + (lane & 7);  // this lane's stmatrix row
    if constexpr (HAS_BIAS) la_sync_wg(wg);
#pragma unroll
    for (int pass = 0; pass < 64 / PASS_ROWS; ++pass) {
      if (wr / PASS_ROWS == pass) {
        const int r = wr - pass * PASS_ROWS;
        const unsigned int row = ob + r * OUT_ROW;
#pragma unroll
        for (int j = 0; j < NO / 2; ++j) {
          const int cc = 2 * j + (mi >> 1);
          la_stmatrix4(row + ((cc ^ (r & 7)) << 4),
                       la_pack(o[8 * j] * inv_a, o[8 * j + 1] * inv_a),
                       la_pack(o[8 * j + 2] * inv_b, o[8 * j + 3] * inv_b),
                       la_pack(o[8 * j + 4] * inv_a, o[8 * j + 5] * inv_a),
                       la_pack(o[8 * j + 6] * inv_b, o[8 * j + 7] * inv_b));
        }
      }
      la_sync_wg(wg);
      uint4 piece[PIECES];
#pragma unroll
      for (int it = 0; it < PIECES; ++it) {
        const int r = r0 + it * PIECE_ROWS;
        piece[it] = la_lds128(ob + r * OUT_ROW + ((c ^ (r & 7)) << 4));
      }
      const int prow = row0 + pass * PASS_ROWS + r0;
      u16* op = oh + (long long)prow * D + c * 8;
#pragma unroll
      for (int it = 0; it < PIECES; ++it) {
        if (prow + it * PIECE_ROWS < seq) la_stg128(op + it * PIECE_ROWS * D, piece[it]);
      }
      if (pass + 1 < 64 / PASS_ROWS) la_sync_wg(wg);
    }
    m_a = m_b = NEG_INF;
    l_a = l_b = 0.f;
  };

  // Each step multiplies Q by one tile's keys and, meanwhile, the probabilities of the
  // tile before by its values, so that the tensor cores work during the softmax. A
  // warpgroup's first tile of a chunk has no product of values before it and its last one
  // is followed by a step with that product alone, where the chunk's rows are stored.
  // Each branch issues and waits for its own products (ptxas serializes wgmma otherwise).
  unsigned int js = 0;  // tiles consumed so far; tile js sits in stage js % STAGES
  if (wg == 1) la_pp_pass(wg);  // warpgroup 0 issues first
  bool pending = false;
  for (int c = blockIdx.x; c < n_chunks; c += c_step) {
    const int q0 = c * BQ;
    kt0 = q0 - L;
    wr0 = q0 + warp * 16;
    const int gr0 = q0 + wg * 64;
    const int i_first = first_tile(q0);
    const int i_last = last_tile(q0);
    const bool wg_live = gr0 < seq;
    const int w_first = wg_live ? (la_max_i(gr0 - L, 0) - kt0) / BK : 1 << 30;
    const int w_last = wg_live ? (la_min(seq - 1, gr0 + 63 + R) - kt0) / BK : -1;
    // The keys rows qa and qb may attend to: cnt from lo on (none for rows past the end).
    const int qa = wr0 + g;
    const int qb = qa + 8;
    lo_a = la_max_i(qa - L, 0);
    lo_b = la_max_i(qb - L, 0);
    cnt_a = (unsigned int)la_max_i(la_min(qa + R, seq - 1) - lo_a + 1, 0);
    cnt_b = (unsigned int)la_max_i(la_min(qb + R, seq - 1) - lo_b + 1, 0);
    const int i_stop = c + c_step >= n_chunks ? i_last + 1 : i_last;
    for (int i = i_first; i <= i_stop; ++i) {
      const int s_cur = (int)(js % STAGES);
      if (i <= i_last) la_mbar_wait(bars + 8 * s_cur, (js / STAGES) & 1);
      la_pp_wait(wg);
      const int s_prev = (int)((js + STAGES - 1) % STAGES);
      const bool do_s = i >= w_first && i <= w_last;
      float corr_a, corr_b;
      if (do_s && pending && o_q0 == q0) {
        issue_scores(s_cur);
        issue_values(s_prev);
        la_pp_pass(wg);
        la_wg_wait<1>();
        la_fence_regs(sc);
        // The chunk's last product with the queries is done: the next chunk's queries load
        // during the softmax.
        if (i == w_last && q0 + q_step < q_end) {
          q_loaded = q0 + q_step;
          load_q(q_loaded);
        }
        softmax_tile(i, s_cur, corr_a, corr_b);
        // The previous tile's product must be done before the output rows are rescaled
        // and the probability registers refilled.
        la_wg_wait<0>();
        la_fence_regs(o);
        rescale_and_pack(corr_a, corr_b);
      } else if (do_s) {
        if (pending) {
          // The previous chunk's last product was left for this step (no step was free
          // for it: one warpgroup per block, or the end of the sequence is near).
          issue_values(s_prev);
          la_wg_wait<0>();
          la_fence_regs(o);
          finish_chunk(s_prev);
        }
        o_q0 = q0;
        issue_scores(s_cur);
        la_pp_pass(wg);
        la_wg_wait<0>();
        la_fence_regs(sc);
        softmax_tile(i, s_cur, corr_a, corr_b);
        rescale_and_pack(corr_a, corr_b);
        pending = true;
      } else if (pending) {
        issue_values(s_prev);
        la_pp_pass(wg);
        la_wg_wait<0>();
        la_fence_regs(o);
        finish_chunk(s_prev);
        pending = false;
      } else {
        la_pp_pass(wg);
      }
      // Tile js - 1 is done with: its values product, softmax and (at a chunk's end) the
      // output rows that passed through its stage.
      if (js > 0) la_mbar_arrive(bars + 8 * (STAGES + s_prev));
      if (i <= i_last) ++js;
    }
  }
}
"""


def supports(q: mx.array) -> bool:
    """bfloat16/float16 heads of 64 or 128 on a Hopper GPU whose NVRTC can build sm_90a.

    A head's offsets (length x head size) must fit 32 bits: about 370 hours of audio at
    80 ms per frame.
    """
    if q.dtype not in (mx.bfloat16, mx.float16) or q.shape[-1] not in (64, 128):
        return False
    if q.shape[-2] * q.shape[-1] >= 2**31:
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


def source(
    name: str, d: int, left: int, right: int, flags: dict[str, bool], nwg: int, stages: int
) -> str:
    ptx_type = "f16" if flags["half"] else "bf16"
    consts = [
        f"#define LA_HALF {int(flags['half'])}",
        f"#define KERNEL_NAME {name}",
        f"constexpr int D = {d};",
        f"constexpr int L = {left};",
        f"constexpr int R = {right};",
        f"constexpr int NWG = {nwg};",
        f"constexpr int STAGES = {stages};",
        f"constexpr int PRODUCER_REGS = {PRODUCER_REGS};",
        f"constexpr int CONSUMER_REGS = {CONSUMER_REGS};",
        f"constexpr bool PING_PONG = {str(nwg == 2).lower()};",
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


def stage_bytes(d: int, nwg: int, has_bias: bool) -> int:
    """K and V tiles and the band term's rows, rounded up to 1 KB (the swizzle's alignment)."""
    block_q = 64 * nwg
    stage = 2 * BLOCK_K * d * ELEMENT_BYTES
    stage += block_q * (BLOCK_K + 8) * ELEMENT_BYTES if has_bias else 0
    return -(-stage // 1024) * 1024


def output_bytes(d: int, nwg: int, has_bias: bool) -> int:
    """The buffer the output rows leave through, where no stage has room for them."""
    return 0 if has_bias else 64 * nwg * d * ELEMENT_BYTES


def pipeline_stages(d: int, nwg: int, has_bias: bool) -> int:
    """As many stages as fit, up to 4 (two tiles in flight while two are computed on)."""
    room = MAX_SHARED_BYTES - 1024 - output_bytes(d, nwg, has_bias)
    room -= 4 * BARRIER_BYTES_PER_STAGE
    return min(4, room // stage_bytes(d, nwg, has_bias))


def shared_bytes(d: int, nwg: int, has_bias: bool) -> int:
    stages = pipeline_stages(d, nwg, has_bias)
    stages_and_barriers = stages * (stage_bytes(d, nwg, has_bias) + BARRIER_BYTES_PER_STAGE)
    # 1 KB to align the first stage
    return stages_and_barriers + output_bytes(d, nwg, has_bias) + 1024


_cubins: dict[str, bytes] = {}
_multiprocessors: int | None = None

# One block runs on a multiprocessor at a time (shared memory), so blocks of equal work run
# in waves, and a last wave that fills few multiprocessors leaves the rest idle. At least 2
# waves, so that blocks that end early are followed by others.
MIN_WAVES = 2


def chunks_per_block(chunks: int, heads: int, multiprocessors: int | None = None) -> int:
    """How many chunks of queries one block takes (every G-th chunk of its head).

    A block's first tiles and queries load with nothing to overlap them with; taking several
    chunks, it loads the next chunk's tiles and queries while computing the last one's. The
    count minimizes waves x (chunks per block + 1), the last term for a block's start: on an
    H200 at 3 hours (8 heads of 1055 chunks) it takes 32 chunks per block (2 full waves) where
    7 (9.2 waves, the last one 15% full) took 1.18 ms against 1.14 ms (before the producer
    warpgroup; with it, 8, 16 and 32 chunks per block took 0.997, 1.011 and 1.029 ms, within
    the noise of one another).
    """
    global _multiprocessors
    if multiprocessors is None:
        if _multiprocessors is None:
            _multiprocessors = nvrtc.multiprocessor_count()
        multiprocessors = _multiprocessors
    best, best_cost = 1, None
    for per_block in range(1, chunks + 1):
        blocks = -(-chunks // per_block) * heads
        waves = -(-blocks // multiprocessors)
        if waves < MIN_WAVES and per_block > 1:
            break
        cost = waves * (per_block + 1)
        if best_cost is None or cost < best_cost:
            best, best_cost = per_block, cost
    return best


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
    per_block: int | None = None,
) -> mx.array:
    """`per_block`: chunks of 64 * `warpgroups` queries per block (default: a few waves)."""
    b, h, t, d = q.shape
    flags = {
        "half": q.dtype == mx.float16,
        "bias": bias is not None,
        "bcast": bias is not None and bias.shape[0] == 1,
        "mask": key_mask is not None,
    }
    tag = "".join(str(int(x)) for x in flags.values())
    if warpgroups not in (1, 2):
        raise ValueError(f"the warpgroup kernel takes 1 or 2 warpgroups, not {warpgroups}")
    stages = pipeline_stages(d, warpgroups, flags["bias"])
    if stages < 3:
        raise ValueError(f"{warpgroups} warpgroups with heads of {d} leave no room for 3 stages")
    name = f"la_wgmma_d{d}_l{left}_r{right}_g{warpgroups}_s{stages}_{tag}"
    if name not in _cubins:
        code = source(name, d, left, right, flags, warpgroups, stages)
        _cubins[name] = nvrtc.compile_cubin(code, name, "sm_90a")
    if bias is None:
        bias = mx.zeros((8,), q.dtype)
    elif bias.dtype != q.dtype:
        bias = bias.astype(q.dtype)
    if key_mask is None:
        key_mask = mx.zeros((1,), mx.bool_)
    block_q = 64 * warpgroups
    threads = 128 * (warpgroups + 1)
    chunks = -(-t // block_q)
    if per_block is None:
        per_block = chunks_per_block(chunks, b * h)
    (out,) = mx.fast.precompiled_cuda_kernel(
        name=name,
        compiled_source=_cubins[name],
        inputs=[q, k, v, bias, key_mask],
        output_shapes=[q.shape],
        output_dtypes=[q.dtype],
        # nanobind takes a Python float as a C float only where that loses nothing.
        scalars=[t, h, b, struct.unpack("f", struct.pack("f", scale))[0]],
        grid=(-(-chunks // per_block) * threads, b * h, 1),
        threadgroup=(threads, 1, 1),
        shared_memory=shared_bytes(d, warpgroups, flags["bias"]),
        ensure_row_contiguous=True,
    )
    return out
