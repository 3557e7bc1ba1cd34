"""Greedy TDT/RNNT decoding as one CUDA kernel: the whole search over a chunk of frames
runs on the GPU, with one launch and one host sync per chunk.

The host loop (decoding.greedy) is bound by reading the prediction and joint weights
(about 21 MB in float32 for the 0.6b models) once per emitted token through host memory.
On an NVIDIA GPU the weights stay in its L2 cache, but a step launched from the host as
separate operations costs tens of microseconds of launches and syncs. So the kernel keeps
the search on the device: a fixed grid of one block per multiprocessor (all resident at
once) walks the frames together, meeting at a grid-wide barrier (a global atomic counter)
between the phases that depend on each other:

    LSTM layer 0 | LSTM layer 1 | ... | prediction projection | joint over 1..8 frames

Every block then reads the same logits and computes the same argmax, log-softmax and
durations itself, so all blocks take the same branch of NeMo's greedy rules without
another barrier; block 0 writes the emitted tokens. A warp computes the four gate rows of
one LSTM unit (and finishes that unit's cell update), or one row of the joint's output
layer for each frame of the look-ahead.

The rules are exactly greedy_transducer's (max_symbols, duration-0 blanks, label looping),
on the same float32 weights (the TransducerStepper's tables); sums run in another order
than the host's BLAS, so logits agree to float32 rounding, not bit for bit.

Measured on an H200 with parakeet-tdt-0.6b's decoder (bench/decode_step.py): 0.034 ms per
step, against 0.40 ms for the host loop and 0.64 ms for parakeet-mlx; a grid barrier of
132 blocks costs about 1.4 microseconds.

If the grid barrier waits longer than about two seconds (the blocks could not all be
resident, say on a GPU shared with other work), the kernel gives up and the host loop
decodes the chunk instead.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

import mlx.core as mx
import numpy as np

from .greedy import Hypothesis
from .stepper import DecoderState, TransducerStepper

THREADS = 256
MAX_LOOKAHEAD = 8
# Tokens a chunk may emit per frame before the kernel gives the chunk back to the host
# (only reachable with max_symbols unset or above it).
TOKENS_PER_FRAME = 16
HEADER_INTS = 8  # status, tokens, steps, next frame, last token, input state kept, done, -

STATUS_OK = 0
# The barrier's counter and flag live in an output of their own, larger than 8 bytes: MLX
# serves allocations of up to 8 bytes from a pool of managed memory marked read-mostly,
# where every atomic write would cost a page fault.
SYNC_WORDS = 64
SHARED_MEMORY_LIMIT = 48 * 1024  # static shared memory of one block

_ACTIVATIONS = {"relu": 0, "tanh": 1, "sigmoid": 2}

HEADER = r"""
#define GD_TIMEOUT_CYCLES 4000000000LL

__device__ __forceinline__ float gd_sigmoid(float x) { return 0.5f * (tanhf(0.5f * x) + 1.0f); }

__device__ __forceinline__ float gd_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// All blocks meet here. sync[0] counts arrivals over the whole launch (target = number of
// barriers passed x blocks); sync[1] is set when one block timed out, and all give up.
__device__ bool gd_grid_sync(unsigned int* sync, unsigned int target) {
  __shared__ int gd_ok;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(sync, 1u);
    volatile unsigned int* count = sync;
    volatile unsigned int* abort_flag = sync + 1;
    const long long t0 = clock64();
    int ok = 1;
    while (*count < target) {
      if (*abort_flag != 0u) { ok = 0; break; }
      if (clock64() - t0 > GD_TIMEOUT_CYCLES) { *abort_flag = 1u; ok = 0; break; }
    }
    __threadfence();
    gd_ok = ok;
  }
  __syncthreads();
  return gd_ok != 0;
}

// Block-wide argmax (first index among equal maxima) of one value per thread.
template <int NT>
__device__ void gd_block_argmax(float v, int i, float* out_v, int* out_i) {
  __shared__ float sv[NT / 32];
  __shared__ int si[NT / 32];
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) { sv[threadIdx.x >> 5] = v; si[threadIdx.x >> 5] = i; }
  __syncthreads();
  v = sv[0]; i = si[0];
  for (int w = 1; w < NT / 32; ++w) {
    if (sv[w] > v || (sv[w] == v && si[w] < i)) { v = sv[w]; i = si[w]; }
  }
  *out_v = v; *out_i = i;
}

template <int NT>
__device__ float gd_block_sum(float v) {
  __shared__ float ss[NT / 32];
  v = gd_warp_sum(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) ss[threadIdx.x >> 5] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < NT / 32; ++w) total += ss[w];
  return total;
}

template <int ACT>
__device__ __forceinline__ float gd_activation(float x) {
  if (ACT == 0) return fmaxf(x, 0.0f);
  if (ACT == 1) return tanhf(x);
  return gd_sigmoid(x);
}
"""

# Template constants: HS (LSTM hidden), LAYERS, J (joint hidden), N (joint outputs), NTOK
# (vocabulary + blank), ND (durations; 0 for RNNT), KMAX (look-ahead frames), NT (threads),
# ACT (joint activation). Runtime values in `ip`: start frame, stop frame, max symbols,
# label looping, last token (-1: none), frames in enc, token capacity.
SOURCE = r"""
constexpr int NW = NT / 32;
constexpr int BLANK = NTOK - 1;
const int lane = threadIdx.x & 31;
const unsigned int nblocks = gridDim.x;
const int nwarps = NW * (int)nblocks;
const int gw = (int)(threadIdx.x >> 5) * (int)nblocks + (int)blockIdx.x;
const bool lead = blockIdx.x == 0;

const int start = ip[0];
const int length = ip[1];
const int limit = ip[2];
const bool label_looping = ip[3] != 0;
const int first_token = ip[4];
const int frames = ip[5];
const int cap = ip[6];

float* slot_h = scratch;                         // [2][LAYERS][HS]
float* slot_c = slot_h + 2 * LAYERS * HS;        // [2][LAYERS][HS]
float* pred = slot_c + 2 * LAYERS * HS;          // [J]
float* logits = pred + J;                        // [2][KMAX][N]

__shared__ float vin[2 * HS];
__shared__ float act[KMAX * J];
__shared__ int decided[2];
__shared__ float decided_f[2];

unsigned int epoch = 0;

// One token through the LSTM (state from h_src/c_src into h_dst/c_dst), then the joint's
// projection of the last layer's output into `pred`. Ends at a barrier.
auto predict = [&](int token, const float* h_src, const float* c_src, float* h_dst,
                   float* c_dst) -> bool {
  const int row = token < 0 ? BLANK : token;
  for (int l = 0; l < LAYERS; ++l) {
    __syncthreads();
    if (l == 0) {
      for (int i = threadIdx.x; i < HS; i += NT) vin[i] = __ldcg(h_src + i);
    } else {
      for (int i = threadIdx.x; i < HS; i += NT) {
        vin[i] = __ldcg(h_dst + (l - 1) * HS + i);
        vin[HS + i] = __ldcg(h_src + l * HS + i);
      }
    }
    __syncthreads();
    const int K = l == 0 ? HS : 2 * HS;
    const float* W = l == 0 ? w0 : wl + (size_t)(l - 1) * 4 * HS * 2 * HS;
    for (int u = gw; u < HS; u += nwarps) {
      const float* r0 = W + (size_t)u * K;
      const float* r1 = r0 + (size_t)HS * K;
      const float* r2 = r1 + (size_t)HS * K;
      const float* r3 = r2 + (size_t)HS * K;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
      for (int i = lane; i < K; i += 32) {
        const float x = vin[i];
        a0 += r0[i] * x;
        a1 += r1[i] * x;
        a2 += r2[i] * x;
        a3 += r3[i] * x;
      }
      a0 = gd_warp_sum(a0);
      a1 = gd_warp_sum(a1);
      a2 = gd_warp_sum(a2);
      a3 = gd_warp_sum(a3);
      if (lane == 0) {
        const float* b = l == 0 ? tg + (size_t)row * 4 * HS : bl + (size_t)(l - 1) * 4 * HS;
        a0 += b[u];
        a1 += b[HS + u];
        a2 += b[2 * HS + u];
        a3 += b[3 * HS + u];
        const float c = gd_sigmoid(a1) * __ldcg(c_src + l * HS + u) + gd_sigmoid(a0) * tanhf(a2);
        c_dst[l * HS + u] = c;
        h_dst[l * HS + u] = gd_sigmoid(a3) * tanhf(c);
      }
    }
    epoch += 1;
    if (!gd_grid_sync(sync, epoch * nblocks)) return false;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < HS; i += NT) vin[i] = __ldcg(h_dst + (LAYERS - 1) * HS + i);
  __syncthreads();
  for (int j = gw; j < J; j += nwarps) {
    const float* r = pw + (size_t)j * HS;
    float a = 0.0f;
    for (int i = lane; i < HS; i += 32) a += r[i] * vin[i];
    a = gd_warp_sum(a);
    if (lane == 0) pred[j] = a + pb[j];
  }
  epoch += 1;
  return gd_grid_sync(sync, epoch * nblocks);
};

// Joint outputs of frames [t0, t0 + kn) for the current prediction, into `out`.
auto joint = [&](int t0, int kn, float* out) -> bool {
  __syncthreads();
  for (int idx = threadIdx.x; idx < kn * J; idx += NT) {
    const int k = idx / J;
    const int i = idx - k * J;
    act[idx] = gd_activation<ACT>(enc[(size_t)(t0 + k) * J + i] + __ldcg(pred + i));
  }
  __syncthreads();
  for (int n = gw; n < N; n += nwarps) {
    const float* r = ow + (size_t)n * J;
    float acc[KMAX];
#pragma unroll
    for (int k = 0; k < KMAX; ++k) acc[k] = 0.0f;
    for (int i = lane; i < J; i += 32) {
      const float w = r[i];
#pragma unroll
      for (int k = 0; k < KMAX; ++k) {
        if (k < kn) acc[k] += w * act[k * J + i];
      }
    }
#pragma unroll
    for (int k = 0; k < KMAX; ++k) {
      if (k < kn) {
        const float s = gd_warp_sum(acc[k]);
        if (lane == 0) out[k * N + n] = s + ob[n];
      }
    }
  }
  epoch += 1;
  return gd_grid_sync(sync, epoch * nblocks);
};

if (!predict(first_token, h0, c0, slot_h, slot_c)) return;
int cur = 0;          // slot of the state after the last token (host: next_state)
int committed = -1;   // slot of the hypothesis' state (host: hyp.state); -1: the input's
int last_token = first_token;
int ntok = 0, steps = 0, status = 0;
double score = 0.0;
int ahead_from = 0, ahead_n = 0, lookahead = 1, buf = 0;
int* out_tokens = ires + 8;
int* out_frames = out_tokens + cap;
int* out_durations = out_frames + cap;
float* out_conf = fres + 2;
int t = start;
while (t < length && status == 0) {
  int symbols = 0;
  while (true) {
    if (!(ahead_from <= t && t < ahead_from + ahead_n)) {
      if (ahead_n > 0) lookahead = min(2 * lookahead, KMAX);
      const int kn = min(lookahead, frames - t);
      buf ^= 1;
      if (!joint(t, kn, logits + buf * KMAX * N)) return;
      ahead_from = t;
      ahead_n = kn;
    }
    const float* row = logits + buf * KMAX * N + (t - ahead_from) * N;
    // the token: argmax and log-softmax over vocabulary + blank
    float best = -cuda::std::numeric_limits<float>::infinity();
    int best_i = 0x7fffffff;
    for (int i = threadIdx.x; i < NTOK; i += NT) {
      const float v = __ldcg(row + i);
      if (v > best) { best = v; best_i = i; }
    }
    float m;
    int k;
    gd_block_argmax<NT>(best, best_i, &m, &k);
    float part = 0.0f;
    for (int i = threadIdx.x; i < NTOK; i += NT) part += expf(__ldcg(row + i) - m);
    const float log_sum = logf(gd_block_sum<NT>(part));
    const float token_logp = -log_sum;  // (x_k - max) - log(sum exp(x - max)), x_k = max
    int skip;
    if (ND > 0) {
      if (threadIdx.x == 0) {
        float dm = __ldcg(row + NTOK);
        int d = 0;
        for (int i = 1; i < ND; ++i) {
          const float v = __ldcg(row + NTOK + i);
          if (v > dm) { dm = v; d = i; }
        }
        float ds = 0.0f;
        for (int i = 0; i < ND; ++i) ds += expf(__ldcg(row + NTOK + i) - dm);
        decided[0] = d;
        decided_f[0] = -logf(ds);
      }
      __syncthreads();
      const int d = decided[0];
      skip = dur[d];
      score += (double)(token_logp + decided_f[0]);
      __syncthreads();
    } else {
      skip = k == BLANK ? 1 : 0;
      score += (double)token_logp;
    }
    symbols += 1;
    steps += 1;
    if (k == BLANK && skip == 0) {
      t += 1;
      break;
    }
    if (k != BLANK) {
      if (ntok >= cap) {  // more tokens than the outputs hold: the host takes the chunk
        status = 1;
        break;
      }
      if (lead) {
        // confidence: 1 - entropy / log(classes)
        float e = 0.0f;
        for (int i = threadIdx.x; i < NTOK; i += NT) {
          const float lp = (__ldcg(row + i) - m) - log_sum;
          e += expf(lp) * lp;
        }
        e = gd_block_sum<NT>(e);
        if (threadIdx.x == 0) {
          out_tokens[ntok] = k;
          out_frames[ntok] = t;
          out_durations[ntok] = ND > 0 ? skip : 1;
          out_conf[ntok] = -e;  // the entropy; the host turns it into the confidence
        }
      }
      ntok += 1;
      committed = cur;
      last_token = k;
      const int nxt = 1 - cur;
      if (!predict(k, slot_h + cur * LAYERS * HS, slot_c + cur * LAYERS * HS,
                   slot_h + nxt * LAYERS * HS, slot_c + nxt * LAYERS * HS)) return;
      cur = nxt;
      ahead_n = 0;
      lookahead = 1;
    }
    t += skip;
    if (symbols >= limit) {
      if (skip == 0 || (ND > 0 && !label_looping)) t += 1;
      break;
    }
    if (skip > 0) break;
  }
}
if (lead) {
  const float* h_src = committed < 0 ? h0 : slot_h + committed * LAYERS * HS;
  const float* c_src = committed < 0 ? c0 : slot_c + committed * LAYERS * HS;
  float* h_out = fres + 2 + cap;
  float* c_out = h_out + LAYERS * HS;
  for (int i = threadIdx.x; i < LAYERS * HS; i += NT) {
    h_out[i] = __ldcg(h_src + i);
    c_out[i] = __ldcg(c_src + i);
  }
  if (threadIdx.x == 0) {
    ires[0] = status;
    ires[1] = ntok;
    ires[2] = steps;
    ires[3] = t;
    ires[4] = last_token;
    ires[5] = committed < 0 ? 1 : 0;
    ires[6] = 1;  // finished (a launch that gave up leaves 0)
    const float hi = (float)score;
    fres[0] = hi;
    fres[1] = (float)(score - (double)hi);
  }
}
"""


def is_available() -> bool:
    """The CUDA backend runs MLX's default device, and the kernel was not turned off
    (PARAKEET_CUDA_GREEDY=0)."""
    if os.environ.get("PARAKEET_CUDA_GREEDY", "1") == "0":
        return False
    try:
        cuda = getattr(mx, "cuda", None)
        return cuda is not None and cuda.is_available() and mx.default_device().type == mx.gpu
    except Exception:
        return False


@cache
def multiprocessor_count() -> int:
    """The GPU's multiprocessors, from the CUDA driver (a conservative guess without it)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        if lib.cuInit(0) != 0:
            return 16
        device = ctypes.c_int()
        if lib.cuDeviceGet(ctypes.byref(device), 0) != 0:  # MLX computes on device 0
            return 16
        count = ctypes.c_int()
        # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
        if lib.cuDeviceGetAttribute(ctypes.byref(count), 16, device) != 0:
            return 16
        return max(1, count.value)
    except Exception:
        return 16


def _device(array: np.ndarray) -> mx.array:
    return mx.array(np.ascontiguousarray(array, dtype=np.float32))


class CudaGreedy:
    """Device copies of a TransducerStepper's tables and the kernel that searches with them."""

    def __init__(self, stepper: TransducerStepper):
        self.stepper = stepper
        layers, hidden = stepper.layers, stepper.hidden
        self.layers, self.hidden = layers, hidden
        self.joint_hidden = stepper.pred_w.shape[1]
        self.outputs = stepper.out_w.shape[1]
        self.activation = _ACTIVATIONS[stepper.activation_name]
        # rows are outputs, so a warp reads one row contiguously
        self.token_gates = _device(stepper.token_gates)
        self.w0 = _device(stepper.recurrent[0].T)
        if layers > 1:
            self.wl = _device(
                np.stack(
                    [
                        np.concatenate([stepper.inputs[i].T, stepper.recurrent[i].T], axis=1)
                        for i in range(1, layers)
                    ]
                )
            )
            self.bl = _device(np.stack(stepper.biases[1:]))
        else:
            self.wl = mx.zeros((1,), mx.float32)
            self.bl = mx.zeros((1,), mx.float32)
        self.pw = _device(stepper.pred_w.T)
        self.pb = _device(stepper.pred_b)
        self.ow = _device(stepper.out_w.T)
        self.ob = _device(stepper.out_b)
        mx.eval(self.token_gates, self.w0, self.wl, self.bl, self.pw, self.pb, self.ow, self.ob)
        self.lookahead = max(1, min(MAX_LOOKAHEAD, 8192 // self.joint_hidden))
        self.blocks = multiprocessor_count()
        self.gave_up = 0  # chunks handed back to the host (barrier timeout, too many tokens)
        self._kernel = None

    @property
    def supported(self) -> bool:
        """Whether the kernel's shared memory holds this model's vectors."""
        floats = 2 * self.hidden + self.lookahead * self.joint_hidden
        return 4 * floats + 1024 <= SHARED_MEMORY_LIMIT

    def _compiled(self):
        if self._kernel is None:
            self._kernel = mx.fast.cuda_kernel(
                name="parakeet_greedy_transducer",
                input_names=["enc", "tg", "w0", "wl", "bl", "pw", "pb", "ow", "ob"]
                + ["h0", "c0", "dur", "ip"],
                output_names=["ires", "fres", "scratch", "sync"],
                source=SOURCE,
                header=HEADER,
                ensure_row_contiguous=True,
            )
        return self._kernel

    def decode(
        self,
        enc: mx.array,
        *,
        durations: list[int] | None,
        max_symbols: int | None,
        state: DecoderState | None = None,
        last_token: int | None = None,
        start_frame: int = 0,
        stop_frame: int | None = None,
        label_looping: bool = False,
    ) -> Hypothesis | None:
        """greedy_transducer's search on the GPU; enc: (T, joint_hidden) projected frames,
        an MLX array. None when the kernel gave up (the caller decodes on the host)."""
        frames = enc.shape[0]
        length = frames if stop_frame is None else min(stop_frame, frames)
        state = state or self.stepper.initial_state()
        if start_frame >= length:
            return Hypothesis(state=state, last_token=last_token, next_frame=start_frame)
        limit = max_symbols if max_symbols is not None else 1 << 30
        cap = (length - start_frame) * max(1, min(limit, TOKENS_PER_FRAME))
        sizes = self.layers * self.hidden
        lh, j, n = self.layers, self.joint_hidden, self.outputs
        params = [start_frame, length, limit, int(label_looping)]
        params += [-1 if last_token is None else int(last_token), frames, cap]
        ires, fres, _, _ = self._compiled()(
            inputs=[
                enc.astype(mx.float32),
                self.token_gates,
                self.w0,
                self.wl,
                self.bl,
                self.pw,
                self.pb,
                self.ow,
                self.ob,
                mx.array(state.h, mx.float32),
                mx.array(state.c, mx.float32),
                mx.array(durations or [1], mx.int32),
                mx.array(params, mx.int32),
            ],
            template=[
                ("HS", self.hidden),
                ("LAYERS", lh),
                ("J", j),
                ("N", n),
                ("NTOK", self.stepper.num_tokens),
                ("ND", len(durations) if durations is not None else 0),
                ("KMAX", self.lookahead),
                ("NT", THREADS),
                ("ACT", self.activation),
            ],
            grid=(self.blocks * THREADS, 1, 1),
            threadgroup=(THREADS, 1, 1),
            output_shapes=[
                (HEADER_INTS + 3 * cap,),
                (2 + cap + 2 * sizes,),
                (4 * sizes + j + 2 * self.lookahead * n,),
                (SYNC_WORDS,),
            ],
            output_dtypes=[mx.int32, mx.float32, mx.float32, mx.uint32],
            init_value=0,
        )
        mx.eval(ires, fres)
        ints = np.array(ires)
        floats = np.array(fres)
        status, count, steps, next_frame, last = (int(v) for v in ints[:5])
        if status != STATUS_OK or ints[6] != 1:
            self.gave_up += 1
            return None
        tokens = ints[HEADER_INTS : HEADER_INTS + count]
        frames_out = ints[HEADER_INTS + cap : HEADER_INTS + cap + count]
        durations_out = ints[HEADER_INTS + 2 * cap : HEADER_INTS + 2 * cap + count]
        entropy = floats[2 : 2 + count].astype(np.float64)
        log_classes = float(np.log(self.stepper.num_tokens))
        confidences = np.maximum(0.0, 1.0 - entropy / log_classes)
        if ints[5]:
            final = state
        else:
            h = floats[2 + cap : 2 + cap + sizes].reshape(self.layers, self.hidden)
            c = floats[2 + cap + sizes : 2 + cap + 2 * sizes].reshape(self.layers, self.hidden)
            final = DecoderState(h.copy(), c.copy())
        return Hypothesis(
            tokens=tokens.tolist(),
            frames=frames_out.tolist(),
            durations=durations_out.tolist(),
            confidences=confidences.tolist(),
            score=float(floats[0]) + float(floats[1]),
            steps=steps,
            state=final,
            last_token=None if last < 0 else last,
            next_frame=next_frame,
        )
