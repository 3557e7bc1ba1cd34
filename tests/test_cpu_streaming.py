"""The numpy streaming layers (asr.cpu_streaming) compute what the MLX layers compute."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import FIXTURES, NEMO

import asr
from asr import bf16_matmul
from asr.cache import LayerCache
from asr.cpu_streaming import NumpyStreamingEncoder, numpy_streaming_encoder

needs_bf16 = pytest.mark.skipif(
    not bf16_matmul.available(),
    reason="needs MKL and a CPU with bfloat16 instructions (AMX or AVX512-BF16)",
)


def windows(encoder, context, numpy_encoder, seed=0):
    """The same sequence of streaming windows through both layer stacks: (numpy, mlx)
    outputs per window."""
    radius = (encoder.layers[0].conv.kernel_size - 1) // 2
    mlx_caches = [LayerCache(context[0], radius) for _ in encoder.layers]
    numpy_caches = numpy_encoder.new_caches(context)
    rng = np.random.default_rng(seed)
    d = encoder.args.d_model
    for _ in range(6):
        t = int(rng.integers(3, 40))
        settle = max(0, t - int(rng.integers(0, 12)))
        x = rng.standard_normal((t, d)).astype(np.float32)
        y = mx.array(x)[None]
        for layer, cache in zip(encoder.layers, mlx_caches, strict=True):
            y = layer.stream(y, cache, settle)
        yield numpy_encoder(x, numpy_caches, settle), np.array(y[0])


@pytest.mark.parametrize(
    "folder, context",
    [
        (NEMO / "tdt-local" / "mlx", (16, 16)),
        (FIXTURES / "nemo_unseen" / "rnnt-local-asym" / "mlx", (24, 8)),
    ],
)
def test_float32_numpy_layers_equal_the_mlx_layers(folder, context):
    model = asr.from_pretrained(str(folder), dtype=mx.float32)
    model.encoder.set_attention_model("rel_pos_local_attn", context)
    layers = NumpyStreamingEncoder(model.encoder, bf16=False)
    for ours, theirs in windows(model.encoder, context, layers):
        assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


@needs_bf16
def test_bfloat16_numpy_layers_stay_close_to_the_mlx_layers():
    model = asr.from_pretrained(str(FIXTURES / "nemo_unseen" / "rnnt-local-asym" / "mlx"))
    model.encoder.set_attention_model("rel_pos_local_attn", (24, 8))
    layers = NumpyStreamingEncoder(model.encoder, bf16=True)
    errors = [
        np.abs(ours - theirs).max() / np.abs(theirs).max()
        for ours, theirs in windows(model.encoder, (24, 8), layers, seed=3)
    ]
    assert 0 < max(errors) < 1e-2  # bfloat16's rounding shows, and stays small


@needs_bf16
def test_the_layers_are_made_once_and_again_for_new_weights():
    model = asr.from_pretrained(str(NEMO / "tdt-local" / "mlx"))
    encoder = model.encoder
    first = numpy_streaming_encoder(encoder)
    assert numpy_streaming_encoder(encoder) is first
    float32_bytes = sum(
        4 * (m.weight.size + m.bias.size)
        for block in encoder.layers
        for m in (block.feed_forward1.linear1, block.feed_forward1.linear2)
        + (block.feed_forward2.linear1, block.feed_forward2.linear2)
        + (block.self_attn.linear_q, block.self_attn.linear_k, block.self_attn.linear_v)
        + (block.self_attn.linear_out, block.conv.pointwise_conv1, block.conv.pointwise_conv2)
    )
    assert first.nbytes < 0.6 * float32_bytes  # half, and the biases stay float32
    layer = encoder.layers[1].feed_forward2.linear2
    layer.weight = layer.weight * 2
    assert numpy_streaming_encoder(encoder) is not first
