"""x @ w.T for a few dozen rows of x, on the tensor cores, with the layer's epilogue fused.

A streaming update multiplies a window of tens of frames by every weight matrix of every
layer. The arithmetic is nothing; through cuBLAS each product cost ~25 us of an evaluation
on an H200 (MLX captures it into its CUDA graph), these 6-13 us. So this is the
product for those shapes, with what follows it in a conformer layer folded in: the bias,
SiLU, and the residual connection (`residual + scale * y`, scale 1 or 0.5).

A block of WARPS warps computes a tile of 16 * MT rows by 8 * NB columns; its warps split
the inner dimension and add their partial tiles through shared memory. Each lane reads 16
contiguous bytes of a row per 32 inputs: the inner index is permuted the same way for x and
w (a sum does not mind the order), so the mma.sync fragments come straight from global
memory without ldmatrix or shared-memory staging.
"""

from __future__ import annotations

import mlx.core as mx

from .cuda_common import custom_kernel
from .cuda_tensor_core import MMA_HEADER

MAX_WARPS = 16  # 8 with wide column tiles: the partial tiles must fit in 48 KB
ROW_TILES = 2  # MT: 32 rows per block
INPUTS = ["x", "w", "bias", "residual"]

SOURCE = r"""
constexpr int BM = 16 * MT;
constexpr int BN = 8 * NB;
constexpr int NT = 32 * WARPS;
constexpr int KW = K / WARPS;  // inner elements per warp, a multiple of 32

const int M = x_shape[0];
const int n0 = blockIdx.x * BN;
const int m0 = blockIdx.y * BM;
const int tid = threadIdx.x;
const int warp = tid >> 5;
const int lane = tid & 31;
const int g = lane >> 2;
const int t4 = lane & 3;

float acc[MT][NB][4];
#pragma unroll
for (int a = 0; a < MT; ++a)
#pragma unroll
  for (int b = 0; b < NB; ++b) acc[a][b][0] = acc[a][b][1] = acc[a][b][2] = acc[a][b][3] = 0.f;

// Lane t4 reads elements 8*t4 .. 8*t4+7 of every 32: words .x/.y feed the first k16 step,
// .z/.w the second, for x and w alike.
const int k_lane = warp * KW + 8 * t4;
const T* w_row[NB];
#pragma unroll
for (int b = 0; b < NB; ++b) w_row[b] = w + (size_t)(n0 + 8 * b + g) * K + k_lane;
const T* x_row[MT][2];
bool x_ok[MT][2];
#pragma unroll
for (int a = 0; a < MT; ++a) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = m0 + 16 * a + g + 8 * h;
    x_ok[a][h] = r < M;
    x_row[a][h] = x + (size_t)(x_ok[a][h] ? r : 0) * K + k_lane;
  }
}

#pragma unroll 2
for (int kc = 0; kc < KW; kc += 32) {
  uint4 wb[NB];
  uint4 xa[MT][2];
#pragma unroll
  for (int b = 0; b < NB; ++b) wb[b] = *reinterpret_cast<const uint4*>(w_row[b] + kc);
#pragma unroll
  for (int a = 0; a < MT; ++a) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      xa[a][h] = x_ok[a][h] ? *reinterpret_cast<const uint4*>(x_row[a][h] + kc)
                            : make_uint4(0u, 0u, 0u, 0u);
    }
  }
#pragma unroll
  for (int a = 0; a < MT; ++a) {
    const unsigned int lo[4] = {xa[a][0].x, xa[a][1].x, xa[a][0].y, xa[a][1].y};
    const unsigned int hi[4] = {xa[a][0].z, xa[a][1].z, xa[a][0].w, xa[a][1].w};
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      la_mma<T>(acc[a][b], lo, wb[b].x, wb[b].y);
      la_mma<T>(acc[a][b], hi, wb[b].z, wb[b].w);
    }
  }
}

__shared__ float partial[WARPS][BM][BN + 1];
#pragma unroll
for (int a = 0; a < MT; ++a)
#pragma unroll
  for (int b = 0; b < NB; ++b)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      partial[warp][16 * a + g + 8 * (e >> 1)][8 * b + 2 * t4 + (e & 1)] = acc[a][b][e];
__syncthreads();

for (int i = tid; i < BM * BN; i += NT) {
  const int r = i / BN;
  const int c = i - r * BN;
  const int m = m0 + r;
  if (m >= M) continue;
  const int n = n0 + c;
  float s = 0.f;
#pragma unroll
  for (int v = 0; v < WARPS; ++v) s += partial[v][r][c];
  if constexpr (HAS_BIAS) s += la_to_float(bias[n]);
  if constexpr (SILU) s = s / (1.f + __expf(-s));
  if constexpr (RESIDUAL) {
    s = la_to_float(residual[(size_t)m * N + n]) + (HALF_RESIDUAL ? 0.5f : 1.f) * s;
  }
  out[(size_t)m * N + n] = static_cast<T>(s);
}
"""


def supports(x: mx.array, w: mx.array) -> bool:
    """16-bit inputs, an inner size of whole 32s, whole column tiles."""
    n, k = w.shape
    return (
        x.dtype in (mx.bfloat16, mx.float16)
        and w.dtype == x.dtype
        and x.ndim == 2
        and x.shape[1] == k
        and k % 32 == 0
        and n % 16 == 0
    )


def warps_for(k: int, column_tiles: int) -> int:
    """The warps that split an inner size k: as many as divide it into 32s, up to 16 (8
    for wide tiles). A block's warps are all the loads in flight on its SM, and these
    products are too small to fill the GPU with blocks."""
    cap = MAX_WARPS if column_tiles <= 2 else MAX_WARPS // 2
    return next(w for w in (16, 8, 4, 2, 1) if w <= cap and k % (32 * w) == 0)


def column_tiles(n: int) -> int:
    """NB, the n8 tiles per block: wide tiles for wide outputs, narrow ones where wide
    tiles would leave most of the GPU idle."""
    return 4 if n >= 4096 else 2


def skinny_linear(
    x: mx.array,
    w: mx.array,
    bias: mx.array | None = None,
    *,
    silu: bool = False,
    residual: mx.array | None = None,
    residual_scale: float = 1.0,
) -> mx.array:
    """epilogue(x @ w.T + bias) for x (M, K) and w (N, K): SiLU if `silu`, then
    `residual + residual_scale * y` if `residual` (M, N) is given. Accumulates in float32,
    rounds once."""
    if residual_scale not in (0.5, 1.0):
        raise ValueError(f"residual_scale must be 0.5 or 1, got {residual_scale}")
    m = x.shape[0]
    n, k = w.shape
    nb = column_tiles(n)
    warps = warps_for(k, nb)
    rows = 16 * ROW_TILES
    placeholder = mx.zeros((1,), x.dtype)
    kernel = custom_kernel("skinny_linear", INPUTS, ["out"], SOURCE, MMA_HEADER)
    (out,) = kernel(
        inputs=[
            x,
            w,
            bias if bias is not None else placeholder,
            residual if residual is not None else placeholder,
        ],
        template=[
            ("T", x.dtype),
            ("K", k),
            ("N", n),
            ("MT", ROW_TILES),
            ("NB", nb),
            ("WARPS", warps),
            ("HAS_BIAS", bias is not None),
            ("SILU", silu),
            ("RESIDUAL", residual is not None),
            ("HALF_RESIDUAL", residual_scale == 0.5),
        ],
        grid=(n // (8 * nb) * 32 * warps, -(-m // rows), 1),
        threadgroup=(32 * warps, 1, 1),
        output_shapes=[(m, n)],
        output_dtypes=[x.dtype],
    )
    return out
