"""asr.audio's log-mel against NeMo's own output and against a float64 oracle of its recipe."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import librosa
import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

from asr.audio import (
    AudioError,
    _filterbank,
    feature_statistics,
    frame_count,
    get_logmel,
    load_audio,
    log_mel_spectrogram,
    normalize_features,
)
from asr.config import PreprocessArgs, from_dict

NEMO = Path(__file__).parent / "fixtures" / "nemo"
MODELS = ("tdt", "tdt-local", "rnnt", "ctc")
CLIPS = ("speech0", "speech1", "speech2")


def nemo_args(model: str) -> PreprocessArgs:
    config = json.loads((NEMO / model / "mlx" / "config.json").read_text())
    return from_dict(PreprocessArgs, config["preprocessor"])


def oracle(audio: np.ndarray, args: PreprocessArgs, normalize: bool = True) -> np.ndarray:
    """NeMo's FilterbankFeatures in eval mode, step by step in float64, written the direct
    way (full centred frames, every STFT frame then the last dropped) to be independent of
    the implementation's shortcuts."""
    x = audio.astype(np.float64)
    n_fft = args.n_fft or 2 ** int(np.ceil(np.log2(args.win_length)))
    win, hop = args.win_length, args.hop_length
    if args.preemph is not None:
        x = np.concatenate([x[:1], x[1:] - args.preemph * x[:-1]])
    x = np.pad(x, n_fft // 2)  # torch.stft(center=True, pad_mode="constant")
    make = {"hann": np.hanning, "hamming": np.hamming, "blackman": np.blackman}
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = make[args.window](win)  # torch: periodic=False, centred
    stft_frames = 1 + (len(x) - n_fft) // hop
    frames = np.stack([x[t * hop : t * hop + n_fft] for t in range(stft_frames)])
    spectrum = np.fft.rfft(frames * window, axis=1)
    magnitude = np.sqrt(spectrum.real**2 + spectrum.imag**2) ** args.mag_power
    bank = librosa.filters.mel(
        sr=args.sample_rate,
        n_fft=n_fft,
        n_mels=args.features,
        fmin=args.lowfreq,
        fmax=args.highfreq or args.sample_rate / 2,
        norm=args.mel_norm,
        dtype=np.float64,
    )
    mel = magnitude @ bank.T
    if args.log:
        guard = args.log_zero_guard_value
        if args.log_zero_guard_type == "add":
            mel = np.log(mel + guard)
        else:
            mel = np.log(np.maximum(mel, guard))
    valid = (len(audio) + 2 * (n_fft // 2) - n_fft) // hop  # NeMo's get_seq_len
    mel = mel[:valid]
    if normalize and args.normalize == "per_feature":
        mel = (mel - mel.mean(0)) / (mel.std(0, ddof=1) + 1e-5)
    elif normalize and args.normalize == "all_features":
        mel = (mel - mel.mean()) / (mel.std(ddof=1) + 1e-5)
    return mel


def speech(clip: str) -> np.ndarray:
    audio, rate = sf.read(NEMO / "audio" / f"{clip}.wav", dtype="float32")
    assert rate == 16000
    return audio


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("clip", CLIPS)
def test_get_logmel_matches_nemo(model, clip):
    args = nemo_args(model)
    reference = np.load(NEMO / model / "reference" / f"{clip}.mel.npy")
    audio = load_audio(NEMO / "audio" / f"{clip}.wav", args.sample_rate)
    mel = get_logmel(audio, args)
    assert mel.shape == (1, *reference.shape)
    assert mel.dtype == mx.float32
    assert np.abs(np.array(mel[0]) - reference).max() < 1e-3


@pytest.mark.parametrize("clip", CLIPS)
def test_oracle_matches_nemo(clip):
    """The float64 oracle is itself within a few 1e-5 of NeMo, so it can judge the settings
    the fixtures do not cover."""
    args = nemo_args("tdt")
    reference = np.load(NEMO / "tdt" / "reference" / f"{clip}.mel.npy")
    assert np.abs(oracle(speech(clip), args) - reference).max() < 1e-4


VARIANTS = {
    "parakeet": PreprocessArgs(),
    "8khz": PreprocessArgs(sample_rate=8000, n_fft=256, features=64),
    "window_equals_n_fft": PreprocessArgs(window_size=0.032, window_stride=0.02),
    "odd_n_fft": PreprocessArgs(n_fft=401, window="hamming"),
    "n_fft_from_window": PreprocessArgs(n_fft=0, features=128),
    "magnitude_all_features": PreprocessArgs(
        mag_power=1.0, normalize="all_features", preemph=None, window="blackman"
    ),
    "band_clamp_no_norm": PreprocessArgs(
        lowfreq=60.0, highfreq=7000.0, mel_norm=None, log_zero_guard_type="clamp", normalize=None
    ),
    "magnitude_power_1_5": PreprocessArgs(mag_power=1.5, log_zero_guard_value=1e-5),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_settings_match_the_oracle(name):
    args = VARIANTS[name]
    audio = speech("speech1")
    if args.sample_rate != 16000:
        audio = librosa.resample(audio, orig_sr=16000, target_sr=args.sample_rate)
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    mel = np.array(get_logmel(mx.array(audio), args)[0])
    expected = oracle(audio, args)
    assert mel.shape == expected.shape
    scale = 1.0 if args.normalize else max(1.0, float(np.abs(expected).max()))
    assert np.abs(mel - expected).max() < 2e-4 * scale


def test_unnormalized_log_mel_and_statistics_compose_to_get_logmel():
    args = nemo_args("tdt")
    audio = mx.array(speech("speech0"))
    mel = log_mel_spectrogram(audio, args)
    assert mel.shape == (len(speech("speech0")) // args.hop_length, args.features)
    assert mel.dtype == mx.float32
    assert np.abs(np.array(mel) - oracle(np.array(audio), args, normalize=False)).max() < 1e-4
    mean, std = feature_statistics(mel)
    assert mean.shape == std.shape == (args.features,)
    composed = normalize_features(mel, mean, std)
    assert np.abs(np.array(composed) - np.array(get_logmel(audio, args)[0])).max() < 1e-6
    mean, std = feature_statistics(mel, "all_features")
    assert mean.shape == std.shape == ()
    assert np.isclose(float(std), np.array(mel).std(ddof=1), rtol=1e-5)


def test_long_audio_crosses_block_boundaries():
    rng = np.random.default_rng(0)
    clip = speech("speech2")
    audio = np.concatenate([clip, 0.01 * rng.standard_normal(600_000), clip]).astype(np.float32)
    args = PreprocessArgs()
    mel = np.array(get_logmel(mx.array(audio), args)[0])
    assert mel.shape[0] == len(audio) // args.hop_length > 4096
    assert np.abs(mel - oracle(audio, args)).max() < 2e-4


def test_too_short_for_one_frame():
    args = PreprocessArgs()
    with pytest.raises(AudioError, match="too short"):
        get_logmel(mx.zeros(args.hop_length - 1), args)
    with pytest.raises(AudioError, match="too short"):
        log_mel_spectrogram(mx.zeros(0), args)
    assert frame_count(args.hop_length - 1, args) == 0


@pytest.mark.parametrize("normalize", ["per_feature", "all_features", None])
def test_single_frame_is_finite(normalize):
    args = dataclasses.replace(PreprocessArgs(), normalize=normalize)
    audio = mx.array(np.random.default_rng(1).standard_normal(args.hop_length), mx.float32)
    mel = get_logmel(audio, args)
    assert mel.shape == (1, 1, args.features)
    assert np.isfinite(np.array(mel)).all()
    if normalize == "per_feature":  # one frame is its own mean
        assert np.array(mel).max() == 0.0


def test_digital_silence_is_finite():
    mel = np.array(get_logmel(mx.zeros(16000), PreprocessArgs()))
    assert np.isfinite(mel).all() and np.abs(mel).max() == 0.0


def test_output_dtype_follows_the_audio():
    audio = mx.array(speech("speech0")).astype(mx.bfloat16)
    mel = get_logmel(audio, PreprocessArgs())
    assert mel.dtype == mx.bfloat16
    # computed in float32, rounded once at the end
    expected = np.array(get_logmel(audio.astype(mx.float32), PreprocessArgs()))
    error = np.abs(np.array(mel.astype(mx.float32)) - expected)
    assert (error <= np.abs(expected) * 2**-8 + 1e-6).all()


def test_rejects_batched_audio_and_unknown_settings():
    with pytest.raises(ValueError, match="1-D"):
        get_logmel(mx.zeros((1, 16000)), PreprocessArgs())
    with pytest.raises(ValueError, match="window"):
        get_logmel(mx.zeros(16000), PreprocessArgs(window="kaiser"))
    with pytest.raises(ValueError, match="normalize"):
        get_logmel(mx.zeros(16000), PreprocessArgs(normalize="per_utterance"))


def test_filterbank_is_cached():
    args = PreprocessArgs(features=72)
    get_logmel(mx.zeros(4000), args)
    hits = _filterbank.cache_info().hits
    get_logmel(mx.zeros(4000), PreprocessArgs(features=72))
    assert _filterbank.cache_info().hits == hits + 1


@pytest.mark.slow
def test_an_hour_is_fast_and_memory_is_linear():
    """One hour at 16 kHz in a fresh process: time and peak RSS of get_logmel alone."""
    script = textwrap.dedent(
        """
        import resource, time
        import numpy as np
        import mlx.core as mx
        from asr.audio import get_logmel
        from asr.config import PreprocessArgs
        rng = np.random.default_rng(0)
        audio = mx.array(rng.standard_normal(57_600_000, dtype=np.float32) * 0.1)
        mx.eval(audio)
        get_logmel(audio[:16000], PreprocessArgs())  # warm the caches
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        mel = get_logmel(audio, PreprocessArgs())
        mx.eval(mel)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(mel.shape[1], seconds, (peak - before) / 2**20)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    frames, seconds, extra_gib = int(out[0]), float(out[1]), float(out[2])
    assert frames == 360_000
    assert seconds < 10.0
    assert extra_gib < 2.0  # the audio itself is 0.21 GiB, the mel 0.11 GiB
