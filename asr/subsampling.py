"""NeMo's `dw_striding` subsampling: log-mel frames -> one encoder frame per `factor` frames.

A stack of 3x3 stride-2 convolutions over (time, frequency): a full convolution first, then
depthwise + pointwise pairs. Its activations are large (channels x time x frequency), so long
inputs run through it in time slices with a halo of real neighbouring frames; the slices'
outputs are exactly those of one pass, and memory stays bounded by the slice length.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from . import cpu_path, cpu_subsampling
from .config import ConformerArgs

KERNEL, STRIDE, PADDING = 3, 2, 1
# Mel frames per slice when the input is long; a multiple of every subsampling factor.
SLICE_FRAMES = 4096


def subsampled_length(length: int | mx.array, stages: int):
    for _ in range(stages):
        length = (length + 2 * PADDING - KERNEL) // STRIDE + 1
    return length


class DwStridingSubsampling(nn.Module):
    def __init__(self, args: ConformerArgs):
        super().__init__()
        factor = args.subsampling_factor
        if factor < 2 or factor & (factor - 1):
            raise ValueError(f"subsampling_factor must be a power of two, got {factor}")
        self.stages = int(math.log2(factor))
        self.factor = factor
        channels = args.subsampling_conv_channels
        layers: list[nn.Module] = [
            nn.Conv2d(1, channels, KERNEL, stride=STRIDE, padding=PADDING),
            nn.ReLU(),
        ]
        for _ in range(self.stages - 1):
            layers += [
                nn.Conv2d(channels, channels, KERNEL, STRIDE, PADDING, groups=channels),
                nn.Conv2d(channels, channels, 1),
                nn.ReLU(),
            ]
        # Layer indices match NeMo's nn.Sequential, hence the checkpoint's names.
        self.conv = layers
        freq = subsampled_length(args.feat_in, self.stages)
        self.out = nn.Linear(channels * freq, args.d_model)

    def _convolve(self, x: mx.array, lengths: mx.array | None = None) -> mx.array:
        """(B, T, F) mel -> (B, T', C * F') features, C-major as NeMo flattens them.

        With `lengths` (a padded batch), the padding is zeroed before each strided
        convolution, as a lone item's zero padding would be, so the convolution biases
        never leak into the last real frames."""
        x = x[..., None]  # NHWC with H = time, W = frequency
        for i, layer in enumerate(self.conv):
            if lengths is not None and i > 0 and getattr(layer, "stride", (1,))[0] > 1:
                keep = mx.arange(x.shape[1])[None, :] < lengths[:, None]
                x = x * keep[:, :, None, None]
            if isinstance(layer, nn.Conv2d) and layer.stride[0] > 1 and lengths is not None:
                lengths = subsampled_length(lengths, 1)
            x = layer(x)
        b, t, f, c = x.shape
        return x.transpose(0, 1, 3, 2).reshape(b, t, c * f)

    def output_length(self, frames: int) -> int:
        return subsampled_length(frames, self.stages)

    def __call__(self, mel: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
        total = mel.shape[1]
        padded = mel.shape[0] > 1 and bool((lengths < total).any())
        if cpu_path.usable(mel, self.out.weight):
            x = cpu_subsampling.run(self, mel, lengths if padded else None)
        elif total <= SLICE_FRAMES:
            x = self.out(self._convolve(mel, lengths if padded else None))
        else:
            x = mx.concatenate(list(self._sliced(mel, lengths if padded else None)), axis=1)
        return x, subsampled_length(lengths, self.stages)

    def _sliced(self, mel: mx.array, lengths: mx.array | None):
        """Output frames of consecutive mel slices, each computed with `halo` real frames on
        both sides. Slices start on multiples of the factor, so their frames line up with one
        pass; the frames that saw a slice's artificial left edge fall in the dropped halo."""
        total = mel.shape[1]
        out_total = subsampled_length(total, self.stages)
        halo = 2 * self.factor
        for start in range(0, total, SLICE_FRAMES):
            lo = max(0, start - halo)
            hi = min(total, start + SLICE_FRAMES + halo)
            y = self._convolve(mel[:, lo:hi], None if lengths is None else lengths - lo)
            first = start // self.factor
            last = min(out_total, (start + SLICE_FRAMES) // self.factor)
            skip = (start - lo) // self.factor
            y = self.out(y[:, skip : skip + last - first])
            mx.eval(y)
            yield y
