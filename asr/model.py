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
from .decoding.config import DecodingConfig
from .decoding.greedy import Hypothesis, greedy_ctc, greedy_transducer
from .decoding.stepper import TransducerStepper
from .results import AlignedResult, AlignedToken
from .transducer import JointNetwork, PredictionNetwork

ChunkCallback = Callable[[int, int], None]


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
        chunk = int(chunk_duration * rate) if chunk_duration else 0
        overlap = int(overlap_duration * rate) if chunk else 0
        if chunk and overlap >= chunk:
            raise ValueError(
                f"overlap_duration ({overlap_duration} s) must be shorter than "
                f"chunk_duration ({chunk_duration} s)"
            )
        if not chunk or total <= chunk:
            tokens = self._transcribe_span(audio, dtype, 0.0, config)
            if chunk_callback is not None:
                chunk_callback(total, total)
        else:
            tokens = []
            start = 0
            while True:
                end = min(start + chunk, total)
                if end - start < min_samples:  # a sliver already inside the last overlap
                    break
                piece = self._transcribe_span(audio[start:end], dtype, start / rate, config)
                tokens = (
                    merge_chunks(tokens, piece, start / rate, (start + overlap) / rate)
                    if (start)
                    else piece
                )
                if chunk_callback is not None:
                    chunk_callback(end, total)
                if end == total:
                    break
                start = end - overlap
            tokens = sorted(tokens, key=lambda t: t.start)
        return sentences_to_result(tokens_to_sentences(tokens, config.sentence))

    def _transcribe_span(
        self, audio: mx.array, dtype: mx.Dtype, offset: float, config: DecodingConfig
    ) -> list[AlignedToken]:
        mel = get_logmel(audio.astype(mx.float32), self.preprocessor_config)
        features, lengths = self.encoder(mel.astype(dtype))
        mx.eval(features, lengths)
        return self.to_tokens(self.decode(features, lengths, config)[0], offset)


class ParakeetTransducer(BaseParakeet):
    """TDT (`durations` set) and RNNT models."""

    def __init__(self, args: TransducerArgs, durations: list[int] | None):
        super().__init__(args.preprocessor, args.encoder, args.joint.vocabulary)
        self.durations = durations
        self.max_symbols = args.decoding.max_symbols
        self.decoder = PredictionNetwork(args.decoder)
        self.joint = JointNetwork(args.joint)
        # set through object: nn.Module would file a tuple among its parameters
        object.__setattr__(self, "_stepper", None)

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
        stepper = self.stepper
        results = []
        for b, length in enumerate(self._lengths(features, lengths)):
            enc = stepper.project_encoder(features[b, :length])
            results.append(
                greedy_transducer(
                    stepper, enc, durations=self.durations, max_symbols=self.max_symbols
                )
            )
        return results


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
    def __init__(self, args: CTCArgs):
        super().__init__(args.preprocessor, args.encoder, args.decoder.vocabulary)
        self.decoder = ConvASRDecoder(args.decoder)

    def decode(
        self,
        features: mx.array,
        lengths: mx.array | None = None,
        config: DecodingConfig | None = None,
    ) -> list[Hypothesis]:
        log_probs = np.array(self.decoder(features.astype(mx.float32)))
        return [
            greedy_ctc(log_probs[b, :n], self.blank)
            for b, n in enumerate(self._lengths(features, lengths))
        ]
