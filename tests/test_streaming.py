"""Streaming transcription: exactness against offline, blocks of any size, final text that
never changes, and bad blocks."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from conftest import CLIPS, NEMO
from demo_model import (
    MAX_WER,
    demo_audio,
    demo_seconds,
    demo_text,
    load_demo_model,
    normalized_words,
    word_alignment,
    word_error_rate,
)

import asr
from asr.audio import feature_statistics, log_mel_spectrogram
from asr.streaming_features import StreamingFeatures

CONTEXT = (16, 16)


def recording(repeats: int = 1) -> np.ndarray:
    pieces = [sf.read(NEMO / "audio" / f"{clip}.wav", dtype="float32")[0] for clip in CLIPS]
    return np.concatenate(pieces * repeats)


def offline_statistics(model, audio: np.ndarray):
    mean, std = feature_statistics(log_mel_spectrogram(mx.array(audio), model.preprocessor_config))
    return np.array(mean), np.array(std)


def stream(model, audio, block, **kwargs):
    with model.transcribe_stream(CONTEXT, **kwargs) as s:
        for i in range(0, len(audio), block):
            s.add_audio(audio[i : i + block])
    return s


@pytest.mark.parametrize("blocks", [[160], [37, 800, 5], [16000 * 10]])
def test_streaming_features_equal_offline(blocks):
    args = asr.config.PreprocessArgs(features=80)
    audio = recording()
    expected = np.array(log_mel_spectrogram(mx.array(audio), args))
    features = StreamingFeatures(args)
    frames, i, k = [], 0, 0
    while i < len(audio):
        n = blocks[k % len(blocks)]
        features.push(audio[i : i + n])
        frames.append(features.frames())
        i, k = i + n, k + 1
    frames.append(features.frames(final=True))
    assert np.abs(np.concatenate(frames) - expected).max() < 1e-5


@pytest.mark.parametrize("family", ["tdt-local", "rnnt", "ctc"])
@pytest.mark.parametrize("block", [1600, 777])
@pytest.mark.parametrize("compiled", [False, True], ids=["layers", "compiled"])
def test_full_depth_with_offline_statistics_equals_offline(nemo_models, family, block, compiled):
    """The exactness mode: depth covering every layer, the recording's own normalization
    statistics: the stream's final tokens are offline local attention's, times included,
    with the layers as they are and compiled (asr.compiled_streaming)."""
    model = nemo_models[family]
    audio = recording(repeats=2)
    saved = model.encoder.attention_context
    model.encoder.set_attention_model("rel_pos_local_attn", CONTEXT)
    try:
        offline = model.transcribe_audio(mx.array(audio))
        s = stream(
            model,
            audio,
            block,
            depth=len(model.encoder.layers),
            feature_stats=offline_statistics(model, audio),
            compiled=compiled,
        )
    finally:
        if saved is None:
            model.encoder.set_attention_model("rel_pos")
        else:
            model.encoder.set_attention_model("rel_pos_local_attn", saved)
    assert [t.id for t in s.finalized_tokens] == [t.id for t in offline.tokens]
    assert [t.start for t in s.finalized_tokens] == pytest.approx(
        [t.start for t in offline.tokens], abs=1e-6
    )
    assert s.draft_tokens == []
    assert (s._compiled_encoder is not None) == compiled


def test_tdt_local_fixture_streams_exactly_at_its_own_context(nemo_models):
    """NeMo's local-attention fixture, at the context it was built with, against NeMo's
    own greedy tokens for each clip."""
    from conftest import nemo_reference

    model = nemo_models["tdt-local"]
    reference = nemo_reference("tdt-local")
    for clip in CLIPS:
        audio = sf.read(NEMO / "audio" / f"{clip}.wav", dtype="float32")[0]
        with model.transcribe_stream(
            CONTEXT, depth=2, feature_stats=offline_statistics(model, audio)
        ) as s:
            for i in range(0, len(audio), 1600):
                s.add_audio(audio[i : i + 1600])
        assert [t.id for t in s.finalized_tokens] == reference[clip]["tokens"]
    assert model.encoder.attention_context == CONTEXT  # the model's own setting is back


def test_final_tokens_never_change_and_drafts_follow(nemo_models):
    model = nemo_models["tdt"]
    audio = recording()
    seen_final: list = []
    draft_counts = []
    with model.transcribe_stream(CONTEXT) as s:
        for i in range(0, len(audio), 4000):
            update = s.add_audio(audio[i : i + 4000])
            assert s.finalized_tokens[: len(seen_final)] == seen_final
            assert update.finalized == s.finalized_tokens[len(seen_final) :]
            seen_final = list(s.finalized_tokens)
            draft_counts.append(len(s.draft_tokens))
            times = [t.start for t in s.finalized_tokens + s.draft_tokens]
            assert times == sorted(times)
            if s.finalized_tokens and s.draft_tokens:
                assert s.draft_tokens[0].start >= s.finalized_tokens[-1].start
    assert any(draft_counts)
    assert s.draft_tokens == [] and s.closed
    assert s.finalized_tokens[-1].end <= len(audio) / 16000 + model.time_ratio * 4
    assert model.encoder.attention_context is None  # full attention restored


@pytest.mark.parametrize("family", ["ctc", "tdt"])
def test_tiny_and_huge_blocks_give_the_same_text(nemo_models, family):
    """With the same statistics and full depth, how audio is cut into blocks changes
    nothing. (At lower depth, frames settled from a longer block saw more right context.)"""
    model = nemo_models[family]
    audio = recording()
    settings = dict(feature_stats=offline_statistics(model, audio), depth=2)
    small = stream(model, audio, 160, **settings)  # 10 ms
    large = stream(model, audio, 16000 * 10, **settings)  # 10 s
    assert [t.id for t in small.finalized_tokens] == [t.id for t in large.finalized_tokens]
    assert len(small.finalized_tokens) > 10


def test_bad_blocks_are_handled(nemo_models):
    model = nemo_models["rnnt"]
    audio = recording()[: 16000 * 3]
    reference = stream(model, audio, 8000)
    with model.transcribe_stream(CONTEXT) as s:
        s.add_audio(audio[:8000])
        s.add_audio(np.full(800, np.nan, np.float32))  # a glitch: silence instead
        s.add_audio((audio[8000:16000] * 32767).astype(np.int16))  # integer PCM
        s.add_audio(np.stack([audio[16000:], audio[16000:]], axis=1))  # stereo
        s.add_audio(np.zeros(0, np.float32))
        with pytest.raises(ValueError, match="samples"):
            s.add_audio(np.zeros((2, 2, 2), np.float32))
        with pytest.raises(ValueError, match="numeric"):
            s.add_audio(np.array(["a", "b"]))
    assert s.nonfinite_blocks == 1
    assert len(s.finalized_tokens) > 0
    # the glitch shifted later audio by 50 ms; everything before it is unchanged
    before = [t.id for t in reference.finalized_tokens if t.end < 0.3]
    assert [t.id for t in s.finalized_tokens][: len(before)] == before
    s.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="closed"):
        s.add_audio(audio[:100])


def test_invalid_settings(nemo_models):
    model = nemo_models["tdt"]
    with pytest.raises(ValueError, match="context_size"):
        model.transcribe_stream((0, 4))
    with pytest.raises(ValueError, match="depth"):
        model.transcribe_stream(CONTEXT, depth=0)


def test_context_change_keeps_final_text_and_time(nemo_models):
    model = nemo_models["tdt"]
    audio = recording()
    with model.transcribe_stream(CONTEXT) as s:
        s.add_audio(audio[: len(audio) // 2])
        final_before = list(s.finalized_tokens) + []
        s.set_context((8, 4), depth=2)
        assert s.finalized_tokens[: len(final_before)] == final_before
        assert model.encoder.attention_context == (8, 4)
        s.add_audio(audio[len(audio) // 2 :])
    starts = [t.start for t in s.finalized_tokens]
    assert starts == sorted(starts)
    assert starts[-1] > len(audio) / 16000 / 2


def test_all_features_normalization_streams_exactly(tmp_path):
    """A model normalizing over all features (one mean and deviation) streams with those."""
    unseen = NEMO.parent / "nemo_unseen"
    model = asr.from_pretrained(str(unseen / "ctc-allfeat" / "mlx"), dtype=mx.float32)
    audio = recording()
    model.encoder.set_attention_model("rel_pos_local_attn", CONTEXT)
    offline = model.transcribe_audio(mx.array(audio))
    mel = log_mel_spectrogram(mx.array(audio), model.preprocessor_config)
    mean, std = feature_statistics(mel, "all_features")
    s = stream(model, audio, 1600, depth=3, feature_stats=(np.array(mean), np.array(std)))
    assert [t.id for t in s.finalized_tokens] == [t.id for t in offline.tokens]
    running = stream(model, audio, 1600)
    assert running._stats.mean_std("all_features")[0].shape == ()
    assert len(running.finalized_tokens) > 0


# -- the demo model: words, not only shapes ------------------------------------------------


def demo_stream(model, audio, block=8000, **kwargs):
    with model.transcribe_stream(**kwargs) as s:
        for i in range(0, len(audio), block):
            s.add_audio(audio[i : i + block])
    return s


def test_demo_recording_streams_to_its_words_with_default_settings():
    model = load_demo_model()
    own_context = model.encoder.attention_context
    s = demo_stream(model, demo_audio())
    assert s.depth == 1
    text = s.result.text
    assert word_error_rate(demo_text(), text) <= MAX_WER, text
    assert text == "".join(t.text for t in s.finalized_tokens).strip()
    assert s.draft_tokens == []
    assert s.finalized_tokens[-1].end <= demo_seconds() + 1e-6
    assert model.encoder.attention_context == own_context  # the model's own is back


@pytest.mark.parametrize(
    "switch_at, context, depth",
    [(0.5, (128, 32), None), (0.3, (32, 8), 8)],
)
def test_demo_context_change_mid_stream_keeps_the_words(switch_at, context, depth):
    """Changing the context (and depth) in the middle of the recording: the final text from
    before the change stays as it was, and the whole text is still the recording's, with no
    stretch lost or said twice at the change."""
    model = load_demo_model()
    audio = demo_audio()
    cut = int(len(audio) * switch_at)
    with model.transcribe_stream() as s:
        for i in range(0, cut, 3200):
            s.add_audio(audio[i : min(i + 3200, cut)])
        before = list(s.finalized_tokens)
        assert len(normalized_words("".join(t.text for t in before))) >= 5
        s.set_context(context, depth=depth)
        assert (s.context_size, model.encoder.attention_context) == (context, context)
        assert s.finalized_tokens[: len(before)] == before  # the change may settle drafts
        at_change = list(s.finalized_tokens)
        for i in range(cut, len(audio), 3200):
            s.add_audio(audio[i : i + 3200])
    finals = s.finalized_tokens
    assert finals[: len(at_change)] == at_change
    text = s.result.text
    assert word_error_rate(demo_text(), text) <= MAX_WER, text
    alignment = word_alignment(demo_text(), text)
    # a repeated or lost stretch shows as a run of insertions or deletions
    assert alignment.insertions + alignment.deletions <= 2, text
    starts = [t.start for t in finals]
    assert starts == sorted(starts)
    assert finals[len(at_change)].start >= at_change[-1].start  # times go on from the change
    assert finals[-1].end <= len(audio) / 16000 + 1e-6
