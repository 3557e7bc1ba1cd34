"""The conformer layers on a CPU, in numpy and MKL, on every core.

MLX's CPU backend runs one operation at a time: each product on all cores through MKL, but
each element-wise pass (layer norms, activations, the softmax over T x T scores, the
depthwise convolution) on one core, and a 1x1 Conv1d at well under the throughput of the
same product as a matrix multiply. Measured on a 2-core machine with the 0.6b model at
T = 750: 265 ms per layer in MLX, of which 136 ms are products; about 150 ms here.

Here each layer runs as three stretches of work split evenly over the cores (asr.core_pool),
each worker with MKL on its own core: frames are split wherever frames are independent
(feed-forward modules, projections, layer norms, the convolution module), heads within
attention. Products write into slices of shared arrays and accumulate the residual
connections into the stream itself; exp and the sigmoid gates go through MKL's vector math
(asr.mkl_vector). The layers compute what ConformerBlock computes, with full or local
attention (to a few 1e-6); padded batches run item by item on each item's own frames. Local
attention (256, 256) over 10 minutes with the 0.6b model: 40 s here against 76 s in MLX.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from . import core_pool, mkl_vector
from .fast_math import layer_norm_numpy
from .mkl_gemm import gemm

# Queries per product of their relative-position scores (see CpuLayer._attend_full).
DISTANCE_BLOCK = 128
# Queries per block of local attention (see CpuLayer._attend_local).
BAND_BLOCK = 128


def _np(a: mx.array) -> np.ndarray:
    """A parameter as float32 numpy, without a copy where it is float32 already."""
    return np.asarray(a if a.dtype == mx.float32 else a.astype(mx.float32))


def _shares(count: int, shares: int) -> list[slice]:
    bounds = np.linspace(0, count, shares + 1).round().astype(int)
    return [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


class _Linear:
    """y = x @ weight.T + bias, the weight kept as MLX holds it (out, in)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None):
        self.weight_t, self.bias = weight.T, bias

    @classmethod
    def of(cls, layer) -> _Linear:
        weight = _np(layer.weight)
        weight = weight[:, 0, :] if weight.ndim == 3 else weight  # Conv1d of kernel 1
        return cls(weight, _np(layer.bias) if "bias" in layer else None)

    @property
    def out_features(self) -> int:
        return self.weight_t.shape[1]

    def into(self, x: np.ndarray, out: np.ndarray, sign: float = 1.0) -> np.ndarray:
        """out = sign * (x @ weight.T + bias); sign -1 hands a gate its negated input."""
        if self.bias is None:
            return gemm(x, self.weight_t, out, alpha=sign)
        if sign == 1.0:
            out[...] = self.bias
        else:
            np.negative(self.bias, out=out[...])
        return gemm(x, self.weight_t, out, alpha=sign, beta=1.0)

    def __call__(self, x: np.ndarray, sign: float = 1.0) -> np.ndarray:
        return self.into(x, np.empty((len(x), self.out_features), np.float32), sign)

    def add_to(self, x: np.ndarray, out: np.ndarray, scale: float = 1.0) -> None:
        """out += scale * (x @ weight.T + bias)."""
        if self.bias is not None:
            out += self.bias if scale == 1.0 else np.float32(scale) * self.bias
        gemm(x, self.weight_t, out, alpha=scale, beta=1.0)


class _Norm:
    def __init__(self, norm):
        self.weight, self.bias, self.eps = _np(norm.weight), _np(norm.bias), norm.eps

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty_like(x) if out is None else out
        return layer_norm_numpy(x, self.weight, self.bias, self.eps, out)


class _FeedForward:
    def __init__(self, norm, ff):
        self.norm = _Norm(norm)
        self.linear1, self.linear2 = _Linear.of(ff.linear1), _Linear.of(ff.linear2)

    def add_half_to(self, x: np.ndarray) -> None:
        """x += 0.5 * feed_forward(norm(x)), in place."""
        negated = self.linear1(self.norm(x), sign=-1.0)
        hidden = mkl_vector.silu_of_negated(negated, np.empty_like(negated))
        self.linear2.add_to(hidden, x, 0.5)


class _Shared:
    """The arrays a layer's stretches hand on to each other, for T frames."""

    def __init__(self, t: int, d: int, positions: int):
        self.q_u = np.empty((t, d), np.float32)
        self.q_v = np.empty((t, d), np.float32)
        self.k = np.empty((t, d), np.float32)
        self.v = np.empty((t, d), np.float32)
        self.p = np.empty((positions, d), np.float32)
        self.attended = np.empty((t, d), np.float32)
        self.gated = np.empty((t, d), np.float32)


class CpuLayer:
    """One ConformerBlock, as numpy views of its MLX weights: full attention, or local
    attention with `context` (left, right)."""

    def __init__(self, block, context: tuple[int, int] | None = None):
        att, conv = block.self_attn, block.conv
        self.context = context
        # local: the band's projected positions (H, head_dim, L+R+1), as NeMo adds them
        self.band = None if context is None else _np(att.projected_positions(context))
        self.ff1 = _FeedForward(block.norm_feed_forward1, block.feed_forward1)
        self.norm_att = _Norm(block.norm_self_att)
        self.q, self.k, self.v = (_Linear.of(m) for m in (att.linear_q, att.linear_k, att.linear_v))
        self.out = _Linear.of(att.linear_out)
        self.pos = _Linear.of(att.linear_pos)
        self.heads, self.head_dim, self.scale = att.n_heads, att.head_dim, att.scale
        self.bias_u = _np(att.pos_bias_u).reshape(-1)
        self.bias_v = _np(att.pos_bias_v).reshape(-1)
        self.norm_conv = _Norm(block.norm_conv)
        # the GLU's two halves as two products: its gate comes negated (asr.mkl_vector)
        pointwise1 = _Linear.of(conv.pointwise_conv1)
        half = pointwise1.out_features // 2
        weight, bias = pointwise1.weight_t.T, pointwise1.bias
        self.glu_value = _Linear(weight[:half], None if bias is None else bias[:half])
        self.glu_gate = _Linear(weight[half:], None if bias is None else bias[half:])
        self.pointwise2 = _Linear.of(conv.pointwise_conv2)
        # batch norm (running statistics) folded into the depthwise convolution, negated
        # for the silu after it
        bn = conv.batch_norm
        bn_scale = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
        self.depthwise = _np(conv.depthwise_conv.weight)[:, :, 0].T * -bn_scale  # (kernel, C)
        dw_bias = _np(conv.depthwise_conv.bias) if "bias" in conv.depthwise_conv else 0.0
        self.depthwise_bias = -((dw_bias - _np(bn.running_mean)) * bn_scale + _np(bn.bias))
        self.ff2 = _FeedForward(block.norm_feed_forward2, block.feed_forward2)
        self.norm_out = _Norm(block.norm_out)

    def project(self, x: np.ndarray, rows: slice, shared: _Shared) -> None:
        """Up to attention, for the frames `rows`: the first feed-forward module (into x)
        and the queries, keys and values."""
        self.ff1.add_half_to(x)
        normed = self.norm_att(x)
        q = self.q(normed)
        np.add(q, self.bias_u, out=shared.q_u[rows])
        np.add(q, self.bias_v, out=shared.q_v[rows])
        self.k.into(normed, shared.k[rows])
        self.v.into(normed, shared.v[rows])

    def project_positions(self, pos_emb: np.ndarray, rows: slice, shared: _Shared) -> None:
        self.pos.into(pos_emb[rows], shared.p[rows])

    def attend(self, heads: range, shared: _Shared) -> None:
        """Rel-pos attention of these heads, into their columns of `attended`."""
        if self.context is None:
            self._attend_full(heads, shared)
        else:
            self._attend_local(heads, shared)

    def _attend_local(self, heads: range, shared: _Shared) -> None:
        """Local attention, a block of queries at a time against the keys their bands span.

        A block's position terms are (B, L+R+1) per query, one column per key offset; the
        score of query i and key j takes column j - i + L. Written into a row buffer padded
        with -inf on both sides, they are read back as a (B, keys) view whose rows start
        one element earlier each: a strided view, no gather, -inf outside the band."""
        left, right = self.context
        t, width, block = len(shared.k), left + right + 1, BAND_BLOCK
        padded = np.full((block, 2 * block + width), -np.inf, np.float32)
        row = padded.shape[1]
        unnormalized = np.empty((block, self.head_dim), np.float32)
        for h in heads:
            cols = slice(h * self.head_dim, (h + 1) * self.head_dim)
            for r0 in range(0, t, block):
                r1 = min(t, r0 + block)
                n = r1 - r0
                k0, k1 = max(0, r0 - left), min(t, r1 + right)
                terms = padded[:n, block : block + width]
                gemm(shared.q_v[r0:r1, cols], self.band[h], terms, alpha=self.scale)
                # scores[i, c] = padded[i, block + (k0 + c) - (r0 + i) + left]
                start = block + k0 - r0 + left
                scores = np.lib.stride_tricks.as_strided(
                    padded.reshape(-1)[start:],
                    shape=(n, k1 - k0),
                    strides=((row - 1) * padded.itemsize, padded.itemsize),
                ).copy()
                gemm(
                    shared.q_u[r0:r1, cols],
                    shared.k[k0:k1, cols].T,
                    scores,
                    alpha=self.scale,
                    beta=1.0,
                )
                scores -= scores.max(axis=-1, keepdims=True)
                mkl_vector.exp(scores, out=scores)
                total = scores.sum(axis=-1, keepdims=True)
                values = np.ascontiguousarray(shared.v[k0:k1, cols])
                gemm(scores, values, unnormalized[:n])
                np.divide(unnormalized[:n], total, out=shared.attended[r0:r1, cols])

    def _attend_full(self, heads: range, shared: _Shared) -> None:
        """Full rel-pos attention of these heads, into their columns of `attended`."""
        t, positions = len(shared.k), len(shared.p)
        scores = np.empty((t, t), np.float32)
        by_distance = np.empty((t, positions), np.float32)
        unnormalized = np.empty((t, self.head_dim), np.float32)
        # score[i, j] starts as by_distance[i, T-1-i+j]: a strided view, rows one shorter
        shifted = np.lib.stride_tricks.as_strided(
            by_distance.reshape(-1)[t - 1 :],
            shape=(t, t),
            strides=((positions - 1) * by_distance.itemsize, by_distance.itemsize),
        )
        for h in heads:
            cols = slice(h * self.head_dim, (h + 1) * self.head_dim)
            # query i needs distances T-1-i .. -i only, half of the 2T-1: a block of queries
            # r0..r1-1 multiplies just the T + r1 - r0 - 1 positions its band spans
            for r0 in range(0, t, DISTANCE_BLOCK):
                r1 = min(t, r0 + DISTANCE_BLOCK)
                band = slice(t - r1, 2 * t - 1 - r0)
                gemm(
                    shared.q_v[r0:r1, cols],
                    shared.p[band, cols].T,
                    by_distance[r0:r1, band],
                    alpha=self.scale,
                )
            np.copyto(scores, shifted)
            gemm(shared.q_u[:, cols], shared.k[:, cols].T, scores, alpha=self.scale, beta=1.0)
            scores -= scores.max(axis=-1, keepdims=True)
            mkl_vector.exp(scores, out=scores)
            total = scores.sum(axis=-1, keepdims=True)
            # contiguous operands: MKL reads and writes column slices at 2/3 the speed here
            gemm(scores, np.ascontiguousarray(shared.v[:, cols]), unnormalized)
            # normalizing the T x head_dim output, not the T x T weights
            np.divide(unnormalized, total, out=shared.attended[:, cols])

    def gate(self, x: np.ndarray, rows: slice, shared: _Shared) -> None:
        """After attention, for the frames `rows`: the output projection (into x) and the
        convolution module's gated input."""
        self.out.add_to(shared.attended[rows], x)
        normed = self.norm_conv(x)
        gate = self.glu_gate(normed, sign=-1.0)
        mkl_vector.gate_of_negated(self.glu_value(normed), gate, out=shared.gated[rows])

    def finish(self, x: np.ndarray, rows: slice, shared: _Shared) -> None:
        """The rest of the layer for the frames `rows`, in place: depthwise convolution
        (which reads the gated inputs of neighbouring frames), second feed-forward module
        and the output norm."""
        radius = (len(self.depthwise) - 1) // 2
        t = len(shared.gated)
        n = rows.stop - rows.start
        padded = np.zeros((n + 2 * radius, shared.gated.shape[1]), np.float32)
        lo, hi = max(0, rows.start - radius), min(t, rows.stop + radius)
        padded[lo - (rows.start - radius) : hi - (rows.start - radius)] = shared.gated[lo:hi]
        # windows[i, k] = padded[i + k]: a view; einsum's sums of products run about 4x
        # faster than nine multiply-adds
        rows, item = padded.strides
        windows = np.lib.stride_tricks.as_strided(
            padded, shape=(n, len(self.depthwise), padded.shape[1]), strides=(rows, rows, item)
        )
        conv = np.einsum("tkc,kc->tc", windows, self.depthwise)
        conv += self.depthwise_bias
        mkl_vector.silu_of_negated(conv, np.empty_like(conv))
        self.pointwise2.add_to(conv, x)
        self.ff2.add_half_to(x)
        self.norm_out(x, out=x)


class CpuEncoderLayers:
    """All the layers, for one item (T, d) at a time."""

    def __init__(self, blocks, context: tuple[int, int] | None = None):
        self.layers = [CpuLayer(block, context) for block in blocks]
        self.local = context is not None

    def __call__(self, x: np.ndarray, pos_emb: np.ndarray) -> np.ndarray:
        """x: (T, d) float32, changed in place and returned; pos_emb: (2T-1, d) for full
        attention (local attention uses the layers' band positions)."""
        t, d = x.shape
        heads = self.layers[0].heads if self.layers else 1
        # one share per core, but no more than there are heads (a share has at least one)
        workers = min(core_pool.cores(), heads)
        rows = _shares(t, workers)
        positions = 0 if self.local else len(pos_emb)
        position_rows = _shares(positions, workers)
        head_shares = [range(s.start, s.stop) for s in _shares(heads, workers)]
        shared = _Shared(t, d, positions)
        for i, layer in enumerate(self.layers):
            before = self.layers[i - 1] if i else None

            def prepare(w: int, layer=layer, before=before) -> None:
                if before is not None:
                    before.finish(x[rows[w]], rows[w], shared)
                layer.project(x[rows[w]], rows[w], shared)
                if not self.local:
                    layer.project_positions(pos_emb, position_rows[w], shared)

            core_pool.run_shares(prepare, workers)
            core_pool.run_shares(
                lambda w, layer=layer: layer.attend(head_shares[w], shared), workers
            )
            core_pool.run_shares(
                lambda w, layer=layer: layer.gate(x[rows[w]], rows[w], shared), workers
            )
        if self.layers:
            last = self.layers[-1]
            core_pool.run_shares(lambda w: last.finish(x[rows[w]], rows[w], shared), workers)
        return x


def run_layers(
    encoder,
    x: mx.array,
    pos_emb: mx.array,
    lengths: mx.array | None,
    context: tuple[int, int] | None = None,
) -> mx.array:
    """The encoder's layers over x (B, T, d) with full attention, or local attention with
    `context`; with `lengths`, each item runs on its own frames and the padding comes out
    as zeros."""
    layers = CpuEncoderLayers(encoder.layers, context)
    pos = np.ascontiguousarray(np.asarray(pos_emb.astype(mx.float32)))
    items = np.array(x, dtype=np.float32)  # a copy: the layers work in place
    b, t, _ = items.shape
    sizes = [t] * b if lengths is None else [int(n) for n in np.asarray(lengths)]
    out = np.zeros_like(items) if lengths is not None else items
    for i, n in enumerate(sizes):
        if n <= 0:
            continue
        own = np.ascontiguousarray(items[i, :n])
        # full attention: distances n-1 .. -(n-1) sit in the middle of the 2T-1 embeddings
        out[i, :n] = layers(own, pos if context else pos[t - n : t + n - 1])
    return mx.array(out)
