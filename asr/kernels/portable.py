"""Local attention from MLX operations alone: runs on every backend, memory linear in T.

Queries are cut into blocks of W. Block n (queries nW .. nW+W-1) can only see the keys
nW-left .. nW+W-1+right: a window of S = W+left+right keys that starts W further on for
each block, so once the keys are padded by `left` in front, every block's window is a
strided view of one buffer. Scores are (W x S) per block instead of (T x T) per head.

The band term arrives as (T, M) rows, M = left+right+1, column c of query i belonging to key
i-left+c. Out-of-range and masked keys are set to -inf in that layout, each row is padded
with W more -inf, and re-reading the buffer with row stride S instead of M+W shifts row r of
a block right by r: the (W x S) additive term of the block, with everything outside the band
already -inf. No separate mask pass is needed.
"""

from __future__ import annotations

import math
import os
import threading

import mlx.core as mx

from . import exact_matmul

# Upper bound, in float32 elements, for one group's score tensor. Groups of blocks this
# small keep the softmax's rows in cache and let the allocator reuse the same buffers.
GROUP_ELEMENTS = 1 << 22

_local = threading.local()


def block_size(left: int, right: int, t: int) -> int:
    # Each query computes W+left+right scores instead of left+right+1, so W small wastes
    # little; below 32 the per-block matrix products get too small to run well.
    w = max(32, (left + right) // 16)
    w = 1 << math.ceil(math.log2(w))
    return max(1, min(w, t))


def _cpu_streams() -> list[mx.Stream]:
    # MLX runs each CPU stream's elementwise work on one thread; groups spread over one
    # stream per core run the softmax in parallel. Streams belong to the creating thread.
    streams = getattr(_local, "streams", None)
    if streams is None:
        count = max(1, min(4, os.cpu_count() or 1))
        streams = [mx.new_stream(mx.cpu) for _ in range(count)]
        _local.streams = streams
    return streams


def _row_major_strides(shape: tuple[int, ...] | list[int]) -> list[int]:
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return strides


def _windows(x: mx.array, n_blocks: int, w: int, span: int) -> mx.array:
    """(.., P, D) with P >= (n_blocks-1)*w + span -> (.., n_blocks, span, D), a view."""
    *lead, p, d = x.shape
    lead_strides = [s * p * d for s in _row_major_strides(lead)]
    return mx.as_strided(x, (*lead, n_blocks, span, d), (*lead_strides, w * d, d, 1))


def _skewed_term(band: mx.array, n_blocks: int, w: int, span: int) -> mx.array:
    """(.., rows <= n_blocks*w, M) -> (.., n_blocks, w, span): row r shifted right by r,
    -inf wherever no band entry lands."""
    *lead, rows, m = band.shape
    pad = [(0, 0)] * len(lead) + [(0, n_blocks * w - rows), (0, w)]
    padded = mx.pad(band, pad, constant_values=-math.inf)
    per_block = w * (m + w)
    lead_strides = [s * n_blocks * per_block for s in _row_major_strides(lead)]
    return mx.as_strided(padded, (*lead, n_blocks, w, span), (*lead_strides, per_block, span, 1))


def _valid_keys(key_mask: mx.array | None, t: int, left: int, padded: int) -> mx.array:
    """(B or 1, padded) bool over the left-padded key axis: a real, unmasked key."""
    pos = mx.arange(padded) - left
    valid = ((pos >= 0) & (pos < t))[None]
    if key_mask is not None:
        km = mx.pad(key_mask, [(0, 0), (left, padded - left - t)], constant_values=False)
        valid = valid & km
    return valid


def _has_any_key(key_mask: mx.array, left: int, right: int) -> mx.array:
    """(B, T): whether query i's band holds at least one valid key (prefix sums, O(T))."""
    b, t = key_mask.shape
    counts = mx.cumsum(key_mask.astype(mx.int32), axis=1)
    counts = mx.pad(counts, [(0, 0), (1, 0)])
    i = mx.arange(t)
    hi = mx.minimum(i + right + 1, t)
    lo = mx.maximum(i - left, 0)
    return (counts[:, hi] - counts[:, lo]) > 0


def portable_local_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    left: int,
    right: int,
    bias: mx.array | None,
    key_mask: mx.array | None,
    scale: float,
    block: int | None = None,
    split_products: bool | None = None,
) -> mx.array:
    """`split_products` (default: where the device rounds float32 products to TF32) computes
    each product from split operands, at float32 accuracy and three times the work."""
    b, h, t, d = q.shape
    m = left + right + 1
    w = block or block_size(left, right, t)
    n = -(-t // w)
    span = w + left + right
    kp_len = left + n * w + right
    f32 = mx.float32

    qb = mx.pad(q.astype(f32) * scale, [(0, 0), (0, 0), (0, n * w - t), (0, 0)])
    qb = qb.reshape(b, h, n, w, d)
    kv_pad = [(0, 0), (0, 0), (left, kp_len - left - t), (0, 0)]
    kp = mx.pad(k.astype(f32), kv_pad)
    vp = mx.pad(v.astype(f32), kv_pad)
    if split_products is None:
        split_products = not exact_matmul.matmul_is_exact()
    if split_products:
        qs, ks, vs = exact_matmul.split(qb), exact_matmul.split(kp), exact_matmul.split(vp)
    else:
        qs, ks, vs = (qb,), (kp,), (vp,)
    kb = tuple(_windows(x, n, w, span) for x in ks)
    vb = tuple(_windows(x, n, w, span) for x in vs)

    valid = _valid_keys(key_mask, t, left, kp_len)
    # valid_band[., i, c]: whether key i-left+c is valid; a strided view, no copy.
    valid_band = mx.as_strided(valid, (valid.shape[0], t, m), (kp_len, 1, 1))[:, None]
    if bias is not None:
        bias = bias.astype(f32)

    group = max(1, min(n, GROUP_ELEMENTS // (b * h * w * span)))
    on_cpu = mx.default_device() == mx.cpu
    streams = _cpu_streams() if on_cpu and n > group else [mx.default_stream(mx.default_device())]
    outs = []
    interior_term = None
    for i, g0 in enumerate(range(0, n, group)):
        g1 = min(n, g0 + group)
        rows = slice(g0 * w, min(g1 * w, t))
        # Rows whose whole band lies inside [0, T) need no masking unless keys are masked.
        interior = key_mask is None and g0 * w >= left and g1 * w + right <= t
        with mx.stream(streams[i % len(streams)]):
            if bias is not None:
                band = bias[:, :, rows]
                if not interior:
                    band = mx.where(valid_band[:, :, rows], band, -math.inf)
                term = _skewed_term(band, g1 - g0, w, span)
            elif interior and g1 - g0 == group:
                if interior_term is None:
                    zeros = mx.zeros((1, 1, group * w, m), f32)
                    interior_term = _skewed_term(zeros, group, w, span)
                term = interior_term
            else:
                band = mx.where(valid_band[:, :, rows], 0.0, -math.inf)
                term = _skewed_term(band, g1 - g0, w, span)
            q_g = tuple(x[:, :, g0:g1] for x in qs)
            kt_g = tuple(x[:, :, g0:g1].swapaxes(-1, -2) for x in kb)
            scores = exact_matmul.product(q_g, kt_g, term)
            probs = mx.softmax(scores, axis=-1)
            p_g = exact_matmul.split(probs) if split_products else (probs,)
            outs.append(exact_matmul.product(p_g, tuple(x[:, :, g0:g1] for x in vb)))
    out = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=2)
    out = out.reshape(b, h, n * w, d)[:, :, :t]
    if key_mask is not None:
        # The softmax of a band with no valid key is NaN; such a query outputs 0.
        out = mx.where(_has_any_key(key_mask, left, right)[:, None, :, None], out, 0.0)
    return out.astype(q.dtype)
