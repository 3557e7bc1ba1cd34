"""What the CUDA kernels share: availability, and float conversions for their sources."""

from __future__ import annotations

import mlx.core as mx

# Loads and stores of 4 consecutive elements of any input type, as float32.
HEADER = r"""
__device__ __forceinline__ float la_to_float(float x) { return x; }
__device__ __forceinline__ float la_to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float la_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ void la_load4(const float* p, float* o) {
  const float4 x = *reinterpret_cast<const float4*>(p);
  o[0] = x.x; o[1] = x.y; o[2] = x.z; o[3] = x.w;
}
__device__ __forceinline__ void la_load4(const __half* p, float* o) {
  const __half2* h = reinterpret_cast<const __half2*>(p);
  const float2 a = __half22float2(h[0]);
  const float2 b = __half22float2(h[1]);
  o[0] = a.x; o[1] = a.y; o[2] = b.x; o[3] = b.y;
}
__device__ __forceinline__ void la_load4(const __nv_bfloat16* p, float* o) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(p);
  const float2 a = __bfloat1622float2(h[0]);
  const float2 b = __bfloat1622float2(h[1]);
  o[0] = a.x; o[1] = a.y; o[2] = b.x; o[3] = b.y;
}

__device__ __forceinline__ void la_store4(float* p, const float* x) {
  *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
}
__device__ __forceinline__ void la_store4(__half* p, const float* x) {
  __half2* h = reinterpret_cast<__half2*>(p);
  h[0] = __floats2half2_rn(x[0], x[1]);
  h[1] = __floats2half2_rn(x[2], x[3]);
}
__device__ __forceinline__ void la_store4(__nv_bfloat16* p, const float* x) {
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(p);
  h[0] = __floats2bfloat162_rn(x[0], x[1]);
  h[1] = __floats2bfloat162_rn(x[2], x[3]);
}
"""


def is_available() -> bool:
    return hasattr(mx, "cuda") and mx.cuda.is_available()


_compiled: dict[str, object] = {}


def custom_kernel(
    name: str,
    input_names: list[str],
    output_names: list[str],
    source: str,
    header: str,
    shared_memory: int = 0,
):
    """A kernel of ours, made once per name (NVRTC compiles it at first launch)."""
    if name not in _compiled:
        _compiled[name] = mx.fast.cuda_kernel(
            name=name,
            input_names=input_names,
            output_names=output_names,
            source=source,
            header=header,
            ensure_row_contiguous=True,
            shared_memory=shared_memory,
        )
    return _compiled[name]


def compiled_kernel(name: str, source: str, header: str, shared_memory: int):
    """One local-attention kernel."""
    inputs = ["q", "k", "v", "bias", "key_mask", "params"]
    return custom_kernel(name, inputs, ["out"], source, header, shared_memory)


def run_local_attention_kernel(
    kernel,
    q: mx.array,
    k: mx.array,
    v: mx.array,
    left: int,
    right: int,
    bias: mx.array | None,
    key_mask: mx.array | None,
    scale: float,
    *,
    block_q: int,
    threads: int,
    extra_template: list[tuple[str, int]] | None = None,
) -> mx.array:
    """Launches a kernel that gives each (batch, head) a row of tiles of `block_q` queries."""
    b, h, t, d = q.shape
    has_bias = bias is not None
    has_mask = key_mask is not None
    if bias is None:
        bias = mx.zeros((1,), q.dtype)
    if key_mask is None:
        key_mask = mx.zeros((1,), mx.bool_)
    n_tiles = -(-t // block_q)
    (out,) = kernel(
        inputs=[q, k, v, bias, key_mask, mx.array([scale], mx.float32)],
        template=[
            ("T", q.dtype),
            ("D", d),
            ("L", left),
            ("R", right),
            ("HAS_BIAS", has_bias),
            ("BIAS_BCAST", has_bias and bias.shape[0] == 1),
            ("HAS_MASK", has_mask),
            *(extra_template or []),
        ],
        grid=(n_tiles * threads, b * h, 1),
        threadgroup=(threads, 1, 1),
        output_shapes=[q.shape],
        output_dtypes=[q.dtype],
    )
    return out
