"""The demo model of our own (tui/demo, made by train/): does the engine turn speech into the
right words? Held-out speech is made here with espeak-ng, in voices, speeds, pitches and
sentences that training never used (train/speech_data.py keeps the two apart)."""

from __future__ import annotations

import json
import shutil

import jiwer
import mlx.core as mx
import numpy as np
import pytest

import asr
from train.speech_data import (
    HELD_OUT_PITCHES,
    HELD_OUT_SPEEDS,
    HELD_OUT_VARIANTS,
    TRAINING_PITCHES,
    TRAINING_SPEEDS,
    TRAINING_VARIANTS,
    held_out_clips,
    random_voice,
)
from train.vocabulary import VOCABULARY, encode
from tui.demo import DEMO_MODEL, DEMO_RECORDING, demo_text

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng makes the held-out speech (apt-get install espeak-ng)",
)

TEST_SEEDS = range(3_000_000_000, 3_000_000_040)  # training's seeds start at 0
OFFLINE_WER_LIMIT = 0.10
DEMO_CONTEXT = (64, 64)


def normalized(text: str) -> str:
    kept = "".join(c for c in text.lower() if c.isalpha() or c in " '")
    return " ".join(kept.split())


@pytest.fixture(scope="module")
def model():
    model = asr.from_pretrained(str(DEMO_MODEL))
    yield model
    model.encoder.set_attention_model("rel_pos_local_attn", DEMO_CONTEXT)


@pytest.fixture(scope="module")
def held_out() -> list[tuple[str, np.ndarray]]:
    return [(normalized(text), audio) for text, audio in held_out_clips(TEST_SEEDS)]


def offline_wer(model, clips) -> float:
    hypotheses = [normalized(model.transcribe_audio(mx.array(audio)).text) for _, audio in clips]
    return jiwer.wer([text for text, _ in clips], hypotheses)


def streaming_wer(model, clips, block_seconds: float = 0.5) -> float:
    block = int(block_seconds * model.preprocessor_config.sample_rate)
    hypotheses = []
    for _, audio in clips:
        with model.transcribe_stream() as stream:
            for start in range(0, len(audio), block):
                stream.add_audio(audio[start : start + block])
            stream.finish_audio()
            hypotheses.append(normalized(stream.result.text))
    return jiwer.wer([text for text, _ in clips], hypotheses)


def test_the_held_out_voices_speeds_and_pitches_were_never_trained_on():
    assert not set(HELD_OUT_VARIANTS) & set(TRAINING_VARIANTS)
    assert not set(HELD_OUT_SPEEDS) & set(TRAINING_SPEEDS)
    assert not set(HELD_OUT_PITCHES) & set(TRAINING_PITCHES)
    rng = np.random.default_rng(0)
    voices = [random_voice(rng, held_out=True) for _ in range(50)]
    assert all(v.variant in HELD_OUT_VARIANTS and v.speed in HELD_OUT_SPEEDS for v in voices)


def test_the_shipped_model_is_small_and_in_the_mlx_community_layout():
    files = {p.name: p.stat().st_size for p in DEMO_MODEL.iterdir()}
    assert set(files) == {"config.json", "model.safetensors"}
    assert sum(files.values()) <= 10_000_000
    config = json.loads((DEMO_MODEL / "config.json").read_text())
    assert config["joint"]["vocabulary"] == VOCABULARY
    assert config["decoding"]["model_type"] == "tdt"


def test_offline_word_error_rate_on_held_out_speech(model, held_out):
    model.encoder.set_attention_model("rel_pos_local_attn", DEMO_CONTEXT)
    assert offline_wer(model, held_out) <= OFFLINE_WER_LIMIT


def test_local_attention_is_within_a_tenth_of_full_attention(model, held_out):
    model.encoder.set_attention_model("rel_pos_local_attn", DEMO_CONTEXT)
    local = offline_wer(model, held_out)
    model.encoder.set_attention_model("rel_pos")
    full = offline_wer(model, held_out)
    model.encoder.set_attention_model("rel_pos_local_attn", DEMO_CONTEXT)
    assert local <= 1.1 * full + 1e-9, (local, full)


@pytest.mark.slow
def test_streaming_at_default_settings_is_within_a_fifth_of_offline(model, held_out):
    model.encoder.set_attention_model("rel_pos_local_attn", DEMO_CONTEXT)
    offline = offline_wer(model, held_out)
    streaming = streaming_wer(model, held_out)
    assert streaming <= 1.2 * offline, (streaming, offline)


def test_the_bundled_recording_is_heard_word_for_word(model):
    model.encoder.set_attention_model("rel_pos_local_attn", DEMO_CONTEXT)
    result = model.transcribe(str(DEMO_RECORDING))
    assert jiwer.wer(normalized(demo_text()), normalized(result.text)) <= 0.05
    assert result.text.startswith("Welcome to the demo")
    assert result.sentences[0].start < 1.0 < result.sentences[-1].end


def test_vocabulary_round_trips_through_the_engines_tokenizer():
    from asr.tokenizer import decode

    text = "Welcome back, isn't it? A new day."
    assert decode(encode(text), VOCABULARY).strip() == text
