"""Streaming transcription: audio in blocks of any size, final and draft tokens out.

Each update runs the encoder over the frames not yet settled, with every layer attending
to the keys and values it cached of the `left` frames before them (local attention). The
last `depth * (right + conv_radius)` frames stay unsettled: later audio still changes them,
so they are decoded as drafts and computed again at the next update. The frames before
them are settled: their encoder output is final for the first `depth` layers exactly as
offline (for all layers when `depth` covers them all), the decoder continues over them, and
their tokens are final and never change.

Features are normalized by statistics of everything heard so far (a stream has no whole
recording to take them from), or by fixed ones given at the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .alignment import sentences_to_result, tokens_to_sentences
from .cache import LayerCache
from .compiled_streaming import compile_pays_off, compiled_streaming_encoder, padded_length
from .cpu_streaming import numpy_streaming_encoder
from .cuda_streaming import cuda_streaming_encoder
from .decoding.config import DecodingConfig
from .decoding.greedy import Hypothesis
from .results import AlignedResult, AlignedToken
from .streaming_features import STD_FLOOR, RunningStatistics, StreamingFeatures
from .subsampling import subsampled_length


@dataclass
class StreamUpdate:
    """What one update changed: the tokens that became final, the new drafts."""

    finalized: list[AlignedToken]
    draft: list[AlignedToken]
    audio_seconds: float


def as_mono_float32(block) -> tuple[np.ndarray, bool]:
    """A block as 1-D float32 samples, and whether it held NaN or infinities (they become
    silence). Integer PCM is scaled to [-1, 1), channels are averaged. Raises ValueError
    for anything that is not samples."""
    array = np.asarray(block)
    if array.dtype.kind in "iu":
        scale = float(np.iinfo(array.dtype).max) + 1.0
        offset = scale if array.dtype.kind == "u" else 0.0
        array = (array.astype(np.float64) - offset) / scale
    elif array.dtype.kind not in "f":
        raise ValueError(f"audio blocks must be numeric samples, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array.mean(axis=1) if array.shape[1] <= 8 else array.mean(axis=0)
    elif array.ndim != 1:
        raise ValueError(
            f"audio blocks must be 1-D samples (or samples x channels), got {array.shape}"
        )
    array = array.astype(np.float32, copy=False)
    finite = bool(np.isfinite(array).all())
    if not finite:
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    return array, not finite


def _checked_context(context_size: tuple[int, int]) -> tuple[int, int]:
    left, right = (int(c) for c in context_size)
    if left <= 0 or right < 0:
        raise ValueError(f"context_size must be (left > 0, right >= 0), got {context_size}")
    return left, right


def _check_depth(depth: int) -> None:
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")


class StreamingParakeet:
    def __init__(
        self,
        model,
        context_size: tuple[int, int] = (256, 16),
        depth: int = 1,
        *,
        keep_original_attention: bool = False,
        decoding_config: DecodingConfig | None = None,
        feature_stats: tuple[np.ndarray, np.ndarray] | None = None,
        bf16_weights: bool = False,
        compiled: bool | None = None,  # None: compile_pays_off()
    ):
        self.model = model
        # bfloat16 weights: the layers run in numpy (asr.cpu_streaming)
        self._numpy_encoder = numpy_streaming_encoder(model.encoder) if bf16_weights else None
        # else fixed-shape caches and one compiled call per update: our CUDA kernels on an
        # NVIDIA GPU (asr.cuda_streaming), MLX's layers elsewhere (asr.compiled_streaming)
        use_compiled = compile_pays_off() if compiled is None else compiled
        self._compiled_encoder = (
            cuda_streaming_encoder(model.encoder) or compiled_streaming_encoder(model.encoder)
            if use_compiled and self._numpy_encoder is None
            else None
        )
        self.context_size = _checked_context(context_size)
        _check_depth(depth)
        self.depth = depth
        self.decoding_config = decoding_config or DecodingConfig()
        self.keep_original_attention = keep_original_attention
        self.fixed_stats = feature_stats
        self._saved_attention = None
        self._entered = False
        self.closed = False
        self.finalized_tokens: list[AlignedToken] = []
        self.draft_tokens: list[AlignedToken] = []
        self.nonfinite_blocks = 0
        self._time_offset = 0.0  # audio seconds before the last reset
        self._heard = 0.0  # audio seconds since then
        # the channel's statistics outlive resets: same microphone, same room
        self._stats = RunningStatistics(model.preprocessor_config.features)
        self.reset()

    # -- settings ----------------------------------------------------------------------
    @property
    def conv_radius(self) -> int:
        return (self.model.encoder_config.conv_kernel_size - 1) // 2

    @property
    def drop_size(self) -> int:
        """Encoder frames left unsettled at the end of each update."""
        layers = len(self.model.encoder.layers)
        return min(self.depth, layers) * (self.context_size[1] + self.conv_radius)

    def reset(self) -> None:
        """Forgets the audio and caches; text already final stays in finalized_tokens."""
        p = self.model.preprocessor_config
        self._features = StreamingFeatures(p)
        self._raw_mel = np.zeros((0, p.features), np.float32)
        self._raw_mel_start = 0  # mel frame index of self._raw_mel[0]
        self._settled = 0  # encoder frames settled
        if self._numpy_encoder is not None:
            self._caches = self._numpy_encoder.new_caches(self.context_size)
        elif self._compiled_encoder is not None:
            self._caches = self._compiled_encoder.new_caches(self.context_size)
        else:
            self._caches = [
                LayerCache(self.context_size[0], self.conv_radius)
                for _ in self.model.encoder.layers
            ]
        self._carry: Hypothesis | None = None
        self._skip = 0  # frames the decoder jumped past the settled ones (TDT durations)
        self._last_feature: mx.array | None = None  # CTC: the frame before the next one
        # times go on from the audio heard before the reset
        self._time_offset += self._heard
        self._heard = 0.0
        self.draft_tokens = []

    def set_context(self, context_size: tuple[int, int], depth: int | None = None) -> None:
        """Changes context and depth from the next update on, keeping final text. The
        caches were built for the old context, so the stream restarts its encoder state
        at the current audio position (times continue from there)."""
        context_size = _checked_context(context_size)
        if depth is not None:
            _check_depth(depth)
        self.finish_audio()
        self.context_size = context_size
        self.depth = depth or self.depth
        if self._entered:
            self.model.encoder.set_attention_model("rel_pos_local_attn", self.context_size)
        self.reset()

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> StreamingParakeet:
        self._saved_attention = self.model.encoder.attention_context
        if not self.keep_original_attention or self._saved_attention is None:
            self.model.encoder.set_attention_model("rel_pos_local_attn", self.context_size)
        self._entered = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.close()
        finally:
            self.restore_attention()

    def start_at(self, seconds: float) -> None:
        """Times of this stream's tokens count from `seconds` (a session that goes on)."""
        if self._features.samples:
            raise RuntimeError("start_at must come before any audio")
        self._time_offset = seconds

    def restore_attention(self) -> None:
        """Gives the model back the attention it had before the stream entered."""
        if not self._entered:
            return
        if self._saved_attention is None:
            self.model.encoder.set_attention_model("rel_pos")
        else:
            self.model.encoder.set_attention_model("rel_pos_local_attn", self._saved_attention)
        self._entered = False

    # -- results -----------------------------------------------------------------------
    @property
    def result(self) -> AlignedResult:
        tokens = self.finalized_tokens + self.draft_tokens
        return sentences_to_result(tokens_to_sentences(tokens, self.decoding_config.sentence))

    @property
    def audio_seconds(self) -> float:
        """Audio received since the stream started, in seconds."""
        return (
            self._time_offset + self._features.samples / self.model.preprocessor_config.sample_rate
        )

    # -- audio -------------------------------------------------------------------------
    def add_audio(self, block) -> StreamUpdate:
        """Adds a block of samples at the model's rate (1-D float32; integer PCM and
        channels are converted) and updates final and draft tokens."""
        if self.closed:
            raise RuntimeError("this stream is closed; start a new one with transcribe_stream")
        samples, had_nonfinite = as_mono_float32(block)
        self.nonfinite_blocks += had_nonfinite
        self._features.push(samples)
        self._heard = self._features.samples / self.model.preprocessor_config.sample_rate
        return self._update(final=False)

    def finish_audio(self) -> StreamUpdate:
        """Settles everything heard so far (the end of the recording, or a pause)."""
        update = self._update(final=True)
        self.draft_tokens = []
        return update

    def close(self) -> None:
        """Finalizes the tail. Closing twice does nothing the second time."""
        if self.closed:
            return
        self.finish_audio()
        self.closed = True

    # -- the update --------------------------------------------------------------------
    def _normalized(self, first_frame: int) -> np.ndarray:
        mel = self._raw_mel[first_frame - self._raw_mel_start :]
        normalize = self.model.preprocessor_config.normalize
        if normalize is None:
            return mel
        if self.fixed_stats is not None:
            mean, std = self.fixed_stats
        else:
            mean, std = self._stats.mean_std(normalize)
        return (mel - mean) / (std + STD_FLOOR)

    def _update(self, final: bool) -> StreamUpdate:
        model = self.model
        factor = model.encoder_config.subsampling_factor
        raw = self._features.frames(final=final)
        if len(raw):
            self._stats.add(raw)
            self._raw_mel = np.concatenate([self._raw_mel, raw])
        mel_frames = self._raw_mel_start + len(self._raw_mel)
        if final:
            ready = int(subsampled_length(mel_frames, model.encoder.pre_encode.stages))
        else:  # frame i reads mel frames up to factor*i + factor - 1
            ready = mel_frames // factor
        if ready <= self._settled:
            return StreamUpdate([], self.draft_tokens, self.audio_seconds)

        start = self._settled
        settle = ready - start if final else max(0, ready - self.drop_size - start)
        features = self._encode(start, ready, settle, final)
        new_final = self._decode_settled(features[:settle], start)
        self.finalized_tokens += new_final
        self.draft_tokens = [] if final else self._decode_draft(features[settle:], start + settle)
        self._settled += settle
        keep_from = max(0, factor * self._settled - 2 * factor)
        self._raw_mel = self._raw_mel[keep_from - self._raw_mel_start :]
        self._raw_mel_start = keep_from
        return StreamUpdate(new_final, self.draft_tokens, self.audio_seconds)

    def _encode(self, start: int, ready: int, settle: int, final: bool) -> mx.array:
        """Encoder output (T, d) of frames [start, ready); the caches take the first
        `settle` of them."""
        encoder = self.model.encoder
        factor = self.model.encoder_config.subsampling_factor
        first_mel = max(0, factor * start - 2 * factor)
        mel = self._normalized(first_mel)
        if self._compiled_encoder is not None and not final:
            # The subsampling sees few shapes too (a GPU makes convolution plans per shape,
            # and a window grows for seconds when the right context is long). Zeros after
            # the end reach no frame before `ready`.
            frames = factor * padded_length(-(-len(mel) // factor))
            mel = np.pad(mel, ((0, frames - len(mel)), (0, 0)))
        mel = mx.array(mel)[None].astype(self.model.dtype)
        x = encoder.pre_encode.out(encoder.pre_encode._convolve(mel))
        skip = start - first_mel // factor
        x = x[:, skip : skip + ready - start] * encoder.xscale
        if self._numpy_encoder is not None:
            x = np.asarray(x[0].astype(mx.float32))
            return mx.array(self._numpy_encoder(x, self._caches, settle))
        if self._compiled_encoder is not None:
            x = self._compiled_encoder(x, self._caches, settle, self.context_size)
            mx.eval(x, [cache.arrays() for cache in self._caches])
            return x[0]
        for layer, cache in zip(encoder.layers, self._caches, strict=True):
            x = layer.stream(x, cache, settle)
        # one evaluation for the whole update: a sync per layer costs more than the layer
        mx.eval(x, [cache.arrays() for cache in self._caches])
        return x[0]

    def _decode_settled(self, features: mx.array, first_frame: int) -> list[AlignedToken]:
        if features.shape[0] == 0:
            return []
        hyp, tokens = self._decode(features, first_frame)
        self._carry = hyp
        self._skip = max(0, hyp.next_frame - features.shape[0] - self._lead)
        self._last_feature = features[-1:]
        return tokens

    def _decode_draft(self, features: mx.array, first_frame: int) -> list[AlignedToken]:
        if features.shape[0] <= self._skip:
            return []
        return self._decode(features, first_frame)[1]

    @property
    def _lead(self) -> int:
        """Frames shown to the decoder before the new ones: a CTC decoder sees the last
        settled frame, as a label repeated across it is one token."""
        stateless = getattr(self.model, "stateless_decoder", False)
        return 1 if stateless and self._last_feature is not None else 0

    def _decode(
        self, features: mx.array, first_frame: int
    ) -> tuple[Hypothesis, list[AlignedToken]]:
        lead = self._lead
        if lead:
            features = mx.concatenate([self._last_feature, features])
        hyp = self.model.continue_decoding(features, lead + self._skip, None, self._carry)
        offset = self._time_offset + (first_frame - lead) * self.model.time_ratio
        return hyp, self.model.to_tokens(hyp, offset)
