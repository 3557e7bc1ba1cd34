"""Relative-position multi-head attention (Transformer-XL style, as in NeMo's Conformer).

One module serves both NeMo attention models: `rel_pos` (every frame sees every frame) and
`rel_pos_local_attn` (each frame sees `left` frames before it and `right` after it). The mode
is a plain attribute, so switching never touches the weights.
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .kernels import local_attention

AttentionContext = tuple[int, int]


def sinusoidal_embedding(positions: mx.array, d_model: int) -> mx.array:
    """(len(positions), d_model): sin on even channels, cos on odd ones."""
    inv_freq = mx.exp(mx.arange(0, d_model, 2, dtype=mx.float32) * (-math.log(10000.0) / d_model))
    angles = positions.astype(mx.float32)[:, None] * inv_freq[None, :]
    return mx.stack([mx.sin(angles), mx.cos(angles)], axis=-1).reshape(len(positions), d_model)


def relative_position_embedding(length: int, d_model: int, context: AttentionContext | None):
    """Embeddings of relative distances i - j, from the largest down to the smallest.

    Full attention needs distances T-1 ... -(T-1); local attention only left ... -right.
    """
    if context is None:
        positions = mx.arange(length - 1, -length, -1)
    else:
        left, right = context
        positions = mx.arange(left, -right - 1, -1)
    return sinusoidal_embedding(positions, d_model)


def _shift_relative(scores: mx.array) -> mx.array:
    """(B, H, T, 2T-1) scores per relative distance -> (B, H, T, T) scores per key.

    Column k of the input is distance T-1-k; key j of query i sits at k = T-1-i+j. Padding
    one column on the left and re-reading the buffer with rows one element longer lines
    the diagonals up without a gather.
    """
    b, h, t, p = scores.shape
    scores = mx.pad(scores, [(0, 0), (0, 0), (0, 0), (1, 0)])
    scores = scores.reshape(b, h, p + 1, t)[:, :, 1:].reshape(b, h, t, p)
    return scores[..., :t]


def nemo_band_terms(by_distance: mx.array, left: int, right: int) -> mx.array:
    """The position terms NeMo's local attention adds for each key of the band.

    `by_distance` (.., L+R+1) holds the term of every key offset -L..R (column c: offset
    c - L). NeMo adds these into a band of 2w+1 offsets, w = max(L, R), its first L columns
    to the band's first L and its last R+1 to the band's last R+1. With L == R that is each
    offset's own term; with L != R the terms land on shifted offsets and some offsets get
    none. The models were trained that way, so it is reproduced here.
    """
    if left == right:
        return by_distance
    w = max(left, right)
    column = mx.arange(left + right + 1)
    # the key at column c has band offset c - L: it receives the first block's column
    # c - L + w when that is < L, and the last block's column c - w + R when that is >= L
    first = column - left + w
    last = column - w + right
    size = left + right + 1
    terms = mx.zeros_like(by_distance)
    for source, used in ((first, first < left), (last, last >= left)):
        gathered = mx.take(by_distance, mx.clip(source, 0, size - 1), axis=-1)
        terms = terms + mx.where(used, gathered, mx.zeros_like(gathered))
    return terms


def band_positions(p: mx.array, left: int, right: int) -> mx.array:
    """nemo_band_terms applied to the band's projected position embeddings (L+R+1, H, D)
    instead of to every query's scores: the terms are a fixed remapping of columns, linear
    in the embeddings, so remapping the L+R+1 embeddings once gives the same scores."""
    if left == right:
        return p
    return nemo_band_terms(p.transpose(1, 2, 0), left, right).transpose(2, 0, 1)


def _full_attention_cpu(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    by_distance: mx.array,
    key_mask: mx.array | None,
    scale: float,
) -> mx.array:
    """Full rel-pos attention on the CPU, with the score work in numpy: its exp is
    vectorized where MLX's CPU one is scalar, and the relative shift is a strided view of
    the per-distance scores (score[i, j] = by_distance[i, T-1-i+j]) instead of two copies."""
    # the product is a fresh array of MLX's, nobody else's: numpy works on it in place
    scores = np.asarray(mx.contiguous(q * scale) @ k.transpose(0, 1, 3, 2))
    distance = np.ascontiguousarray(np.asarray(by_distance))
    b, h, t, p = distance.shape
    item = distance.itemsize
    shifted = np.lib.stride_tricks.as_strided(
        distance.reshape(-1)[t - 1 :],
        shape=(b, h, t, t),
        strides=(h * t * p * item, t * p * item, (p - 1) * item, item),
    )
    scores += shifted
    if key_mask is not None:
        scores += np.where(np.asarray(key_mask), np.float32(0), np.float32(-np.inf))[
            :, None, None, :
        ]
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    if key_mask is not None:  # an item with no real frame at all gives 0/0 rows
        np.nan_to_num(scores, copy=False)
    return mx.array(scores) @ v


@functools.lru_cache(maxsize=64)
def window_band(queries: int, keys: int, left: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For a streaming window whose queries are the last `queries` of `keys` keys: the band
    column (0..width-1) of every key for every query, clipped, and an additive mask, 0
    inside the band and -inf outside. Query i sits at key past + i; key j is at distance
    past + i - j, which is column left - (past + i - j) of the band."""
    past = keys - queries
    column = np.arange(keys)[None, :] - (np.arange(queries)[:, None] + past) + left
    inside = (column >= 0) & (column < width)
    mask = np.where(inside, np.float32(0), np.float32(-np.inf))
    return np.clip(column, 0, width - 1), mask


def _window_attention(q_u, q_v, keys, values, p, left, scale) -> mx.array:
    """A streaming window's attention in MLX: q_u, q_v (B, H, T, D), keys and values
    (B, H, P+T, D), p the band's positions (H, D, L+R+1). Returns (B, H, T, D)."""
    b, h, t, _ = q_u.shape
    column, mask = window_band(t, keys.shape[2], left, p.shape[-1])
    by_distance = q_v @ p  # (B, H, T, L+R+1)
    index = mx.broadcast_to(mx.array(column), (b, h, *column.shape))
    scores = q_u @ keys.transpose(0, 1, 3, 2) + mx.take_along_axis(by_distance, index, axis=-1)
    scores = scores.astype(mx.float32) * scale + mx.array(mask)
    return mx.softmax(scores, axis=-1).astype(values.dtype) @ values


class RelPositionAttention(nn.Module):
    def __init__(self, n_heads: int, d_model: int, bias: bool = True):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.scale = self.head_dim**-0.5
        self.linear_q = nn.Linear(d_model, d_model, bias=bias)
        self.linear_k = nn.Linear(d_model, d_model, bias=bias)
        self.linear_v = nn.Linear(d_model, d_model, bias=bias)
        self.linear_out = nn.Linear(d_model, d_model, bias=bias)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = mx.zeros((n_heads, self.head_dim))
        self.pos_bias_v = mx.zeros((n_heads, self.head_dim))
        self.context: AttentionContext | None = None

    def _heads(self, x: mx.array) -> mx.array:
        b, t, _ = x.shape
        return x.reshape(b, t, self.n_heads, self.head_dim).transpose(0, 2, 1, 3)

    def __call__(
        self,
        x: mx.array,
        pos_emb: mx.array,
        key_mask: mx.array | None = None,
    ) -> mx.array:
        """x: (B, T, d); pos_emb from relative_position_embedding for this mode;
        key_mask: (B, T), True for real frames (batches padded to one length)."""
        b, t, d = x.shape
        q = self.linear_q(x).reshape(b, t, self.n_heads, self.head_dim)
        k = self._heads(self.linear_k(x))
        v = self._heads(self.linear_v(x))
        p = self.linear_pos(pos_emb).reshape(-1, self.n_heads, self.head_dim)
        if self.context is not None:
            p = band_positions(p, *self.context)
        q_u = (q + self.pos_bias_u).transpose(0, 2, 1, 3)
        q_v = (q + self.pos_bias_v).transpose(0, 2, 1, 3)
        # (B, H, T, P): the query's affinity to each relative distance (contiguous operands
        # let the batched product skip a copy per head)
        by_distance = mx.contiguous(q_v * self.scale) @ mx.contiguous(p.transpose(1, 2, 0))

        if self.context is None:
            if mx.default_device() == mx.cpu and q_u.dtype == mx.float32:
                out = _full_attention_cpu(q_u, k, v, by_distance, key_mask, self.scale)
            else:
                bias = _shift_relative(by_distance)
                if key_mask is not None:
                    bias = mx.where(key_mask[:, None, None, :], bias, mx.array(-1e9, bias.dtype))
                out = mx.fast.scaled_dot_product_attention(q_u, k, v, scale=self.scale, mask=bias)
            if key_mask is not None:
                out = mx.where(key_mask.any(axis=1)[:, None, None, None], out, 0)
        else:
            left, right = self.context
            out = local_attention(
                q_u,
                k,
                v,
                left=left,
                right=right,
                bias=by_distance,
                key_mask=key_mask,
                scale=self.scale,
            )
        out = out.transpose(0, 2, 1, 3).reshape(b, t, d)
        return self.linear_out(out)

    def projected_positions(self, context: AttentionContext) -> mx.array:
        """linear_pos of the band's relative-position embeddings, (H, head_dim, L+R+1),
        remapped as NeMo adds them (band_positions); the same for every call with this
        context, so streaming computes it once."""
        cached = getattr(self, "_positions", None)
        key = (context, id(self.linear_pos.weight))
        if cached is None or cached[0] != key:
            pos_emb = relative_position_embedding(0, self.n_heads * self.head_dim, context)
            p = self.linear_pos(pos_emb.astype(self.linear_pos.weight.dtype))
            p = band_positions(p.reshape(-1, self.n_heads, self.head_dim), *context)
            p = mx.contiguous(p.transpose(1, 2, 0))  # (H, head_dim, L+R+1), ready to multiply
            mx.eval(p)
            object.__setattr__(self, "_positions", (key, p))
            return p
        return cached[1]

    def attend_window(
        self, x: mx.array, past_k: mx.array | None, past_v: mx.array | None
    ) -> tuple[mx.array, mx.array, mx.array]:
        """Local attention of a streaming window: x (1, T, d) are the newest frames, past_k
        and past_v (1, H, P, head_dim) the projected keys and values of the P frames just
        before them. Returns the output and the window's own keys and values (to cache).

        Windows are short (tens of frames), so the band is applied to dense (T, P + T)
        scores instead of going through the long-sequence kernel."""
        if self.context is None:
            raise ValueError("streaming needs local attention (set_attention_model)")
        left, right = self.context
        b, t, d = x.shape
        q = self.linear_q(x).reshape(b, t, self.n_heads, self.head_dim)
        k = self._heads(self.linear_k(x))
        v = self._heads(self.linear_v(x))
        keys = k if past_k is None else mx.concatenate([past_k, k], axis=2)
        values = v if past_v is None else mx.concatenate([past_v, v], axis=2)
        q_u = (q + self.pos_bias_u).transpose(0, 2, 1, 3)
        q_v = (q + self.pos_bias_v).transpose(0, 2, 1, 3)
        p = self.projected_positions(self.context)
        out = _window_attention(q_u, q_v, keys, values, p, left, self.scale)
        out = out.transpose(0, 2, 1, 3).reshape(b, t, d)
        return self.linear_out(out), k, v
