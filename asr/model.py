"""Parakeet models: encoder + decoder, from mel or from a file to aligned tokens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from . import tokenizer
from .alignment import merge_chunks, sentences_to_result, tokens_to_sentences
from .audio import get_logmel, load_audio
from .config import ConformerArgs, CTCArgs, PreprocessArgs, TransducerArgs
from .conformer import Conformer
from .ctc import ConvASRDecoder
from .decoding import cuda_greedy
from .decoding.beam import beam_ctc, beam_transducer
from .decoding.config import Beam, DecodingConfig
from .decoding.greedy import Hypothesis, greedy_ctc, greedy_transducer
from .decoding.stepper import TransducerStepper
from .results import AlignedResult, AlignedToken
from .streaming import StreamingParakeet
from .transducer import JointNetwork, PredictionNetwork

ChunkCallback = Callable[[int, int], None]


DEFAULT_STREAM_CONTEXT = (256, 16)


class BaseParakeet(nn.Module):
    def __init__(self, preprocessor: PreprocessArgs, encoder: ConformerArgs, vocabulary: list[str]):
        super().__init__()
        self.preprocessor_config = preprocessor
        self.encoder_config = encoder
        self.vocabulary = list(vocabulary)
        self.encoder = Conformer(encoder)

    @property
    def blank(self) -> int:
        return len(self.vocabulary)

    @property
    def time_ratio(self) -> float:
        """Seconds per encoder frame."""
        p = self.preprocessor_config
        return self.encoder_config.subsampling_factor * p.hop_length / p.sample_rate

    @property
    def dtype(self) -> mx.Dtype:
        return self.encoder.pre_encode.out.weight.dtype

    # -- decoding -----------------------------------------------------------------------
    def decode(
        self,
        features: mx.array,
        lengths: mx.array | None = None,
        config: DecodingConfig | None = None,
    ) -> list[Hypothesis]:
        """(B, T, d_model) encoder output -> one hypothesis per batch item."""
        raise NotImplementedError  # each model family defines it

    @staticmethod
    def _lengths(features: mx.array, lengths: mx.array | None) -> list[int]:
        if lengths is None:
            return [features.shape[1]] * features.shape[0]
        return [int(n) for n in lengths.tolist()]

    def to_tokens(self, hyp: Hypothesis, time_offset: float = 0.0) -> list[AlignedToken]:
        ratio = self.time_ratio
        return [
            AlignedToken(
                id=token,
                text=tokenizer.decode([token], self.vocabulary),
                start=time_offset + frame * ratio,
                duration=duration * ratio,
                confidence=confidence,
            )
            for token, frame, duration, confidence in zip(
                hyp.tokens, hyp.frames, hyp.durations, hyp.confidences, strict=True
            )
        ]

    def generate(
        self,
        mel: mx.array,
        *,
        lengths: mx.array | None = None,
        decoding_config: DecodingConfig | None = None,
    ) -> list[AlignedResult]:
        """Mel (T, F) or (B, T, F), with valid `lengths` for padded batches -> results."""
        config = decoding_config or DecodingConfig()
        if mel.ndim == 2:
            mel = mel[None]
        features, enc_lengths = self.encoder(mel.astype(self.dtype), lengths)
        mx.eval(features, enc_lengths)
        return [
            sentences_to_result(tokens_to_sentences(self.to_tokens(h), config.sentence))
            for h in self.decode(features, enc_lengths, config)
        ]

    # -- files --------------------------------------------------------------------------
    def transcribe(
        self,
        path: Path | str,
        *,
        dtype: mx.Dtype | None = None,
        decoding_config: DecodingConfig | None = None,
        chunk_duration: float | None = None,
        overlap_duration: float = 15.0,
        chunk_callback: ChunkCallback | None = None,
    ) -> AlignedResult:
        """Transcribes a file. With `chunk_duration` (seconds), long audio is cut into chunks
        that overlap by `overlap_duration`, and their tokens are merged in the overlaps.
        `chunk_callback(done_samples, total_samples)` reports progress."""
        audio = load_audio(Path(path), self.preprocessor_config.sample_rate)
        return self.transcribe_audio(
            audio,
            dtype=dtype,
            decoding_config=decoding_config,
            chunk_duration=chunk_duration,
            overlap_duration=overlap_duration,
            chunk_callback=chunk_callback,
        )

    def transcribe_audio(
        self,
        audio: mx.array,
        *,
        dtype: mx.Dtype | None = None,
        decoding_config: DecodingConfig | None = None,
        chunk_duration: float | None = None,
        overlap_duration: float = 15.0,
        chunk_callback: ChunkCallback | None = None,
    ) -> AlignedResult:
        config = decoding_config or DecodingConfig()
        dtype = dtype or self.dtype
        rate = self.preprocessor_config.sample_rate
        total = len(audio)
        min_samples = self.preprocessor_config.hop_length * 2
        if total < min_samples:
            raise ValueError(
                f"audio is too short to transcribe: {total / rate:.3f} s "
                f"(at least {min_samples / rate:.3f} s is needed)"
            )
        # Chunks start on the encoder's frame grid, so a chunk's frames are the whole
        # recording's frames and the tokens of two chunks line up in their overlap.
        grid = self.preprocessor_config.hop_length * self.encoder_config.subsampling_factor
        chunk = int(chunk_duration * rate) // grid * grid if chunk_duration else 0
        overlap = -(-int(overlap_duration * rate) // grid) * grid if chunk else 0
        if chunk and overlap >= chunk:
            raise ValueError(
                f"overlap_duration ({overlap_duration} s) must be shorter than "
                f"chunk_duration ({chunk_duration} s)"
            )
        if not chunk or total <= chunk:
            tokens = self.to_tokens(self.decode(self._encode(audio, dtype), None, config)[0])
            if chunk_callback is not None:
                chunk_callback(total, total)
        else:
            tokens = self._transcribe_chunks(audio, dtype, config, chunk, overlap, chunk_callback)
        self._clamp_to_audio(tokens, total / rate)
        return sentences_to_result(tokens_to_sentences(tokens, config.sentence))

    def _encode(self, audio: mx.array, dtype: mx.Dtype) -> mx.array:
        mel = get_logmel(audio.astype(mx.float32), self.preprocessor_config)
        features, _ = self.encoder(mel.astype(dtype))
        mx.eval(features)
        return features

    def _transcribe_chunks(
        self,
        audio: mx.array,
        dtype: mx.Dtype,
        config: DecodingConfig,
        chunk: int,
        overlap: int,
        chunk_callback: ChunkCallback | None,
    ) -> list[AlignedToken]:
        """Greedy decoding hands over at the middle of each overlap: the next chunk decodes
        from where the previous one stopped, with its decoder state, so the token stream is
        continuous. Beam search decodes every chunk whole and merges tokens in the overlaps."""
        rate = self.preprocessor_config.sample_rate
        grid = self.preprocessor_config.hop_length * self.encoder_config.subsampling_factor
        total = len(audio)
        handover = not isinstance(config.decoding, Beam)
        tokens: list[AlignedToken] = []
        carry: Hypothesis | None = None
        next_frame = 0  # in the whole recording's encoder frames
        start = 0
        while True:
            end = min(start + chunk, total)
            last = end == total
            features = self._encode(audio[start:end], dtype)
            first_frame = start // grid
            if handover:
                stop = None if last else (end - overlap // 2) // grid - first_frame
                carry = self.continue_decoding(features[0], next_frame - first_frame, stop, carry)
                next_frame = first_frame + carry.next_frame
                tokens += self.to_tokens(carry, start / rate)
            else:
                piece = self.to_tokens(self.decode(features, None, config)[0], start / rate)
                seam = (start / rate, (start + overlap) / rate)
                tokens = merge_chunks(tokens, piece, *seam) if tokens else piece
            if chunk_callback is not None:
                chunk_callback(end, total)
            if last:
                return tokens
            start = end - overlap  # the last chunk still holds a whole overlap of audio

    @property
    def stream_context(self) -> tuple[int, int]:
        """The default (left, right) context of streaming: the local attention context the
        model's config declares, when it declares one (a model trained with that much look-
        ahead loses words with less), else (256, 16), 1.28 s of look-ahead at 80 ms frames."""
        config = self.encoder_config
        declared = config.att_context_size or []
        if config.self_attention_model == "rel_pos_local_attn" and len(declared) == 2:
            left, right = (int(c) for c in declared)
            if left > 0 and right >= 0:
                return (left, right)
        return DEFAULT_STREAM_CONTEXT

    def transcribe_stream(
        self,
        context_size: tuple[int, int] | None = None,
        depth: int = 1,
        *,
        keep_original_attention: bool = False,
        decoding_config: DecodingConfig | None = None,
        feature_stats: tuple[np.ndarray, np.ndarray] | None = None,
        bf16_weights: bool = False,
        compiled: bool | None = None,
    ) -> StreamingParakeet:
        """A stream to feed audio blocks to (use it as a context manager): local attention
        with `context_size` (left, right) encoder frames (default: `stream_context`), the
        first `depth` layers exact as offline. `feature_stats` (mean, std per feature) fixes
        the normalization; otherwise it follows everything heard so far. `bf16_weights` runs
        the encoder's layers in numpy with bfloat16 copies of the projection weights
        (asr.cpu_streaming; CPUs with bfloat16 instructions): faster, not bit-exact.
        `compiled` runs the MLX layers as compiled graphs with fixed-shape caches
        (asr.compiled_streaming; None: on a GPU, where it pays off)."""
        return StreamingParakeet(
            self,
            context_size or self.stream_context,
            depth,
            keep_original_attention=keep_original_attention,
            decoding_config=decoding_config,
            feature_stats=feature_stats,
            bf16_weights=bf16_weights,
            compiled=compiled,
        )

    def continue_decoding(
        self,
        features: mx.array,
        start_frame: int,
        stop_frame: int | None,
        carry: Hypothesis | None,
    ) -> Hypothesis:
        """Greedy decoding of frames [start_frame, stop_frame) of one item's (T, d) encoder
        output, continuing the decoder of `carry` (a previous call's result). The returned
        hypothesis holds only the new tokens, and where it stopped."""
        raise NotImplementedError  # each model family defines it

    @staticmethod
    def _clamp_to_audio(tokens: list[AlignedToken], seconds: float) -> None:
        """A last token's duration can reach past the end of the recording."""
        for token in reversed(tokens):
            if token.end <= seconds:
                break
            token.duration = max(0.0, seconds - token.start)
            token.end = token.start + token.duration


class ParakeetTransducer(BaseParakeet):
    """TDT (`durations` set) and RNNT models."""

    def __init__(self, args: TransducerArgs, durations: list[int] | None):
        super().__init__(args.preprocessor, args.encoder, args.joint.vocabulary)
        self.durations = durations
        self.max_symbols = args.decoding.max_symbols
        self.label_looping = args.decoding.label_looping
        self.decoder = PredictionNetwork(args.decoder)
        self.joint = JointNetwork(args.joint)
        # set through object: nn.Module would file a tuple among its parameters
        object.__setattr__(self, "_stepper", None)
        object.__setattr__(self, "_device_search", None)

    @property
    def stepper(self) -> TransducerStepper:
        """numpy copy of the decoder, rebuilt whenever the weights were replaced."""
        params = nn.utils.tree_flatten([self.decoder.parameters(), self.joint.parameters()])
        key = tuple(id(v) for _, v in params)
        if self._stepper is None or self._stepper[0] != key:
            stepper = TransducerStepper(self.decoder, self.joint, len(self.vocabulary))
            object.__setattr__(self, "_stepper", (key, stepper))
        return self._stepper[1]

    def decode(
        self,
        features: mx.array,
        lengths: mx.array | None = None,
        config: DecodingConfig | None = None,
    ) -> list[Hypothesis]:
        strategy = config.decoding if config is not None else None
        stepper = self.stepper
        results = []
        for b, length in enumerate(self._lengths(features, lengths)):
            if isinstance(strategy, Beam):
                hyp = beam_transducer(
                    stepper,
                    stepper.project_encoder(features[b, :length]),
                    durations=self.durations,
                    max_symbols=self.max_symbols,
                    beam=strategy,
                    label_looping=self.label_looping,
                )
            else:
                hyp = self.greedy(features[b, :length])
            results.append(hyp)
        return results

    def continue_decoding(self, features, start_frame, stop_frame, carry):
        return self.greedy(
            features,
            state=carry.state if carry else None,
            last_token=carry.last_token if carry else None,
            start_frame=start_frame,
            stop_frame=stop_frame,
        )

    def greedy(self, features: mx.array, *, on_device: bool = True, **options) -> Hypothesis:
        """Greedy search over one item's (T, d) encoder frames (options: greedy_transducer's
        state, last_token, start_frame, stop_frame). On an NVIDIA GPU the search runs as one
        kernel (decoding.cuda_greedy), elsewhere (or with `on_device` False) on the host."""
        stepper = self.stepper
        rules = dict(
            durations=self.durations,
            max_symbols=self.max_symbols,
            label_looping=self.label_looping,
        )
        search = self.device_search() if on_device else None
        if search is not None:
            enc = stepper.project_encoder_mx(features)
            hyp = search.decode(enc, **rules, **options)
            if hyp is not None:
                return hyp
            return greedy_transducer(stepper, np.array(enc), **rules, **options)
        return greedy_transducer(stepper, stepper.project_encoder(features), **rules, **options)

    def device_search(self) -> cuda_greedy.CudaGreedy | None:
        """The greedy search as a CUDA kernel, where the CUDA backend computes (else None)."""
        if not cuda_greedy.is_available():
            return None
        stepper = self.stepper
        cached = self._device_search
        if cached is None or cached[0] is not stepper:
            search = cuda_greedy.CudaGreedy(stepper)
            cached = (stepper, search if search.supported else None)
            object.__setattr__(self, "_device_search", cached)
        return cached[1]


class ParakeetTDT(ParakeetTransducer):
    def __init__(self, args: TransducerArgs):
        durations = args.decoding.durations
        if not durations:
            raise ValueError("a TDT model needs its durations (decoding.durations)")
        super().__init__(args, list(durations))


class ParakeetRNNT(ParakeetTransducer):
    def __init__(self, args: TransducerArgs):
        super().__init__(args, None)


class ParakeetTDTCTC(ParakeetTDT):
    """Hybrid TDT-CTC: decodes with TDT; the auxiliary CTC head is loaded as `ctc_decoder`."""

    def __init__(self, args: TransducerArgs):
        super().__init__(args)
        if args.aux_ctc is None:
            raise ValueError("a hybrid TDT-CTC model needs an aux_ctc section")
        self.ctc_decoder = ConvASRDecoder(args.aux_ctc.decoder)


class ParakeetCTC(BaseParakeet):
    stateless_decoder = True  # streaming: no decoder state to carry, only the last frame

    def __init__(self, args: CTCArgs):
        super().__init__(args.preprocessor, args.encoder, args.decoder.vocabulary)
        self.decoder = ConvASRDecoder(args.decoder)

    def decode(
        self,
        features: mx.array,
        lengths: mx.array | None = None,
        config: DecodingConfig | None = None,
    ) -> list[Hypothesis]:
        strategy = config.decoding if config is not None else None
        log_probs = np.array(self.decoder(features.astype(mx.float32)))
        return [
            beam_ctc(log_probs[b, :n], self.blank, strategy)
            if isinstance(strategy, Beam)
            else greedy_ctc(log_probs[b, :n], self.blank)
            for b, n in enumerate(self._lengths(features, lengths))
        ]

    def continue_decoding(self, features, start_frame, stop_frame, carry):
        log_probs = np.array(self.decoder(features[None].astype(mx.float32))[0])
        return greedy_ctc(log_probs, self.blank, start_frame, stop_frame)
