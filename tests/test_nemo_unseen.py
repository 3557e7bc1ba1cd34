"""The engine against NVIDIA NeMo on models and speech it was not developed against
(tests/fixtures/nemo_unseen, made by NeMo 3.0 with tools/nemo_reference; see its README).

Each model differs from tests/fixtures/nemo in its preprocessor, encoder and decoder
settings; each clip in voice, rate, length and (for one) sample rate and channels.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import asr
from asr.audio import get_logmel, load_audio

UNSEEN = Path(__file__).parent / "fixtures" / "nemo_unseen"
MODELS = ("tdt-128", "rnnt-local-asym", "ctc-allfeat")
# clip name -> the file the engine reads. NeMo read the 16 kHz mono WAVs as they are, and
# the 44.1 kHz stereo FLAC after its own loader mixed it down and resampled it.
CLIPS = {
    "harbor": "harbor.wav",
    "budget": "budget.wav",
    "museum": "museum.wav",
    "library_44k_stereo": "library_44k_stereo.flac",
}
TOLERANCE = 1e-3


def cases(stage: str) -> list:
    """(name, clip) parameters for every model and clip."""
    return [pytest.param(name, clip, id=f"{name}-{clip}") for name in MODELS for clip in CLIPS]


@cache
def reference(name: str) -> dict:
    return json.loads((UNSEEN / name / "reference" / "reference.json").read_text())


@cache
def arrays(name: str, clip: str) -> tuple[np.ndarray, np.ndarray]:
    """NeMo's (frames, features) log-mel and (frames, d_model) encoder output."""
    with np.load(UNSEEN / name / "reference" / f"{clip}.npz") as data:
        return data["mel"], data["enc"]


@pytest.fixture(scope="module")
def models():
    return {
        name: asr.from_pretrained(str(UNSEEN / name / "mlx"), dtype=mx.float32) for name in MODELS
    }


def nemo_ctc_collapse(frame_labels: list[int], blank: int) -> list[int]:
    """NeMo's greedy CTC rule: drop blanks and repeats of the previous frame's label."""
    out, previous = [], blank
    for label in frame_labels:
        if label != blank and label != previous:
            out.append(label)
        previous = label
    return out


def expected_tokens(model, name: str, clip: str) -> tuple[list[int], list[int] | None]:
    """NeMo's greedy tokens, and for transducers the encoder frame of each."""
    ref = reference(name)[clip]
    if isinstance(model, asr.ParakeetCTC):
        return nemo_ctc_collapse(ref["tokens"], model.blank), None
    return ref["tokens"], ref["frames"]


def test_the_fixtures_are_what_they_claim(models):
    """Guards against a rebuilt fixture that would test less than it says."""
    assert isinstance(models["tdt-128"], asr.ParakeetTDT)
    assert isinstance(models["rnnt-local-asym"], asr.ParakeetRNNT)
    assert isinstance(models["ctc-allfeat"], asr.ParakeetCTC)
    assert models["tdt-128"].durations == [0, 1, 2, 4, 8]
    assert models["rnnt-local-asym"].encoder.attention_context == (24, 8)
    for name in MODELS:
        assert set(reference(name)) == set(CLIPS)
        for clip in CLIPS:
            tokens, _ = expected_tokens(models[name], name, clip)
            assert len(set(tokens)) > 3, (name, clip)  # decoding follows the audio


@pytest.mark.parametrize("name, clip", cases("mel"))
def test_mel_matches_nemo(models, name, clip):
    model = models[name]
    expected, _ = arrays(name, clip)
    audio = load_audio(UNSEEN / "audio" / CLIPS[clip], model.preprocessor_config.sample_rate)
    assert len(audio) == reference(name)[clip]["samples_16k"]
    mel = np.array(get_logmel(audio, model.preprocessor_config)[0])
    assert mel.shape == expected.shape == (reference(name)[clip]["mel_frames"], expected.shape[1])
    assert np.abs(mel - expected).max() < TOLERANCE


@pytest.mark.parametrize("name, clip", cases("encoder"))
def test_encoder_matches_nemo_given_its_mel(models, name, clip):
    mel, expected = arrays(name, clip)
    out, lengths = models[name].encoder(mx.array(mel)[None])
    assert int(lengths[0]) == len(expected) == reference(name)[clip]["enc_frames"]
    assert np.abs(np.array(out[0]) - expected).max() < TOLERANCE


@pytest.mark.parametrize("name, clip", cases("decode"))
def test_greedy_tokens_match_nemo_given_its_encoder_output(models, name, clip):
    model = models[name]
    _, enc = arrays(name, clip)
    hyp = model.decode(mx.array(enc)[None])[0]
    tokens, frames = expected_tokens(model, name, clip)
    assert hyp.tokens == tokens
    if frames is not None:
        assert hyp.frames == frames


@pytest.mark.parametrize("name, clip", cases("end_to_end"))
def test_end_to_end_from_audio_matches_nemo(models, name, clip):
    model = models[name]
    path = UNSEEN / "audio" / CLIPS[clip]
    tokens, frames = expected_tokens(model, name, clip)

    audio = load_audio(path, model.preprocessor_config.sample_rate)
    features, lengths = model.encoder(get_logmel(audio, model.preprocessor_config))
    assert int(lengths[0]) == reference(name)[clip]["enc_frames"]
    hyp = model.decode(features, lengths)[0]
    assert hyp.tokens == tokens
    if frames is not None:
        assert hyp.frames == frames

    result = model.transcribe(path)
    assert [t.id for t in result.tokens] == tokens
    if frames is not None:
        starts = [round(t.start, 6) for t in result.tokens]
        assert starts == [round(f * model.time_ratio, 6) for f in frames]


@pytest.mark.parametrize("name", MODELS)
def test_parakeet_mlx_loads_the_conversion_strictly(models, name):
    """The converted checkpoints are in the mlx-community layout: parakeet-mlx 0.6.0
    builds the same module tree from config.json and takes every weight."""
    pytest.importorskip("parakeet_mlx")
    from parakeet_mlx.utils import from_config

    folder = UNSEEN / name / "mlx"
    reference_model = from_config(json.loads((folder / "config.json").read_text()))
    reference_model.load_weights(
        list(mx.load(str(folder / "model.safetensors")).items()), strict=True
    )
    ours = {k for k, _ in tree_flatten(models[name].parameters())}
    assert ours == {k for k, _ in tree_flatten(reference_model.parameters())}
