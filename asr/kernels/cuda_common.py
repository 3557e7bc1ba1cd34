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
