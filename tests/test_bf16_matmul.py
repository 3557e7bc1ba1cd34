"""bfloat16 products on CPUs that compute in bfloat16 (asr.bf16_matmul), and the engine's
choice of them."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from demo_model import MAX_WER, demo_audio, demo_text, load_demo_model, word_error_rate

from asr import bf16_matmul
from asr.engine import bf16_weights_pay_off

pytestmark = pytest.mark.skipif(
    not bf16_matmul.available(),
    reason="needs MKL and a CPU with bfloat16 instructions (AMX or AVX512-BF16)",
)


def test_rounding_to_bfloat16_is_to_nearest_even():
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.75], np.float32)
    rounded = bf16_matmul.from_bf16(bf16_matmul.to_bf16(values))
    # ties go to the even mantissa; anything past the tie goes up
    assert rounded.tolist() == [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -2.75]


def test_products_are_float32_products_of_the_rounded_operands():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((300, 200)).astype(np.float32)
    bias = rng.standard_normal(300).astype(np.float32)
    x = rng.standard_normal((2, 7, 200)).astype(np.float32)
    matrix = bf16_matmul.Bf16Matrix(weight, bias)
    out = matrix(x)
    assert out.shape == (2, 7, 300) and out.dtype == np.float32

    def rounded(a):
        return bf16_matmul.from_bf16(bf16_matmul.to_bf16(a)).astype(np.float64)

    expected = rounded(x) @ rounded(weight).T + bias
    assert np.abs(out - expected).max() < 1e-4 * np.abs(expected).max()
    exact = x.astype(np.float64) @ weight.T.astype(np.float64) + bias
    error = np.abs(out - exact).max() / np.abs(exact).max()
    assert 1e-5 < error < 1e-2  # bfloat16's rounding shows, and stays small
    assert bf16_matmul.Bf16Matrix(weight)(x[0, :0]).shape == (0, 300)
    with pytest.raises(ValueError, match="expected 200 inputs"):
        matrix(x[..., :100])


def test_streaming_with_bfloat16_weights_hears_the_same_words():
    demo_model = load_demo_model()
    audio = demo_audio()
    texts = {}
    for bf16 in (False, True):
        with demo_model.transcribe_stream(bf16_weights=bf16) as stream:
            for i in range(0, len(audio), 8000):
                stream.add_audio(audio[i : i + 8000])
        texts[bf16] = stream.result.text
    assert word_error_rate(demo_text(), texts[True]) <= MAX_WER, texts[True]
    assert word_error_rate(texts[False], texts[True]) <= 0.05


def test_the_engine_chooses_bfloat16_for_float32_models_on_this_cpu():
    demo_model = load_demo_model()
    assert demo_model.dtype == mx.float32
    assert bf16_weights_pay_off(demo_model)
