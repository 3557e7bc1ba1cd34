"""`local_attention`: softmax attention restricted to a band of keys around each query.

Query i attends the keys j with i-left <= j <= i+right (and 0 <= j < T). Three backends sit
behind the one function and are picked at run time: a Metal kernel where Metal is
available, a CUDA kernel where CUDA is, and otherwise a portable path of MLX operations.
Every one of them keeps memory linear in T.
"""

from __future__ import annotations

from typing import Literal, Protocol

import mlx.core as mx

from . import cuda, metal
from .portable import portable_local_attention

Backend = Literal["metal", "cuda", "portable"]
FLOAT_TYPES = (mx.float32, mx.bfloat16, mx.float16)


class LocalAttentionBackend(Protocol):
    def __call__(
        self,
        q: mx.array,
        k: mx.array,
        v: mx.array,
        left: int,
        right: int,
        bias: mx.array | None,
        key_mask: mx.array | None,
        scale: float,
    ) -> mx.array: ...


def available_backends() -> list[Backend]:
    """The backends that can run on this machine, best first."""
    found: list[Backend] = []
    if metal.is_available():
        found.append("metal")
    if cuda.is_available():
        found.append("cuda")
    found.append("portable")
    return found


def _check(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    left: int,
    right: int,
    bias: mx.array | None,
    key_mask: mx.array | None,
) -> None:
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            f"q, k and v must all be (B, H, T, D); got {q.shape}, {k.shape}, {v.shape}"
        )
    if q.dtype not in FLOAT_TYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one of {FLOAT_TYPES}; got {q.dtype}")
    if left < 0 or right < 0:
        raise ValueError(f"left and right must be >= 0; got {left}, {right}")
    b, h, t, _ = q.shape
    if bias is not None:
        want = (h, t, left + right + 1)
        if bias.ndim != 4 or bias.shape[1:] != want or bias.shape[0] not in (1, b):
            raise ValueError(
                f"bias must be ({b} or 1, {h}, {t}, {left + right + 1}); got {bias.shape}"
            )
        if bias.dtype not in FLOAT_TYPES:
            raise ValueError(f"bias must be one of {FLOAT_TYPES}; got {bias.dtype}")
    if key_mask is not None:
        if key_mask.shape != (b, t) or key_mask.dtype != mx.bool_:
            raise ValueError(
                f"key_mask must be bool ({b}, {t}); got {key_mask.dtype} {key_mask.shape}"
            )


def local_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    left: int,
    right: int,
    bias: mx.array | None = None,
    key_mask: mx.array | None = None,
    scale: float | None = None,
    backend: Backend | None = None,
) -> mx.array:
    """Banded attention over (B, H, T, D) queries, keys and values.

    scores[i, j] = scale * q_i . k_j + bias[i, j - i + left] for i-left <= j <= i+right,
    softmax over those keys, weighted sum of the values. `bias` is (B or 1, H, T,
    left+right+1), entries whose key falls outside [0, T) ignored; `key_mask` is (B, T), True
    for keys that may be attended; a query with no such key in its band outputs zeros.
    `scale` defaults to D**-0.5. The result has q's shape and dtype; work is in float32.
    `backend` forces one implementation ("metal", "cuda", "portable"); None picks the best
    available, falling back to portable where a kernel does not support the head size.
    """
    _check(q, k, v, left, right, bias, key_mask)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if q.shape[2] == 0:
        return mx.zeros(q.shape, q.dtype)
    if backend is not None and backend not in available_backends():
        raise ValueError(f"backend {backend!r} is not available here; have {available_backends()}")
    chosen = backend or available_backends()[0]
    impl: LocalAttentionBackend = portable_local_attention
    if chosen == "metal" and metal.supports(q):
        impl = metal.metal_local_attention
    elif chosen == "cuda" and cuda.supports(q):
        impl = cuda.cuda_local_attention
    elif backend is not None and backend != "portable":
        raise ValueError(f"the {backend} kernel does not support head size {q.shape[-1]}")
    return impl(q, k, v, left, right, bias, key_mask, scale)
