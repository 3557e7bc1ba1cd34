"""Figures for the local-attention kernels: time, bytes moved and achieved bandwidth.

Runs the best kernel available (CUDA on an NVIDIA GPU, Metal on a Mac, else the portable
path) at the lengths of 10 minutes, 30 minutes and 3 hours of audio at 80 ms frames, with
H=8, D=128 and context (256, 256) as in Parakeet 0.6b, in float32 and bfloat16, with the
rel-pos band term. On CUDA also: the float32 kernel on bfloat16 inputs, and each 16-bit
kernel with each block size (mma.sync with 4 or 8 warps, wgmma with 1 or 2 warpgroups).
Beside it: the portable path on the same device and full attention with the band as a
(T x T) additive mask (what a non-local encoder does) at 10 minutes. On CUDA each time is
also given over the bound at the bandwidth a plain 1 GB copy kernel reaches there, beside
the vendor's figure. Times are per call,
from evaluations of several independent calls (so one launch and synchronisation are
shared); the time of one call per evaluation is given beside it. On CUDA, the kernel's own
time is read from the GPU's clock as well (`kernel_ms`: chains of calls, each on the
previous one's output, timed by kernels that read %globaltimer), and the copy bound beside
it is measured the same way: wall-clock times also hold MLX's work between kernels. The
main kernel's `sustained_kernel_ms` comes from chains of 60 calls, long enough for the GPU
to reach its power limit and lower its clock (an H200 went from 1980 to about 1600 MHz).

    python bench/local_attention_gpu.py [--out FILE] [--lengths 7500,22500,135000]
    python bench/local_attention_gpu.py --lengths 11250,22500,45000 --full-at 0 --repeats 3
        (the portable path on a CPU, up to 60 minutes)
    python bench/local_attention_gpu.py --quick    (the 16-bit kernels alone)

Prints one JSON object and writes it to --out (default $OUT/local_attention_gpu.json when
OUT is set, else bench/results/local_attention_gpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# isort: off
import asr  # noqa: E402,F401  (loads the fast BLAS before MLX on Linux CPUs)
import mlx.core as mx  # noqa: E402
# isort: on

from asr.kernels import available_backends, cuda_wgmma, local_attention  # noqa: E402
from asr.kernels.cuda import cuda_local_attention  # noqa: E402
from asr.kernels.cuda_tensor_core import tensor_core_local_attention  # noqa: E402
from asr.kernels.reference import band_bias_to_full  # noqa: E402

H, D, LEFT, RIGHT = 8, 128, 256, 256
H200_BANDWIDTH = 4.8e12  # bytes/s, the vendor's figure for HBM3e on the H200
SUSTAINED_CHAIN = 60  # calls in a row for the sustained kernel time
DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16}
VARIANTS = {"mma": tensor_core_local_attention, "wgmma": cuda_wgmma.wgmma_local_attention}


def _time(fn, repeats: int, batch: int = 1) -> float:
    """Median seconds of one call, after a warm-up that also compiles the kernel. With
    `batch` > 1 each timed evaluation runs that many independent calls, so that the launch
    and synchronisation overhead of one evaluation is shared among them."""
    mx.eval(fn())
    mx.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval([fn() for _ in range(batch)])
        mx.synchronize()
        times.append((time.perf_counter() - start) / batch)
    times.sort()
    return times[len(times) // 2]


STAMP_SOURCE = """
unsigned long long now;
asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
ns[0] = now;
"""
_stamp_kernel = None


def _gpu_clock_after(x: mx.array) -> mx.array:
    """The GPU's clock (ns) once the kernel that made `x` has finished."""
    global _stamp_kernel
    if _stamp_kernel is None:
        _stamp_kernel = mx.fast.cuda_kernel(
            name="gpu_clock", input_names=["after"], output_names=["ns"], source=STAMP_SOURCE
        )
    (ns,) = _stamp_kernel(
        inputs=[x],
        grid=(1, 1, 1),
        threadgroup=(1, 1, 1),
        output_shapes=[(1,)],
        output_dtypes=[mx.uint64],
    )
    return ns


def _gpu_time(step, x: mx.array, repeats: int, chain: int) -> float:
    """Median GPU seconds of one `step`, from the GPU's clock: the clock is read (in an
    evaluation of its own, so that nothing runs beside it) before a chain of calls that each
    take the previous one's output, and after its last call. The chain of 1 + `chain` calls
    less the chain of 1 leaves the time of `chain` calls run back to back, without the time
    MLX takes to build a chain's first commands."""
    mx.eval(step(x))

    def span(calls: int) -> float:
        start = _gpu_clock_after(x)
        mx.eval(start)
        y = x
        for _ in range(calls):
            y = step(y)
        end = _gpu_clock_after(y)
        mx.eval(end)
        return (end.item() - start.item()) * 1e-9

    times = []
    for _ in range(repeats):
        times.append((span(1 + chain) - span(1)) / chain)
    times.sort()
    return times[len(times) // 2]


def _inputs(t: int, dtype) -> tuple[mx.array, ...]:
    q, k, v = (mx.random.normal((1, H, t, D)).astype(dtype) for _ in range(3))
    bias = (0.1 * mx.random.normal((1, H, t, LEFT + RIGHT + 1))).astype(dtype)
    mx.eval(q, k, v, bias)
    return q, k, v, bias


def _traffic(t: int, dtype) -> int:
    """Bytes a perfect kernel moves: read q, k, v and the band term once, write the output."""
    size = dtype.size
    return 4 * t * H * D * size + t * H * (LEFT + RIGHT + 1) * size


def _useful_flops(t: int) -> float:
    return 4.0 * t * H * (LEFT + RIGHT + 1) * D


def measure_kernel(
    backend: str,
    t: int,
    dtype_name: str,
    repeats: int,
    tensor_cores: bool | None = None,
    variant: tuple[str, int] | None = None,
) -> dict:
    dtype = DTYPES[dtype_name]
    q, k, v, bias = _inputs(t, dtype)

    def step(queries):
        if variant is not None:
            attend = VARIANTS[variant[0]]
            return attend(queries, k, v, LEFT, RIGHT, bias, None, D**-0.5, variant[1])
        if tensor_cores is not None:
            return cuda_local_attention(
                queries, k, v, LEFT, RIGHT, bias, None, D**-0.5, tensor_cores
            )
        return local_attention(queries, k, v, left=LEFT, right=RIGHT, bias=bias, backend=backend)

    def call():
        return step(q)

    mx.eval(call())
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    single = _time(call, max(3, repeats // 2))
    peak = mx.get_peak_memory() - base
    # Enough calls per evaluation for about 2 GB of outputs, at most 20.
    batch = max(1, min(20, int(2e9 // q.nbytes)))
    seconds = _time(call, repeats, batch)
    moved = _traffic(t, dtype)
    kernel_seconds = sustained_seconds = None
    if backend == "cuda" or variant is not None or tensor_cores is not None:
        # Each call on the previous one's output: the kernels run one after another.
        kernel_seconds = _gpu_time(step, q, max(3, repeats // 2), batch)
        if variant is None and tensor_cores is None:
            # Sixty calls in a row (as the 24 layers of hours of audio run) draw enough power
            # for the GPU to lower its clock; a short chain runs at full clock.
            sustained_seconds = _gpu_time(step, q, 3, SUSTAINED_CHAIN)
    if variant is not None:
        name = f"cuda {variant[0]}, {variant[1]} {'warps' if variant[0] == 'mma' else 'warpgroups'}"
    elif tensor_cores is not None:
        name = f"cuda, tensor_cores={tensor_cores}"
    else:
        name = backend
    return {
        "backend": name,
        "T": t,
        "minutes_of_audio": round(t * 0.08 / 60, 1),
        "dtype": dtype_name,
        "ms": round(seconds * 1e3, 4),
        "calls_per_evaluation": batch,
        "ms_one_call_with_launch_and_sync": round(single * 1e3, 4),
        "bytes_moved": moved,
        "achieved_GBps": round(moved / seconds / 1e9, 1),
        "fraction_of_h200_bandwidth": round(moved / seconds / H200_BANDWIDTH, 3),
        "time_over_memory_bound": round(seconds / (moved / H200_BANDWIDTH), 2),
        "time_over_measured_copy_bound": (
            round(seconds / (moved / _copy_bandwidth), 2) if _copy_bandwidth else None
        ),
        "useful_TFLOPs": round(_useful_flops(t) / seconds / 1e12, 2),
        **(_kernel_figures(kernel_seconds, moved) if kernel_seconds else {}),
        **(_kernel_figures(sustained_seconds, moved, "sustained_") if sustained_seconds else {}),
        "peak_extra_memory_GB": round(peak / 1e9, 3),
    }


def _kernel_figures(seconds: float, moved: int, prefix: str = "") -> dict:
    figures = {
        f"{prefix}kernel_ms": round(seconds * 1e3, 4),
        f"{prefix}kernel_GBps": round(moved / seconds / 1e9, 1),
        f"{prefix}kernel_over_vendor_bound": round(seconds / (moved / H200_BANDWIDTH), 2),
    }
    if _copy_bandwidth_gpu_clock:
        figures[f"{prefix}kernel_over_copy_bound"] = round(
            seconds / (moved / _copy_bandwidth_gpu_clock), 2
        )
    return figures


_copy_bandwidth: float | None = None  # measured on the GPU at the start of main()
_copy_bandwidth_gpu_clock: float | None = None  # the same copy, timed by the GPU's clock


COPY_SOURCE = """
const size_t n = x_shape[0] / 4;
const uint4* src = reinterpret_cast<const uint4*>(x);
uint4* dst = reinterpret_cast<uint4*>(y);
const size_t stride = (size_t)gridDim.x * blockDim.x;
for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
  dst[i] = src[i];
}
"""


def measure_copy_bandwidth(repeats: int) -> tuple[float, float]:
    """Bytes/s this GPU reaches copying 1 GB with 16-byte loads and stores: a bound a kernel
    can actually meet, beside the vendor's figure. By the wall clock (10 copies per
    evaluation) and by the GPU's clock (10 chained copies)."""
    copy = mx.fast.cuda_kernel(
        name="copy_bandwidth", input_names=["x"], output_names=["y"], source=COPY_SOURCE
    )
    x = mx.random.randint(0, 1 << 30, (1 << 28,), mx.uint32)
    mx.eval(x)
    threads = 256

    def step(x):
        (y,) = copy(
            inputs=[x],
            grid=(32768 * threads, 1, 1),
            threadgroup=(threads, 1, 1),
            output_shapes=[x.shape],
            output_dtypes=[x.dtype],
        )
        return y

    assert mx.array_equal(step(x), x).item()
    seconds = _time(lambda: step(x), repeats, batch=10)
    gpu_seconds = _gpu_time(step, x, repeats, chain=10)
    return 2 * x.nbytes / seconds, 2 * x.nbytes / gpu_seconds


def measure_full(t: int, dtype_name: str, repeats: int) -> dict:
    """Full attention, the band and the rel-pos term given as a (1, H, T, T) additive mask."""
    dtype = DTYPES[dtype_name]
    q, k, v, bias = _inputs(t, dtype)
    i = mx.arange(t)[:, None]
    j = mx.arange(t)[None, :]
    band = (j >= i - LEFT) & (j <= i + RIGHT)
    mask = mx.where(band, band_bias_to_full(bias.astype(mx.float32), LEFT, RIGHT), -mx.inf)
    mask = mask.astype(dtype)
    mx.eval(mask)
    mx.reset_peak_memory()
    base = mx.get_active_memory()

    def call():
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=D**-0.5, mask=mask)

    seconds = _time(call, repeats)
    return {
        "backend": "full attention (mx.fast.scaled_dot_product_attention, T x T mask)",
        "T": t,
        "dtype": dtype_name,
        "ms": round(seconds * 1e3, 3),
        "mask_GB": round(mask.nbytes / 1e9, 3),
        "peak_extra_memory_GB": round((mx.get_peak_memory() - base) / 1e9, 3),
    }


def agreement(backend: str, t: int) -> dict:
    """Largest difference between the kernel and the portable path on a long input."""
    q, k, v, bias = _inputs(t, mx.float32)
    a = local_attention(q, k, v, left=LEFT, right=RIGHT, bias=bias, backend=backend)
    b = local_attention(q, k, v, left=LEFT, right=RIGHT, bias=bias, backend="portable")
    return {"T": t, "backend": backend, "max_abs_diff_vs_portable": float(mx.abs(a - b).max())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="7500,22500,135000")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--full-at", type=int, default=7500, help="0: skip full attention")
    parser.add_argument("--out")
    parser.add_argument("--quick", action="store_true", help="the 16-bit kernels alone")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    backend = available_backends()[0]
    short = lengths[0]

    global _copy_bandwidth, _copy_bandwidth_gpu_clock
    if backend == "cuda":
        _copy_bandwidth, _copy_bandwidth_gpu_clock = measure_copy_bandwidth(args.repeats)
        print(json.dumps({"measured_copy_GBps": round(_copy_bandwidth / 1e9, 1)}), flush=True)
    results: dict = {
        "device": str(mx.default_device()),
        "machine": platform.platform(),
        "mlx": mx.__version__,
        "shape": {"B": 1, "H": H, "D": D, "left": LEFT, "right": RIGHT, "bias": True},
        "vendor_bandwidth_GBps": H200_BANDWIDTH / 1e9,
        "measured_copy_GBps": round(_copy_bandwidth / 1e9, 1) if _copy_bandwidth else None,
        "measured_copy_GBps_gpu_clock": (
            round(_copy_bandwidth_gpu_clock / 1e9, 1) if _copy_bandwidth_gpu_clock else None
        ),
        "kernel": [],
        "cuda_cores_16_bit": [],
        "tensor_core_variants": [],
        "portable": [],
        "full_attention": [],
    }
    for dtype_name in ["bfloat16"] if args.quick else DTYPES:
        for t in lengths:
            results["kernel"].append(measure_kernel(backend, t, dtype_name, args.repeats))
            print(json.dumps(results["kernel"][-1]), flush=True)
    if backend == "cuda" and not args.quick:
        # The float32 kernel on bfloat16 inputs, against the tensor-core kernel above.
        for t in lengths:
            entry = measure_kernel(backend, t, "bfloat16", args.repeats, tensor_cores=False)
            results["cuda_cores_16_bit"].append(entry)
            print(json.dumps(entry), flush=True)
    if backend == "cuda":
        # The 16-bit kernels and their block sizes: mma.sync with 4 or 8 warps of 16
        # queries, wgmma (Hopper) with 1 or 2 warpgroups of 64.
        variants = [("mma", 4), ("mma", 8)]
        if cuda_wgmma.supports(mx.zeros((1, 1, 1, D), mx.bfloat16)):
            variants += [("wgmma", 1), ("wgmma", 2)]
        for t in lengths:
            for variant in variants:
                entry = measure_kernel(backend, t, "bfloat16", args.repeats, variant=variant)
                results["tensor_core_variants"].append(entry)
                print(json.dumps(entry), flush=True)
    if backend != "portable" and not args.quick:
        for dtype_name in DTYPES:
            results["portable"].append(measure_kernel("portable", short, dtype_name, 3))
            print(json.dumps(results["portable"][-1]), flush=True)
        results["agreement"] = agreement(backend, min(22500, max(lengths)))
        print(json.dumps(results["agreement"]), flush=True)
    for dtype_name in DTYPES if args.full_at and not args.quick else ():
        results["full_attention"].append(measure_full(args.full_at, dtype_name, 3))
        print(json.dumps(results["full_attention"][-1]), flush=True)

    if args.out:
        out = Path(args.out)
    elif os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / "local_attention_gpu.json"
    else:
        out = Path(__file__).parent / "results" / "local_attention_gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
