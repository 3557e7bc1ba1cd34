"""Greedy TDT/RNNT search as one CUDA kernel (asr.decoding.cuda_greedy): the same tokens,
frames, durations and stopping points as the host loop (asr.decoding.greedy) under each of
NeMo's rules, and the host loop wherever the kernel cannot run."""

from __future__ import annotations

import copy

import mlx.core as mx
import numpy as np
import pytest
from tiny_models import nemo_config

import asr
from asr.decoding import cuda_greedy
from asr.decoding.greedy import greedy_transducer

needs_cuda = pytest.mark.skipif(
    not cuda_greedy.is_available(), reason="needs an NVIDIA GPU (MLX CUDA backend)"
)


def decoder_model(
    family: str = "tdt",
    *,
    vocab: int = 64,
    hidden: int = 64,
    layers: int = 1,
    joint: int = 64,
    activation: str = "relu",
    seed: int = 0,
):
    """A random transducer whose prediction and joint networks have the given sizes (the
    encoder is tiny: the tests feed encoder frames directly). The joint's weights are
    scaled up so that its decisions change from frame to frame and token to token."""
    config = copy.deepcopy(nemo_config("rnnt" if family == "rnnt" else "tdt"))
    config["encoder"].update(n_layers=1)
    config["decoder"]["vocab_size"] = vocab
    config["decoder"]["prednet"].update(pred_hidden=hidden, pred_rnn_layers=layers)
    config["joint"]["num_classes"] = vocab
    config["joint"]["vocabulary"] = [f"t{i}" for i in range(vocab)]
    config["joint"]["jointnet"].update(
        joint_hidden=joint, pred_hidden=hidden, activation=activation
    )
    mx.random.seed(seed)
    model = asr.from_config(config)
    model.joint.enc.weight = model.joint.enc.weight * 3.0
    model.joint.pred.weight = model.joint.pred.weight * 3.0
    out = model.joint.joint_net[-1]
    out.weight = out.weight * 8.0
    return model


def bias_outputs(model, *, blank: float = 0.0, durations: list[float] | None = None) -> None:
    """Shifts the joint's blank (and duration) logits."""
    out = model.joint.joint_net[-1]
    bias = np.array(out.bias)
    bias[len(model.vocabulary)] += blank
    if durations is not None:
        bias[len(model.vocabulary) + 1 :] += np.array(durations, np.float32)
    out.bias = mx.array(bias)


def calibrate(model, features: mx.array, tokens_per_frame: float) -> None:
    """Moves the blank logit until the host search emits about this many tokens a frame."""
    low, high, shift = -40.0, 40.0, 0.0
    for _ in range(10):
        middle = (low + high) / 2
        bias_outputs(model, blank=middle - shift)
        shift = middle
        hyp = model.greedy(features, on_device=False)
        rate = len(hyp.tokens) / features.shape[0]
        if abs(rate - tokens_per_frame) < 0.1 * tokens_per_frame:
            return
        low, high = (middle, high) if rate > tokens_per_frame else (low, middle)


def frames(model, count: int, seed: int = 1, scale: float = 1.0) -> mx.array:
    d = model.encoder_config.d_model
    rng = np.random.default_rng(seed)
    return mx.array((scale * rng.standard_normal((count, d))).astype(np.float32))


def assert_same_search(device, host) -> None:
    assert device is not None
    assert device.tokens == host.tokens
    assert device.frames == host.frames
    assert device.durations == host.durations
    assert device.steps == host.steps
    assert device.next_frame == host.next_frame
    assert device.last_token == host.last_token
    np.testing.assert_allclose(device.confidences, host.confidences, atol=1e-4)
    assert device.score == pytest.approx(host.score, rel=1e-5, abs=1e-3)
    np.testing.assert_allclose(device.state.h, host.state.h, atol=1e-5)
    np.testing.assert_allclose(device.state.c, host.state.c, atol=1e-5)


def search(model, features, on_device: bool, **options):
    """The kernel's search itself (model.greedy would quietly fall back to the host)."""
    if not on_device:
        return model.greedy(features, on_device=False, **options)
    kernel = model.device_search()
    assert kernel is not None
    return kernel.decode(
        model.stepper.project_encoder_mx(features),
        durations=model.durations,
        max_symbols=model.max_symbols,
        label_looping=model.label_looping,
        **options,
    )


def both(model, features, **options):
    return search(model, features, True, **options), search(model, features, False, **options)


# -- everywhere ------------------------------------------------------------------------------


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("PARAKEET_CUDA_GREEDY", "0")
    assert not cuda_greedy.is_available()


def test_host_search_where_the_kernel_cannot_run(monkeypatch):
    """Without the CUDA backend (or switched off), `greedy` is the host loop itself."""
    monkeypatch.setenv("PARAKEET_CUDA_GREEDY", "0")
    model = decoder_model()
    features = frames(model, 40)
    stepper = model.stepper
    expected = greedy_transducer(
        stepper,
        stepper.project_encoder(features),
        durations=model.durations,
        max_symbols=model.max_symbols,
        label_looping=model.label_looping,
    )
    got = model.greedy(features)
    assert (got.tokens, got.frames, got.next_frame) == (
        expected.tokens,
        expected.frames,
        expected.next_frame,
    )


# -- on the GPU ------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("family", ["tdt", "rnnt"])
@pytest.mark.parametrize("rate", [0.1, 0.5, 2.0])
def test_same_search_as_the_host(family, rate):
    """Blank-heavy (the look-ahead runs over several frames) to token-heavy."""
    model = decoder_model(family)
    features = frames(model, 300)
    calibrate(model, features, rate)
    device, host = both(model, features)
    assert len(host.tokens) > 10
    assert_same_search(device, host)


@needs_cuda
@pytest.mark.parametrize("max_symbols", [1, 2, 3, 10])
@pytest.mark.parametrize("label_looping", [False, True])
@pytest.mark.parametrize("family", ["tdt", "rnnt"])
def test_same_rules_for_tokens_that_stay(family, max_symbols, label_looping):
    """Duration 0 made likely (TDT), or several tokens a frame (RNNT): the max_symbols
    limit, the label-looping variant and duration-0 blanks all come into play."""
    model = decoder_model(family, seed=3)
    model.max_symbols = max_symbols
    model.label_looping = label_looping
    features = frames(model, 120, seed=5)
    if family == "tdt":
        bias_outputs(model, blank=1.0, durations=[3.0, 0.0, 0.0, 0.0, 0.0])
    else:
        calibrate(model, features, min(max_symbols, 2) * 0.6)
    device, host = both(model, features)
    if max_symbols > 1:
        assert len(host.tokens) > len(set(host.frames))  # several tokens on some frames
    assert_same_search(device, host)


@needs_cuda
def test_continuing_across_chunks():
    """The streaming pattern: start and stop frames, carrying the decoder between calls."""
    model = decoder_model(seed=4)
    bias_outputs(model, blank=1.0)
    features = frames(model, 200, seed=7)
    carried = {}
    for on_device in (True, False):
        carry, pieces, position = None, [], 0
        for stop in (37, 38, 90, 160, None):
            hyp = search(
                model,
                features,
                on_device,
                state=carry.state if carry else None,
                last_token=carry.last_token if carry else None,
                start_frame=position,
                stop_frame=stop,
            )
            pieces.append(hyp)
            carry, position = hyp, hyp.next_frame
        carried[on_device] = pieces
    for device, host in zip(carried[True], carried[False], strict=True):
        assert_same_search(device, host)


@needs_cuda
@pytest.mark.parametrize(
    "sizes",
    [
        dict(vocab=1024, hidden=640, layers=2, joint=640),  # parakeet-tdt-0.6b's decoder
        dict(vocab=3000, hidden=96, layers=3, joint=160, activation="tanh"),
        dict(vocab=40, hidden=48, layers=2, joint=2000, activation="sigmoid"),
    ],
)
def test_same_search_at_other_sizes(sizes):
    model = decoder_model(**sizes, seed=2)
    features = frames(model, 250, seed=9)
    calibrate(model, features, 0.4)
    device, host = both(model, features)
    assert len(host.tokens) > 10
    assert_same_search(device, host)


@needs_cuda
def test_nemo_fixtures_decode_their_reference_on_the_gpu():
    """NeMo's own greedy tokens, through the kernel (float32 weights, offline)."""
    from conftest import CLIPS, NEMO, nemo_reference

    for family in ("tdt", "rnnt"):
        model = asr.from_pretrained(str(NEMO / family / "mlx"), dtype=mx.float32)
        reference = nemo_reference(family)
        for clip in CLIPS:
            result = model.transcribe(NEMO / "audio" / f"{clip}.wav")
            assert [t.id for t in result.tokens] == reference[clip]["tokens"], (family, clip)
