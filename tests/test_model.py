"""Model behaviour beyond the NeMo references: batches, long inputs, attention switching,
chunked transcription and loading errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from difflib import SequenceMatcher

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from conftest import CLIPS, NEMO

import asr
from asr import subsampling
from asr.audio import get_logmel, load_audio


def clip_mel(model, clip: str) -> mx.array:
    audio = load_audio(NEMO / "audio" / f"{clip}.wav", model.preprocessor_config.sample_rate)
    return get_logmel(audio, model.preprocessor_config)[0]


@pytest.mark.parametrize("family", ["tdt", "ctc"])
def test_padded_batch_gives_each_item_its_own_result(nemo_models, family):
    model = nemo_models[family]
    mels = [clip_mel(model, clip) for clip in CLIPS]
    longest = max(m.shape[0] for m in mels)
    batch = mx.stack([mx.pad(m, [(0, longest - m.shape[0]), (0, 0)]) for m in mels])
    lengths = mx.array([m.shape[0] for m in mels])
    batched = model.generate(batch, lengths=lengths)
    for mel, result in zip(mels, batched, strict=True):
        alone = model.generate(mel)[0]
        assert [t.id for t in result.tokens] == [t.id for t in alone.tokens]
        assert [t.start for t in result.tokens] == pytest.approx([t.start for t in alone.tokens])


def test_subsampling_in_slices_equals_one_pass(nemo_models, monkeypatch):
    model = nemo_models["tdt"]
    mel = mx.concatenate([clip_mel(model, clip) for clip in CLIPS])[None]
    whole, whole_len = model.encoder.pre_encode(mel, mx.array([mel.shape[1]]))
    monkeypatch.setattr(subsampling, "SLICE_FRAMES", 64)
    sliced, sliced_len = model.encoder.pre_encode(mel, mx.array([mel.shape[1]]))
    assert sliced.shape == whole.shape and int(sliced_len[0]) == int(whole_len[0])
    assert float(mx.abs(sliced - whole).max()) < 1e-5


def test_attention_switches_both_ways_without_reloading(nemo_models):
    model = nemo_models["tdt"]
    mel = clip_mel(model, "speech0")[None]
    full, _ = model.encoder(mel)
    weights_before = model.encoder.layers[0].self_attn.linear_q.weight
    # a band wider than the clip is full attention
    model.encoder.set_attention_model("rel_pos_local_attn", (200, 200))
    wide, _ = model.encoder(mel)
    model.encoder.set_attention_model("rel_pos_local_attn", (4, 4))
    narrow, _ = model.encoder(mel)
    model.encoder.set_attention_model("rel_pos")
    back, _ = model.encoder(mel)
    assert model.encoder.layers[0].self_attn.linear_q.weight is weights_before
    assert float(mx.abs(wide - full).max()) < 1e-4
    assert float(mx.abs(narrow - full).max()) > 1e-3
    assert float(mx.abs(back - full).max()) == 0.0


@pytest.mark.parametrize("context", [(0, 4), (-1, 4), (4, -1)])
def test_invalid_local_context_is_a_clear_error(nemo_models, context):
    with pytest.raises(ValueError, match="context"):
        nemo_models["tdt"].encoder.set_attention_model("rel_pos_local_attn", context)


def long_recording(tmp_path, repeats: int = 4):
    pieces = [sf.read(NEMO / "audio" / f"{clip}.wav", dtype="float32")[0] for clip in CLIPS]
    audio = np.concatenate(pieces * repeats)
    path = tmp_path / "long.wav"
    sf.write(path, audio, 16000)
    return path, len(audio) / 16000


@pytest.mark.parametrize("family", ["tdt-local", "ctc"])
def test_chunked_greedy_transcription_equals_one_pass(family, tmp_path):
    """With local attention and per-frame features (no whole-file normalization), a chunk's
    frames away from its edges are the recording's own, so handing the decoder over in the
    middle of each overlap must reproduce the one-pass transcript exactly."""
    model = asr.from_pretrained(str(NEMO / family / "mlx"))
    model.encoder.set_attention_model("rel_pos_local_attn", (16, 16))
    model.preprocessor_config = dataclasses.replace(model.preprocessor_config, normalize=None)
    path, seconds = long_recording(tmp_path)
    whole = model.transcribe(path)
    progress = []
    chunked = model.transcribe(
        path,
        chunk_duration=20.0,
        overlap_duration=8.0,
        chunk_callback=lambda *a: progress.append(a),
    )
    assert [t.id for t in chunked.tokens] == [t.id for t in whole.tokens]
    assert [t.start for t in chunked.tokens] == pytest.approx([t.start for t in whole.tokens])
    assert len(progress) >= 4 and progress[-1][0] == progress[-1][1]
    assert chunked.tokens[-1].end <= seconds


def test_chunked_transcription_with_normalized_features(nemo_models, tmp_path):
    model = nemo_models["tdt-local"]
    path, seconds = long_recording(tmp_path)
    whole = model.transcribe(path)
    chunked = model.transcribe(path, chunk_duration=12.0, overlap_duration=4.0)
    starts = [t.start for t in chunked.tokens]
    assert starts == sorted(starts) and starts[-1] > seconds - 3.0
    # each chunk normalizes its features by its own statistics: a few tokens may differ
    ratio = SequenceMatcher(a=[t.id for t in whole.tokens], b=[t.id for t in chunked.tokens])
    assert ratio.ratio() > 0.7


def test_too_short_audio_is_a_clear_error(nemo_models):
    with pytest.raises(ValueError, match="too short"):
        nemo_models["tdt"].transcribe_audio(mx.zeros((100,)))


def copy_model(tmp_path, name="tdt"):
    folder = tmp_path / name
    shutil.copytree(NEMO / name / "mlx", folder)
    return folder


def test_loading_errors_are_one_line(tmp_path, monkeypatch):
    folder = copy_model(tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(asr.ModelError, match="no config.json"):
        asr.from_pretrained(str(folder))

    folder = copy_model(tmp_path, "rnnt")
    config = json.loads((folder / "config.json").read_text())
    config["target"] = "nemo.collections.asr.models.SpeakerLabelModel"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(asr.ModelError, match="unsupported model class"):
        asr.from_pretrained(str(folder))

    folder = copy_model(tmp_path, "ctc")
    (folder / "model.safetensors").write_bytes(np.random.bytes(5000))
    with pytest.raises(asr.ModelError, match="corrupted"):
        asr.from_pretrained(str(folder))

    folder = copy_model(tmp_path, "tdt-local")
    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["d_model"] = 96
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(asr.ModelError, match="does not fit|shape"):
        asr.from_pretrained(str(folder))

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(asr.ModelError, match="not in the Hugging Face cache") as info:
        asr.from_pretrained("mlx-community/parakeet-tdt-0.6b-v3")
    assert "\n" not in str(info.value) and "huggingface-cli download" in str(info.value)


def test_input_too_long_for_full_attention_falls_back_to_local(nemo_models, monkeypatch):
    from asr import conformer

    model = nemo_models["tdt"]
    mel = clip_mel(model, "speech0")[None]
    model.encoder.set_attention_model("rel_pos_local_attn", conformer.LONG_INPUT_CONTEXT)
    local, _ = model.encoder(mel)
    model.encoder.set_attention_model("rel_pos")
    monkeypatch.setattr(conformer, "memory_bytes", lambda: 1000)
    with pytest.warns(UserWarning, match="too many for full attention"):
        fallback, _ = model.encoder(mel)
    assert float(mx.abs(fallback - local).max()) == 0.0
    assert model.encoder.attention_context is None  # the setting itself is kept
