"""FastConformer encoder: subsampling, then blocks of feed-forward / attention / convolution."""

from __future__ import annotations

import math
import os
import warnings

import mlx.core as mx
import mlx.nn as nn

from . import cpu_encoder, cpu_path, fast_math
from .attention import AttentionContext, RelPositionAttention, relative_position_embedding
from .cache import LayerCache
from .config import ConformerArgs
from .subsampling import DwStridingSubsampling

ATTENTION_MODELS = ("rel_pos", "rel_pos_local_attn")
# Local attention used for inputs too long for full attention's T x T scores.
LONG_INPUT_CONTEXT = (256, 256)


def memory_bytes() -> int:
    """The device's memory where MLX reports it, else the machine's RAM."""
    reported = mx.device_info().get("memory_size")
    if reported:
        return int(reported)
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def full_attention_fits(frames: int, heads: int, itemsize: int) -> bool:
    """Whether the scores of full attention (a few T x T tensors per head at once) stay
    within a quarter of the memory."""
    return 3 * frames * frames * heads * itemsize <= memory_bytes() // 4


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, bias: bool = True):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear2(fast_math.silu(self.linear1(x)))


class ConvolutionModule(nn.Module):
    def __init__(self, d_model: int, kernel_size: int, bias: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conv_kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, 1, bias=bias)
        self.depthwise_conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=bias)
        self.batch_norm = nn.BatchNorm(d_model)
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, 1, bias=bias)

    def depthwise(self, x: mx.array, past: mx.array | None = None) -> mx.array:
        """'Same' depthwise convolution as a sum of shifted, scaled copies: a few cheap
        element-wise passes, where MLX's grouped convolution is slow on the CPU.

        `past` holds the inputs of frames before x (a streaming window's left neighbours);
        zeros stand in for frames before the start and for those not yet heard."""
        pad = (self.kernel_size - 1) // 2
        t = x.shape[1]
        have = 0 if past is None else min(pad, past.shape[1])
        if have:
            x = mx.concatenate([past[:, past.shape[1] - have :], x], axis=1)
        x = mx.pad(x, [(0, 0), (pad - have, pad), (0, 0)])
        w = self.depthwise_conv.weight[:, :, 0].T  # (kernel, channels)
        out = x[:, 0:t] * w[0]
        for i in range(1, self.kernel_size):
            out = out + x[:, i : i + t] * w[i]
        if "bias" in self.depthwise_conv:
            out = out + self.depthwise_conv.bias
        return out

    def gated(self, x: mx.array) -> mx.array:
        """The depthwise convolution's input: pointwise convolution and GLU."""
        return fast_math.glu(self.pointwise_conv1(x), axis=-1)

    def finish(self, x: mx.array) -> mx.array:
        return self.pointwise_conv2(fast_math.silu(self.batch_norm(x)))

    def __call__(self, x: mx.array, frame_mask: mx.array | None = None) -> mx.array:
        x = self.gated(x)
        if frame_mask is not None:  # padded frames must not leak into real ones
            x = x * frame_mask[..., None]
        return self.finish(self.depthwise(x))


class ConformerBlock(nn.Module):
    def __init__(self, args: ConformerArgs):
        super().__init__()
        d, d_ff = args.d_model, args.d_model * args.ff_expansion_factor
        self.norm_feed_forward1 = nn.LayerNorm(d)
        self.feed_forward1 = FeedForward(d, d_ff, args.use_bias)
        self.norm_self_att = nn.LayerNorm(d)
        self.self_attn = RelPositionAttention(args.n_heads, d, args.use_bias)
        self.norm_conv = nn.LayerNorm(d)
        self.conv = ConvolutionModule(d, args.conv_kernel_size, args.use_bias)
        self.norm_feed_forward2 = nn.LayerNorm(d)
        self.feed_forward2 = FeedForward(d, d_ff, args.use_bias)
        self.norm_out = nn.LayerNorm(d)

    def __call__(
        self, x: mx.array, pos_emb: mx.array, frame_mask: mx.array | None = None
    ) -> mx.array:
        x = x + 0.5 * self.feed_forward1(self.norm_feed_forward1(x))
        x = x + self.self_attn(self.norm_self_att(x), pos_emb, frame_mask)
        x = x + self.conv(self.norm_conv(x), frame_mask)
        x = x + 0.5 * self.feed_forward2(self.norm_feed_forward2(x))
        return self.norm_out(x)

    def stream(self, x: mx.array, cache: LayerCache, settle: int) -> mx.array:
        """One streaming window (1, T, d) after the frames the cache holds; the first
        `settle` frames are then added to the cache."""
        x = x + 0.5 * self.feed_forward1(self.norm_feed_forward1(x))
        attended, keys, values = self.self_attn.attend_window(
            self.norm_self_att(x), cache.keys, cache.values
        )
        x = x + attended
        gated = self.conv.gated(self.norm_conv(x))
        x = x + self.conv.finish(self.conv.depthwise(gated, cache.conv))
        x = x + 0.5 * self.feed_forward2(self.norm_feed_forward2(x))
        cache.settle(keys[:, :, :settle], values[:, :, :settle], gated[:, :settle])
        return self.norm_out(x)


class Conformer(nn.Module):
    def __init__(self, args: ConformerArgs):
        super().__init__()
        if args.subsampling != "dw_striding" or args.causal_downsampling:
            raise ValueError(
                f"unsupported subsampling {args.subsampling!r}"
                + (" (causal)" if args.causal_downsampling else "")
            )
        if args.self_attention_model not in ATTENTION_MODELS:
            raise ValueError(f"unsupported self_attention_model {args.self_attention_model!r}")
        self.args = args
        self.pre_encode = DwStridingSubsampling(args)
        self.layers = [ConformerBlock(args) for _ in range(args.n_layers)]
        self.xscale = math.sqrt(args.d_model) if args.xscaling else 1.0
        context = args.att_context_size or [-1, -1]
        if args.self_attention_model == "rel_pos_local_attn":
            self.set_attention_model("rel_pos_local_attn", (context[0], context[1]))
        else:
            self.set_attention_model("rel_pos")

    @property
    def attention_context(self) -> AttentionContext | None:
        """(left, right) frames each frame attends to, or None for full attention."""
        return self.layers[0].self_attn.context if self.layers else None

    def set_attention_model(
        self, name: str, context_size: tuple[int, int] | None = (256, 256)
    ) -> None:
        """Switch between full ('rel_pos') and local ('rel_pos_local_attn') attention in
        place; the weights are shared by both, so nothing is reloaded."""
        if name == "rel_pos":
            context = None
        elif name == "rel_pos_local_attn":
            if context_size is None or len(context_size) != 2:
                raise ValueError("local attention needs a (left, right) context size")
            left, right = (int(c) for c in context_size)
            if left <= 0 or right < 0:
                raise ValueError(f"local attention context must be positive, got ({left}, {right})")
            context = (left, right)
        else:
            raise ValueError(f"unknown attention model {name!r}; use one of {ATTENTION_MODELS}")
        self._use_context(context)

    def __call__(self, mel: mx.array, lengths: mx.array | None = None) -> tuple[mx.array, mx.array]:
        """mel: (B, T, features) -> (B, T', d_model) and the valid lengths T'."""
        if mel.ndim == 2:
            mel = mel[None]
        batch, frames = mel.shape[:2]
        if lengths is None:
            lengths = mx.full((batch,), frames, dtype=mx.int32)
        x, lengths = self.pre_encode(mel, lengths)
        x = x * self.xscale
        t = x.shape[1]
        frame_mask = None
        if batch > 1:
            frame_mask = mx.arange(t)[None, :] < lengths[:, None]
            if bool(frame_mask.all()):
                frame_mask = None
        context = self.attention_context
        if context is None and not full_attention_fits(t, self.args.n_heads, x.dtype.size):
            warnings.warn(
                f"{t} frames are too many for full attention in this memory; using local "
                f"attention {LONG_INPUT_CONTEXT} for this input (set_attention_model chooses)",
                stacklevel=2,
            )
            context = LONG_INPUT_CONTEXT
        pos_emb = relative_position_embedding(t, self.args.d_model, context)
        pos_emb = pos_emb.astype(x.dtype)
        weights = self.layers[0].self_attn.linear_q.weight if self.layers else x
        if cpu_path.usable(x, weights):
            padded = lengths if frame_mask is not None else None
            return cpu_encoder.run_layers(self, x, pos_emb, padded, context), lengths
        saved = self.attention_context
        self._use_context(context)
        try:
            for layer in self.layers:
                x = layer(x, pos_emb, frame_mask)
                if t > 2048:  # bound the lazy graph's memory on long inputs
                    mx.eval(x)
        finally:
            self._use_context(saved)
        return x, lengths

    def _use_context(self, context: AttentionContext | None) -> None:
        for layer in self.layers:
            layer.self_attn.context = context
