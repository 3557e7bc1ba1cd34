"""The CUDA streaming kernels (asr.kernels.cuda_skinny_gemm, cuda_window_attention,
cuda_conv_module) and the layers built of them (asr.cuda_streaming), against float32 math
and against MLX's own layers. They need an NVIDIA GPU: run on the lent GPU (see
bench/gpu_run.sh), skipped elsewhere."""

from __future__ import annotations

import difflib

import mlx.core as mx
import numpy as np
import pytest
from conftest import NEMO
from test_compiled_streaming import MODELS
from test_streaming import CONTEXT, recording, stream

import asr
from asr.cache import LayerCache
from asr.compiled_streaming import CompiledStreamingEncoder
from asr.kernels import cuda_common

pytestmark = pytest.mark.skipif(
    not cuda_common.is_available(),
    reason="needs an NVIDIA GPU with MLX's CUDA backend; this machine has none",
)

RNG = np.random.default_rng(0)


def _as(array: np.ndarray, dtype) -> mx.array:
    return mx.array(array.astype(np.float32)).astype(dtype)


def _f32(array: mx.array) -> np.ndarray:
    return np.array(array.astype(mx.float32))


def _rounded(array: np.ndarray, dtype) -> np.ndarray:
    return _f32(_as(array, dtype))


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16])
@pytest.mark.parametrize(
    "m, k, n", [(1, 64, 64), (27, 1024, 4096), (40, 4096, 1024), (100, 256, 192), (33, 96, 48)]
)
@pytest.mark.parametrize("epilogue", ["bias", "silu", "residual", "half residual"])
def test_skinny_linear_is_the_float32_product(dtype, m, k, n, epilogue):
    from asr.kernels.cuda_skinny_gemm import skinny_linear

    x = _rounded(RNG.standard_normal((m, k)), dtype)
    w = _rounded(RNG.standard_normal((n, k)) / np.sqrt(k), dtype)
    b = _rounded(RNG.standard_normal(n), dtype)
    r = _rounded(RNG.standard_normal((m, n)), dtype)
    expected = x @ w.T + b
    kwargs = {}
    if epilogue == "silu":
        expected = expected / (1 + np.exp(-expected))
        kwargs["silu"] = True
    elif epilogue.endswith("residual"):
        scale = 0.5 if epilogue == "half residual" else 1.0
        expected = r + scale * expected
        kwargs.update(residual=_as(r, dtype), residual_scale=scale)
    ours = skinny_linear(_as(x, dtype), _as(w, dtype), _as(b, dtype), **kwargs)
    assert ours.shape == (m, n) and ours.dtype == dtype
    # one rounding of the result to 16 bits: 2^-8 of its size for bfloat16
    tolerance = (2**-7 if dtype == mx.bfloat16 else 2**-10) * (np.abs(expected) + 1)
    assert (np.abs(_f32(ours) - expected) <= tolerance).all()


def _window_reference(qkv, kv, bias_u, bias_v, positions, key_bias, frames, scale):
    """Float32 attention of a window over [cache, window] (numpy)."""
    nq = qkv.shape[0]
    _, heads, cached, d = kv.shape
    width = positions.shape[1]
    q, k_new, v_new = (qkv.reshape(nq, 3, heads, d)[:, i].transpose(1, 0, 2) for i in range(3))
    keys = np.concatenate([kv[0], k_new], axis=1)  # (H, P + NQ, D)
    values = np.concatenate([kv[1], v_new], axis=1)
    out = np.zeros((nq, heads, d), np.float32)
    for i in range(frames):
        for h in range(heads):
            columns = np.arange(width)
            j = i + columns
            ok = (j < cached + nq) & (key_bias[np.minimum(j, cached + nq - 1)] == 0)
            j, c = j[ok], columns[ok]
            s = (
                keys[h, j] @ (q[h, i] + bias_u[h]) + positions[h, c] @ (q[h, i] + bias_v[h])
            ) * scale
            p = np.exp(s - s.max())
            out[i, h] = (p / p.sum()) @ values[h, j]
    return out.reshape(nq, heads * d), keys, values


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16])
@pytest.mark.parametrize(
    "heads, d, left, right, frames, padded, filled, settle",
    [(8, 128, 256, 16, 26, 32, 256, 6), (4, 16, 16, 16, 5, 8, 3, 5), (2, 64, 24, 0, 40, 64, 24, 0)],
)
def test_window_attention_is_the_float32_band(
    dtype, heads, d, left, right, frames, padded, filled, settle
):
    from asr.kernels.cuda_window_attention import window_attention

    width = left + right + 1
    qkv = _rounded(RNG.standard_normal((padded, 3 * heads * d)), dtype)
    kv = _rounded(RNG.standard_normal((2, heads, left, d)), dtype)
    bias_u = _rounded(RNG.standard_normal((heads, d)) * 0.3, dtype)
    bias_v = _rounded(RNG.standard_normal((heads, d)) * 0.3, dtype)
    positions = _rounded(RNG.standard_normal((heads, width, d)) * 0.3, dtype)
    key_bias = np.zeros(left + padded, np.float32)
    key_bias[: left - filled] = -np.inf
    key_bias[left + frames :] = -np.inf
    scale = d**-0.5
    out, new_kv = window_attention(
        *(_as(a, dtype) for a in (qkv, kv, bias_u, bias_v, positions)),
        mx.array(key_bias),
        mx.array([frames, settle], mx.int32),
        mx.array([scale], mx.float32),
    )
    expected, keys, values = _window_reference(
        qkv, kv, bias_u, bias_v, positions, key_bias, frames, scale
    )
    ours = _f32(out)
    assert np.isfinite(ours).all()  # padded queries too
    tolerance = 2**-6 if dtype == mx.bfloat16 else 2**-9
    assert np.abs(ours[:frames] - expected[:frames]).max() <= tolerance
    assert np.array_equal(_f32(new_kv)[0], keys[:, settle : settle + left])
    assert np.array_equal(_f32(new_kv)[1], values[:, settle : settle + left])


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16])
@pytest.mark.parametrize(
    "channels, kernel, padded, frames, settle", [(1024, 9, 32, 26, 6), (64, 31, 40, 3, 3)]
)
def test_conv_module_middle_is_the_float32_module(dtype, channels, kernel, padded, frames, settle):
    from asr.kernels.cuda_conv_module import conv_module_middle, fold_batch_norm

    radius = (kernel - 1) // 2
    h = _rounded(RNG.standard_normal((padded, 2 * channels)), dtype)
    cache = _rounded(RNG.standard_normal((radius, channels)), dtype)
    weight = RNG.standard_normal((kernel, channels)).astype(np.float32) * 0.3
    bias, mean, shift = (RNG.standard_normal(channels).astype(np.float32) for _ in range(3))
    var, scale = (RNG.uniform(0.5, 2, channels).astype(np.float32) for _ in range(2))
    folded = fold_batch_norm(*(mx.array(a) for a in (weight, bias, mean, var, scale, shift)), 1e-5)
    y, new_conv = conv_module_middle(
        _as(h, dtype), _as(cache, dtype), *folded, mx.array([frames, settle], mx.int32)
    )
    gated = h[:, :channels] / (1 + np.exp(-h[:, channels:]))
    gated[frames:] = 0
    inputs = np.concatenate([cache, _rounded(gated, dtype), np.zeros((radius, channels))])
    convolved = sum(inputs[i : i + padded] * weight[i] for i in range(kernel)) + bias
    normalized = (convolved - mean) / np.sqrt(var + 1e-5) * scale + shift
    expected = normalized / (1 + np.exp(-normalized))
    tolerance = (2**-7 if dtype == mx.bfloat16 else 2**-10) * (np.abs(expected) + 1)
    assert (np.abs(_f32(y) - expected) <= tolerance).all()
    assert np.array_equal(_f32(new_conv), inputs[settle : settle + radius].astype(np.float32))


def _layer_outputs(encoder, make, context, windows):
    """Every window's output through the streaming layers `make(encoder)` builds."""
    layers = make(encoder)
    caches = layers.new_caches(context)
    for x, settle in windows:
        yield _f32(layers(x.astype(layers.dtype), caches, settle, context)[0])


def _plain_outputs(encoder, context, windows):
    radius = (encoder.layers[0].conv.kernel_size - 1) // 2
    caches = [LayerCache(context[0], radius) for _ in encoder.layers]
    for x, settle in windows:
        for layer, cache in zip(encoder.layers, caches, strict=True):
            x = layer.stream(x, cache, settle)
        yield _f32(x[0])


@pytest.mark.parametrize("folder, context", MODELS)
def test_kernel_layers_are_as_close_to_float32_as_mlx_layers(folder, context):
    """In bfloat16, the kernel layers' distance from the float32 layers is no more than
    MLX's own compiled layers' (each rounds differently; neither may drift more)."""
    from asr.cuda_streaming import CudaStreamingEncoder

    models = {}
    for dtype in (mx.float32, mx.bfloat16):
        models[dtype] = asr.from_pretrained(str(folder), dtype=dtype)
        models[dtype].encoder.set_attention_model("rel_pos_local_attn", context)
    d = models[mx.float32].encoder.args.d_model
    rng = np.random.default_rng(1)
    windows = []
    for _ in range(10):
        t = int(rng.integers(1, 40))
        x = mx.array(rng.standard_normal((1, t, d)).astype(np.float32))
        windows.append((x, max(0, t - int(rng.integers(0, 12)))))
    reference = list(_plain_outputs(models[mx.float32].encoder, context, windows))
    bf16 = models[mx.bfloat16].encoder
    ours = list(_layer_outputs(bf16, CudaStreamingEncoder, context, windows))
    theirs = list(_layer_outputs(bf16, CompiledStreamingEncoder, context, windows))
    ours_error = max(np.abs(o - r).max() for o, r in zip(ours, reference, strict=True))
    their_error = max(np.abs(o - r).max() for o, r in zip(theirs, reference, strict=True))
    assert ours_error <= 1.25 * their_error + 1e-3


def test_streams_pick_the_kernels_for_16_bit_weights_only():
    from asr.cuda_streaming import CudaStreamingEncoder

    folder = NEMO / "rnnt" / "mlx"
    for dtype, expected in (
        (mx.bfloat16, CudaStreamingEncoder),
        (mx.float32, CompiledStreamingEncoder),
    ):
        model = asr.from_pretrained(str(folder), dtype=dtype)
        with model.transcribe_stream(CONTEXT) as s:
            assert type(s._compiled_encoder) is expected


@pytest.mark.parametrize("block", [8000, 16000 * 3])
def test_kernel_streams_agree_with_float32_as_well_as_mlx_layers(block, monkeypatch):
    """Token agreement with the float32 stream: the kernel layers' bfloat16 stream no
    worse than MLX's compiled bfloat16 layers' (near ties flip in bfloat16 either way)."""
    audio = recording()
    folder = str(NEMO / "rnnt" / "mlx")

    def tokens(dtype):
        s = stream(asr.from_pretrained(folder, dtype=dtype), audio, block)
        return [t.id for t in s.finalized_tokens]

    reference = tokens(mx.float32)
    ours = tokens(mx.bfloat16)
    monkeypatch.setenv("PARAKEET_NO_CUDA_STREAMING", "1")
    theirs = tokens(mx.bfloat16)

    def agreement(ids):
        return difflib.SequenceMatcher(a=reference, b=ids, autojunk=False).ratio()

    assert len(reference) > 20
    assert agreement(ours) >= agreement(theirs) - 0.02
