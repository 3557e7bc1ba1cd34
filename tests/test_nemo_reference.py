"""The engine against NVIDIA NeMo's own outputs (tests/fixtures/nemo, made by NeMo 3.0)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import CLIPS, NEMO, NEMO_MODELS, nemo_reference

from asr.decoding.greedy import greedy_ctc


def nemo_ctc_collapse(frame_labels: list[int], blank: int) -> list[int]:
    out, previous = [], blank
    for label in frame_labels:
        if label != blank and label != previous:
            out.append(label)
        previous = label
    return out


@pytest.mark.parametrize("family", NEMO_MODELS)
@pytest.mark.parametrize("clip", CLIPS)
def test_encoder_matches_nemo_given_its_mel(nemo_models, family, clip):
    model = nemo_models[family]
    mel = np.load(NEMO / family / "reference" / f"{clip}.mel.npy")
    expected = np.load(NEMO / family / "reference" / f"{clip}.enc.npy")
    out, lengths = model.encoder(mx.array(mel)[None])
    assert int(lengths[0]) == len(expected)
    assert np.abs(np.array(out[0]) - expected).max() < 1e-3


@pytest.mark.parametrize("family", NEMO_MODELS)
@pytest.mark.parametrize("clip", CLIPS)
def test_greedy_tokens_match_nemo_given_its_encoder_output(nemo_models, family, clip):
    model = nemo_models[family]
    enc = mx.array(np.load(NEMO / family / "reference" / f"{clip}.enc.npy"))[None]
    reference = nemo_reference(family)[clip]
    hyp = model.decode(enc)[0]
    if family == "ctc":
        # NeMo's reference holds the per-frame argmax; its greedy rule collapses it
        assert hyp.tokens == nemo_ctc_collapse(reference["tokens"], model.blank)
    else:
        assert hyp.tokens == reference["tokens"]
        assert hyp.frames == reference["frames"]


@pytest.mark.parametrize("family", NEMO_MODELS)
@pytest.mark.parametrize("clip", CLIPS)
def test_end_to_end_from_wav_matches_nemo(nemo_models, family, clip):
    from asr.audio import get_logmel, load_audio

    model = nemo_models[family]
    reference = nemo_reference(family)[clip]
    audio = load_audio(NEMO / "audio" / f"{clip}.wav", model.preprocessor_config.sample_rate)
    mel = get_logmel(audio, model.preprocessor_config)
    assert mel.shape[1] == reference["mel_frames"]
    features, lengths = model.encoder(mel)
    assert int(lengths[0]) == reference["enc_frames"]
    hyp = model.decode(features, lengths)[0]
    if family == "ctc":
        assert hyp.tokens == nemo_ctc_collapse(reference["tokens"], model.blank)
    else:
        assert hyp.tokens == reference["tokens"]
        assert hyp.frames == reference["frames"]
    result = model.transcribe(NEMO / "audio" / f"{clip}.wav")
    assert [t.id for t in result.tokens] == hyp.tokens


def test_ctc_keeps_a_token_repeated_across_a_blank():
    blank = 3
    labels = [0, 0, blank, 0, 1, 1, blank, blank, 2, 2, 2]
    log_probs = np.full((len(labels), 4), -10.0, np.float32)
    log_probs[np.arange(len(labels)), labels] = 0.0
    hyp = greedy_ctc(log_probs, blank)
    assert hyp.tokens == [0, 0, 1, 2]
    assert hyp.frames == [0, 3, 4, 8]
    assert hyp.durations == [2, 1, 2, 3]
