"""The encoder's numpy/MKL path on the CPU (asr.cpu_encoder, asr.cpu_subsampling) against
MLX's own layers, which stay the reference: same features with full and local attention, same
padded-batch behaviour, and MLX wherever the fast path's requirements are missing."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import asr  # noqa: F401  (loads MKL before MLX)
from asr import cpu_path, mkl_gemm, mkl_vector
from asr.config import ConformerArgs
from asr.conformer import Conformer

pytestmark = pytest.mark.skipif(
    not (mkl_gemm.available() and mkl_vector.available()), reason="MKL is not loaded here"
)


def random_encoder(n_layers: int = 2, seed: int = 0) -> Conformer:
    """A small conformer whose every parameter is random, batch-norm statistics and
    position biases included (their defaults would hide mistakes)."""
    args = ConformerArgs(
        feat_in=80, n_layers=n_layers, d_model=64, n_heads=4, subsampling_conv_channels=16
    )
    mx.random.seed(seed)
    encoder = Conformer(args)
    encoder.eval()
    for block in encoder.layers:
        att, bn = block.self_attn, block.conv.batch_norm
        att.pos_bias_u = mx.random.normal(att.pos_bias_u.shape)
        att.pos_bias_v = mx.random.normal(att.pos_bias_v.shape)
        bn.running_mean = mx.random.normal(bn.running_mean.shape) * 0.3
        bn.running_var = mx.random.uniform(0.5, 2.0, bn.running_var.shape)
        bn.weight = mx.random.uniform(0.5, 1.5, bn.weight.shape)
        bn.bias = mx.random.normal(bn.bias.shape) * 0.3
    mx.eval(encoder.parameters())
    return encoder


def both_paths(encoder, mel, lengths=None, monkeypatch=None):
    fast, fast_lengths = encoder(mel, lengths)
    monkeypatch.setenv("PARAKEET_NO_CPU_ENCODER", "1")
    reference, ref_lengths = encoder(mel, lengths)
    monkeypatch.delenv("PARAKEET_NO_CPU_ENCODER")
    assert fast_lengths.tolist() == ref_lengths.tolist()
    return np.array(fast), np.array(reference)


def test_the_fast_path_is_taken_for_float32_on_the_cpu():
    assert mx.default_device() == mx.cpu
    assert cpu_path.usable(mx.zeros((2,), mx.float32))
    assert not cpu_path.usable(mx.zeros((2,), mx.bfloat16))


@pytest.mark.parametrize("frames", [1, 9, 17, 160, 803])
def test_encoder_matches_the_mlx_layers(frames, monkeypatch):
    encoder = random_encoder()
    mel = mx.random.normal((1, frames, 80), key=mx.random.key(frames))
    fast, reference = both_paths(encoder, mel, monkeypatch=monkeypatch)
    assert fast.shape == reference.shape
    assert np.abs(fast - reference).max() < 2e-5 * max(1.0, np.abs(reference).max())


def test_subsampling_matches_mlx_at_every_length(monkeypatch):
    encoder = random_encoder(n_layers=0)
    for frames in (1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 333):
        mel = mx.random.normal((1, frames, 80), key=mx.random.key(frames))
        fast, reference = both_paths(encoder, mel, monkeypatch=monkeypatch)
        assert fast.shape == reference.shape, frames
        assert np.abs(fast - reference).max() < 1e-5 * np.abs(reference).max(), frames


def test_subsampling_matches_mlx_in_slices(monkeypatch):
    """MLX cuts long inputs into slices (asr.subsampling.SLICE_FRAMES); the CPU path's
    pieces must agree with that too."""
    encoder = random_encoder(n_layers=0)
    monkeypatch.setattr("asr.subsampling.SLICE_FRAMES", 64)
    mel = mx.random.normal((1, 333, 80), key=mx.random.key(3))
    fast, reference = both_paths(encoder, mel, monkeypatch=monkeypatch)
    assert np.abs(fast - reference).max() < 1e-5 * np.abs(reference).max()


def test_padded_batch_gives_each_item_exactly_its_own_result():
    encoder = random_encoder()
    sizes = [203, 77, 150]
    mels = [mx.random.normal((n, 80), key=mx.random.key(n)) for n in sizes]
    batch = mx.stack([mx.pad(m, [(0, max(sizes) - len(m)), (0, 0)]) for m in mels])
    features, lengths = encoder(batch, mx.array(sizes))
    for i, mel in enumerate(mels):
        alone, alone_lengths = encoder(mel[None])
        n = int(lengths[i])
        assert n == int(alone_lengths[0])
        assert np.array_equal(np.array(features[i, :n]), np.array(alone[0]))
        assert not np.array(features[i, n:]).any()  # padding comes out as zeros


@pytest.mark.parametrize("context", [(8, 8), (24, 8), (5, 0), (300, 300)], ids=str)
@pytest.mark.parametrize("frames", [9, 160, 2403])
def test_local_attention_matches_the_mlx_layers(context, frames, monkeypatch):
    """Bands shorter and longer than a block of queries (asr.cpu_encoder.BAND_BLOCK),
    asymmetric (NeMo's shifted position terms), causal, and wider than the input."""
    encoder = random_encoder()
    encoder.set_attention_model("rel_pos_local_attn", context)
    mel = mx.random.normal((1, frames, 80), key=mx.random.key(frames))
    fast, reference = both_paths(encoder, mel, monkeypatch=monkeypatch)
    assert fast.shape == reference.shape
    assert np.abs(fast - reference).max() < 2e-5 * max(1.0, np.abs(reference).max())


def test_local_attention_padded_batch_gives_each_item_its_own_result():
    encoder = random_encoder()
    encoder.set_attention_model("rel_pos_local_attn", (16, 4))
    sizes = [1203, 77]
    mels = [mx.random.normal((n, 80), key=mx.random.key(n)) for n in sizes]
    batch = mx.stack([mx.pad(m, [(0, max(sizes) - len(m)), (0, 0)]) for m in mels])
    features, lengths = encoder(batch, mx.array(sizes))
    for i, mel in enumerate(mels):
        alone, _ = encoder(mel[None])
        n = int(lengths[i])
        assert np.array_equal(np.array(features[i, :n]), np.array(alone[0]))
        assert not np.array(features[i, n:]).any()


def test_other_dtypes_keep_mlx(monkeypatch):
    encoder = random_encoder()
    mel = mx.random.normal((1, 120, 80), key=mx.random.key(1))
    calls = []
    monkeypatch.setattr("asr.cpu_encoder.run_layers", lambda *a: calls.append("layers") or a[1])
    encoder.set_dtype(mx.bfloat16)
    encoder(mel.astype(mx.bfloat16))
    assert calls == []
    encoder.set_dtype(mx.float32)
    encoder(mel)
    encoder.set_attention_model("rel_pos_local_attn", (8, 8))
    encoder(mel)
    assert calls == ["layers", "layers"]


@pytest.mark.parametrize("cores", [1, 3])
def test_the_result_does_not_depend_on_the_number_of_cores(cores, monkeypatch):
    encoder = random_encoder()
    mel = mx.random.normal((1, 203, 80), key=mx.random.key(5))
    two, _ = encoder(mel)
    monkeypatch.setattr("asr.core_pool.cores", lambda: cores)
    other, _ = encoder(mel)
    assert np.abs(np.array(other) - np.array(two)).max() < 1e-5
