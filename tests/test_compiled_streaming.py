"""The compiled streaming layers (asr.compiled_streaming) compute what the MLX layers
compute, with fixed-shape caches and padded windows."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import FIXTURES, NEMO
from test_streaming import recording, stream

import asr
from asr.cache import LayerCache
from asr.compiled_streaming import CompiledStreamingEncoder, padded_length

MODELS = [
    (NEMO / "tdt-local" / "mlx", (16, 16)),
    (FIXTURES / "nemo_unseen" / "rnnt-local-asym" / "mlx", (24, 8)),
]


def windows(encoder, context, seed=0, count=8):
    """The same windows through the plain layers and the compiled ones, past the point
    where the caches are full and move on: (compiled, plain) outputs per window."""
    radius = (encoder.layers[0].conv.kernel_size - 1) // 2
    plain_caches = [LayerCache(context[0], radius) for _ in encoder.layers]
    compiled = CompiledStreamingEncoder(encoder)
    compiled_caches = compiled.new_caches(context)
    rng = np.random.default_rng(seed)
    d = encoder.args.d_model
    for _ in range(count):
        t = int(rng.integers(1, 40))
        settle = max(0, t - int(rng.integers(0, 12)))
        x = mx.array(rng.standard_normal((1, t, d)).astype(np.float32)).astype(compiled.dtype)
        y = x
        for layer, cache in zip(encoder.layers, plain_caches, strict=True):
            y = layer.stream(y, cache, settle)
        ours = compiled(x, compiled_caches, settle, context)
        assert ours.dtype == y.dtype == compiled.dtype
        yield np.array(ours[0].astype(mx.float32)), np.array(y[0].astype(mx.float32))


@pytest.mark.parametrize("folder, context", MODELS)
def test_compiled_layers_equal_the_plain_layers(folder, context):
    model = asr.from_pretrained(str(folder), dtype=mx.float32)
    model.encoder.set_attention_model("rel_pos_local_attn", context)
    outputs = list(windows(model.encoder, context))
    for ours, theirs in outputs:
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    # enough frames went through for the caches to fill and move on
    assert sum(len(o) for o, _ in outputs) > 2 * context[0]


@pytest.mark.parametrize("block", [8000, 16000 * 3])
def test_compiled_and_plain_streams_agree_at_default_depth(nemo_models, block):
    """Half-second blocks (windows padded by a few frames) and 3 s blocks (windows of over
    64 frames, padded to a multiple of 32)."""
    model = nemo_models["rnnt"]
    audio = recording()
    plain = stream(model, audio, block, compiled=False)
    compiled = stream(model, audio, block, compiled=True)
    assert plain._compiled_encoder is None and compiled._compiled_encoder is not None
    assert [t.id for t in compiled.finalized_tokens] == [t.id for t in plain.finalized_tokens]


def test_windows_are_padded_to_few_lengths():
    lengths = {padded_length(t) for t in range(1, 300)}
    assert all(padded_length(t) >= t for t in range(1, 300))
    assert all(padded_length(t) - t < 32 for t in range(1, 300))
    # half-second blocks give windows of about 26 frames: one shape for all of them
    assert padded_length(25) == padded_length(27) == 32
    assert len(lengths) <= 16


def test_a_context_change_gives_the_plain_layers_text(nemo_models):
    """The compiled layers after set_context use the new context's band and caches."""
    model = nemo_models["tdt"]
    audio = recording()
    texts = []
    for compiled in (False, True):
        with model.transcribe_stream((16, 16), compiled=compiled) as s:
            s.add_audio(audio[: len(audio) // 2])
            s.set_context((8, 4), depth=2)
            s.add_audio(audio[len(audio) // 2 :])
        texts.append([(t.id, t.start) for t in s.finalized_tokens])
    assert texts[1] == texts[0]
    assert len(texts[0]) > 10


def test_compiled_layers_in_bfloat16_stay_close_to_the_plain_layers():
    """A GPU's default dtype: the masks and the softmax stay float32, the rest bfloat16."""
    folder, context = MODELS[1]
    model = asr.from_pretrained(str(folder), dtype=mx.bfloat16)
    model.encoder.set_attention_model("rel_pos_local_attn", context)
    for ours, theirs in windows(model.encoder, context, count=4):
        assert np.isfinite(ours).all()
        assert np.abs(ours - theirs).max() <= 0.02 * np.abs(theirs).max()


def test_zeros_after_the_mel_end_reach_no_ready_frame(nemo_models):
    """Compiled streams pad a window's mel frames to few lengths: the subsampled frames a
    stream takes from a window (those before mel_frames // factor) must not change."""
    encoder = nemo_models["tdt"].encoder
    factor = nemo_models["tdt"].encoder_config.subsampling_factor
    mel = np.random.default_rng(0).standard_normal((300, 80)).astype(np.float32)
    for frames in range(9, 300, 13):
        ready = frames // factor
        plain = encoder.pre_encode._convolve(mx.array(mel[None, :frames]))
        target = factor * padded_length(-(-frames // factor))
        padded = np.pad(mel[:frames], ((0, target - frames), (0, 0)))
        ours = encoder.pre_encode._convolve(mx.array(padded[None]))
        assert np.array_equal(np.array(ours[:, :ready]), np.array(plain[:, :ready]))
