"""dw_striding subsampling on a CPU, in numpy and MKL, in pieces shared among the cores.

MLX's CPU backend runs the grouped (depthwise) 3x3 convolutions at a small fraction of
what their arithmetic needs: measured on a 2-core machine for 60 s of audio (0.6b model),
390 ms of the subsampling's 580 ms; this path takes about 140 ms. The input is cut into
pieces of PIECE output frames; each piece runs through every stage with the frames its
convolutions need on both sides, so its intermediate activations (the first is 128x the
size of the output) stay a few MiB, and the pieces are shared among the cores
(asr.core_pool). A stage's frames outside the input are zeros, as the next convolution's
padding would be, so every piece gives exactly the frames one pass over the whole input
gives.

The first convolution is a product of 3x3 patches with the weights, each depthwise one an
einsum over strided windows, and each pointwise one a product.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from . import core_pool
from .mkl_gemm import gemm

# Output frames per piece: ~9 MiB of first-stage activations with 256 channels (measured:
# smaller pieces cost more in numpy calls than they gain in cache).
PIECE = 32


def _np(a: mx.array) -> np.ndarray:
    """A parameter as float32 numpy, without a copy where it is float32 already."""
    return np.asarray(a if a.dtype == mx.float32 else a.astype(mx.float32))


class CpuSubsampling:
    """Numpy views of a DwStridingSubsampling's weights (stride 2, 3x3, padding 1)."""

    def __init__(self, module):
        first = module.conv[0]
        self.channels = first.weight.shape[0]
        # (10, C): the nine taps, then the bias, which meets a column of ones in the patches
        self.first_weight = np.concatenate(
            [_np(first.weight).reshape(self.channels, 9).T, _np(first.bias)[None]]
        )
        # the later stages: (depthwise (3, 3, C), pointwise (C_in, C_out), bias)
        self.stages = []
        for i in range(2, len(module.conv), 3):
            depthwise, pointwise = module.conv[i], module.conv[i + 1]
            dw = _np(depthwise.weight)[:, :, :, 0].transpose(1, 2, 0).copy()
            pw = _np(pointwise.weight)[:, 0, 0, :].T
            # the depthwise bias goes through the pointwise product once, into its bias
            bias = _np(pointwise.bias) + _np(depthwise.bias) @ pw
            self.stages.append((dw, pw, bias))
        self.factor = 2 ** (1 + len(self.stages))
        out = _np(module.out.weight)  # (d, C * F): NeMo flattens channel-major
        d = out.shape[0]
        freq = out.shape[1] // self.channels
        # frequency-major columns, so a piece's (frames, F, C) output flattens in place
        self.out_weight_t = out.reshape(d, self.channels, freq).transpose(2, 1, 0).reshape(-1, d)
        self.out_bias = _np(module.out.bias)
        self.freq = freq

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """mel (T, F) of one item -> (T', d)."""
        frames = len(mel)
        lengths = [frames]
        for _ in range(len(self.stages) + 1):
            lengths.append((lengths[-1] - 1) // 2 + 1)
        out_frames = lengths[-1]
        # room for the frames pieces reach before the start and after the end
        margin = 2 * self.factor
        padded = np.zeros((frames + 2 * margin, mel.shape[1] + 2), np.float32)
        padded[margin : margin + frames, 1:-1] = mel
        flat = np.empty((out_frames, self.freq * self.channels), np.float32)
        starts = list(range(0, out_frames, PIECE))
        workers = core_pool.cores()

        def share(w: int) -> None:
            for start in starts[w::workers]:
                stop = min(start + PIECE, out_frames)
                self._piece(padded, margin, lengths, start, stop, flat[start:stop])

        core_pool.run_shares(share, workers)
        result = np.empty((out_frames, self.out_weight_t.shape[1]), np.float32)

        def project(w: int) -> None:
            rows = slice(w * out_frames // workers, (w + 1) * out_frames // workers)
            result[rows] = self.out_bias
            gemm(flat[rows], self.out_weight_t, result[rows], beta=1.0)

        core_pool.run_shares(project, workers)
        return result

    def _piece(self, padded, margin, lengths, start, stop, out) -> None:
        """Output frames start..stop-1 into out (n, F' * C)."""
        stages = len(self.stages) + 1
        # the frames each stage needs: stage s's frames lo_s .. hi_s - 1
        lo, hi = [start], [stop]
        for _ in range(stages):
            lo.insert(0, 2 * lo[0] - 1)
            hi.insert(0, 2 * (hi[0] - 1) + 2)
        # lo[0], hi[0]: mel frames; lo[1], hi[1]: the first convolution's output frames
        x = self._first(padded, margin, lo[1], hi[1], lengths[1])
        for s, (dw, pw, pw_bias) in enumerate(self.stages, start=2):
            x = self._stage(x, dw, pw, pw_bias, lo[s], hi[s], lengths[s])
        out.reshape(x.shape[0], -1, self.channels)[:] = x[:, 1:-1]

    def _first(self, padded, margin, lo, hi, valid) -> np.ndarray:
        """The first convolution and ReLU for frames lo..hi-1, as (n, F1 + 2, C) with zero
        columns on both sides (the next convolution's padding) and zero frames outside
        0..valid-1."""
        n = hi - lo
        freq = (padded.shape[1] - 2 - 1) // 2 + 1
        rows = padded.strides[0]
        item = padded.itemsize
        # patch [k, f, i, j] = mel[2 (lo + k) - 1 + i, 2 f - 1 + j], from the padded copy
        base = padded[margin + 2 * lo - 1 :]
        patches = np.lib.stride_tricks.as_strided(
            base, shape=(n, freq, 3, 3), strides=(2 * rows, 2 * item, rows, item)
        )
        columns = np.empty((n, freq + 2, 10), np.float32)
        columns[:, 0] = 0.0
        columns[:, -1] = 0.0
        columns[:, 1:-1, :9] = patches.reshape(n, freq, 9)
        columns[..., 9] = 1.0
        x = np.empty((n, freq + 2, self.channels), np.float32)
        gemm(columns.reshape(-1, 10), self.first_weight, x.reshape(-1, self.channels))
        np.maximum(x, 0.0, out=x)
        self._zero_outside(x, lo, valid)
        return x

    def _stage(self, x, dw, pw, pw_bias, lo, hi, valid) -> np.ndarray:
        """Depthwise 3x3 stride-2, pointwise and ReLU over x (frames 2 lo - 1 ..), giving
        frames lo..hi-1 as (n, F + 2, C), padded like _first's."""
        n = hi - lo
        freq = (x.shape[1] - 2 - 1) // 2 + 1
        conv = np.empty((n, freq + 2, self.channels), np.float32)
        conv[:, 0] = 0.0
        conv[:, -1] = 0.0
        # windows[u, f, i, j] = x[2u + i, 2f + j]: a view; einsum's sums of products run
        # about 3x faster than nine multiply-adds
        rows, cols, item = x.strides
        windows = np.lib.stride_tricks.as_strided(
            x, shape=(n, freq, 3, 3, self.channels), strides=(2 * rows, 2 * cols, rows, cols, item)
        )
        np.einsum("ufijc,ijc->ufc", windows, dw, out=conv[:, 1:-1])
        y = np.empty_like(conv)
        y[...] = pw_bias
        gemm(conv.reshape(-1, self.channels), pw, y.reshape(-1, self.channels), beta=1.0)
        np.maximum(y, 0.0, out=y)
        y[:, 0] = 0.0
        y[:, -1] = 0.0
        self._zero_outside(y, lo, valid)
        return y

    @staticmethod
    def _zero_outside(x: np.ndarray, lo: int, valid: int) -> None:
        x[: max(0, min(len(x), -lo))] = 0.0
        x[max(0, valid - lo) :] = 0.0
        x[:, 0] = 0.0
        x[:, -1] = 0.0


def run(module, mel: mx.array, lengths: mx.array | None) -> mx.array:
    """module's output for mel (B, T, F); with `lengths`, each item on its own frames
    and zeros after them."""
    layers = CpuSubsampling(module)
    items = np.asarray(mel)
    sizes = [mel.shape[1]] * mel.shape[0] if lengths is None else np.asarray(lengths).tolist()
    frames = module.output_length(mel.shape[1])
    out = np.zeros((len(sizes), frames, layers.out_weight_t.shape[1]), np.float32)
    for i, n in enumerate(sizes):
        if n > 0:
            own = layers(np.ascontiguousarray(items[i, : int(n)]))
            out[i, : len(own)] = own
    return mx.array(out)
