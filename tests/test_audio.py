"""asr.audio's loading: formats, mixdown, resampling, and one-line errors naming the file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

import asr.audio
from asr.audio import AudioError, audio_duration, load_audio, read_audio

SPEECH = Path(__file__).parent / "fixtures" / "nemo" / "audio" / "speech0.wav"
HAS_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAS_FFMPEG, reason="ffmpeg/ffprobe not installed")


def sine(rate: int, seconds: float, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path | str) -> str:
    message = str(error.value)
    assert "\n" not in message and "\r" not in message
    assert str(path) in message
    return message


def test_wav_loads_as_soundfile_reads_it():
    expected, _ = sf.read(SPEECH, dtype="float32")
    audio = load_audio(SPEECH, 16000)
    assert audio.dtype == mx.float32 and audio.ndim == 1
    assert np.array_equal(np.array(audio), expected)
    assert load_audio(str(SPEECH), 16000, dtype=mx.bfloat16).dtype == mx.bfloat16


def test_stereo_48k_is_mixed_down_and_resampled(tmp_path):
    left = sine(48000, 1.5)
    right = 0.5 * left  # mean of channels: 0.75 * left
    path = tmp_path / "stereo48k.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    audio = read_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.shape == (24000,)
    expected = 0.75 * sine(16000, 1.5)
    interior = slice(200, -200)  # away from the resampler's edges
    assert np.abs(audio[interior] - expected[interior]).max() < 1e-3
    assert audio_duration(path) == pytest.approx(1.5)


def test_8k_is_upsampled(tmp_path):
    path = tmp_path / "phone.wav"
    sf.write(path, sine(8000, 2.0, hz=300.0), 8000, subtype="PCM_16")
    audio = np.array(load_audio(path, 16000))
    assert audio.shape == (32000,)
    interior = slice(200, -200)
    assert np.abs(audio[interior] - sine(16000, 2.0, hz=300.0)[interior]).max() < 2e-3


@pytest.mark.parametrize("suffix", [".flac", ".ogg"])
def test_flac_and_ogg_through_soundfile(tmp_path, suffix):
    path = tmp_path / f"tone{suffix}"
    sf.write(path, sine(16000, 1.0), 16000)
    audio = read_audio(path, 16000)
    assert abs(len(audio) - 16000) <= 64
    assert dominant_hz(audio, 16000) == pytest.approx(440, abs=2)


def ffmpeg_encode(source: Path, target: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), str(target)], check=True
    )


@needs_ffmpeg
@pytest.mark.parametrize("suffix", [".mp3", ".m4a"])
def test_compressed_formats_through_ffmpeg(tmp_path, suffix):
    wav = tmp_path / "tone.wav"
    tone = sine(44100, 2.0)
    sf.write(wav, np.stack([tone, np.zeros_like(tone)], axis=1), 44100, subtype="PCM_16")
    path = tmp_path / f"tone{suffix}"
    ffmpeg_encode(wav, path)
    audio = read_audio(path, 16000)
    # encoders add up to a frame or two of priming/padding
    assert abs(len(audio) - 32000) < 1000
    assert dominant_hz(audio, 16000) == pytest.approx(440, abs=2)
    # the mixdown is the mean of the channels (ffmpeg's own -ac 1 would give ~0.354)
    rms = float(np.sqrt(np.mean(np.square(audio[2000:-2000]))))
    assert rms == pytest.approx(0.25 / np.sqrt(2), rel=0.1)
    assert audio_duration(path) == pytest.approx(2.0, abs=0.1)


@needs_ffmpeg
def test_ffmpeg_without_ffprobe_still_decodes(tmp_path, monkeypatch):
    wav = tmp_path / "tone.wav"
    sf.write(wav, sine(22050, 1.0), 22050)
    path = tmp_path / "tone.mp3"
    ffmpeg_encode(wav, path)
    real_which = shutil.which
    monkeypatch.setattr(
        asr.audio.shutil, "which", lambda name: None if name == "ffprobe" else real_which(name)
    )
    audio = read_audio(path, 16000)
    assert abs(len(audio) - 16000) < 1000
    assert dominant_hz(audio, 16000) == pytest.approx(440, abs=2)


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(asr.audio.shutil, "which", lambda name: None)
    with pytest.raises(AudioError) as error:
        load_audio(path, 16000)
    assert "ffmpeg is not installed" in assert_one_line_naming(error, path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioError) as error:
        load_audio(path, 16000)
    assert "no such file" in assert_one_line_naming(error, path)
    with pytest.raises(AudioError):
        audio_duration(path)


def test_directory(tmp_path):
    with pytest.raises(AudioError) as error:
        load_audio(tmp_path, 16000)
    assert "directory" in assert_one_line_naming(error, tmp_path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 50)
    with pytest.raises(AudioError) as error:
        load_audio(path, 16000)
    assert "not a readable audio file" in assert_one_line_naming(error, path)
    with pytest.raises(AudioError) as error:
        audio_duration(path)
    assert_one_line_naming(error, path)


def test_truncated_wav_is_refused_with_the_reason(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, sine(16000, 2.0), 16000, subtype="PCM_16")
    data = full.read_bytes()
    path = tmp_path / "truncated.wav"
    path.write_bytes(data[: 44 + 16000 * 2])  # header + 1 s of the 2 s of samples
    with pytest.raises(AudioError) as error:
        read_audio(path, 16000)
    assert "truncated WAV" in assert_one_line_naming(error, path)
    # the same samples in a complete file decode
    fixed = tmp_path / "fixed.wav"
    sf.write(fixed, sine(16000, 2.0)[:16000], 16000, subtype="PCM_16")
    assert len(read_audio(fixed, 16000)) == 16000


def test_corrupt_wav_header(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, sine(16000, 1.0), 16000, subtype="PCM_16")
    path = tmp_path / "corrupt.wav"
    path.write_bytes(full.read_bytes()[:20])  # cut inside the fmt chunk
    with pytest.raises(AudioError) as error:
        load_audio(path, 16000)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize("kind", ["no_samples", "header_only", "empty_file"])
def test_zero_length_audio(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "no_samples":
        sf.write(path, np.zeros((0, 1), np.float32), 16000)
    elif kind == "header_only":
        full = tmp_path / "full.wav"
        sf.write(full, sine(16000, 1.0), 16000, subtype="PCM_16")
        path.write_bytes(full.read_bytes()[:44])
    else:
        path.write_bytes(b"")
    with pytest.raises(AudioError) as error:
        load_audio(path, 16000)
    assert "contains no audio" in assert_one_line_naming(error, path)


@needs_ffmpeg
def test_video_without_audio(tmp_path):
    path = tmp_path / "silent.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"]
        + ["color=c=black:s=32x32:d=1", "-an", str(path)],
        check=True,
    )
    with pytest.raises(AudioError) as error:
        load_audio(path, 16000)
    assert "contains no audio" in assert_one_line_naming(error, path)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.wav"
    sf.write(path, sine(16000, 0.5), 16000)
    monkeypatch.setattr(asr.audio.os, "access", lambda *_: False)  # chmod 0 is moot for root
    with pytest.raises(AudioError) as error:
        load_audio(path, 16000)
    assert "permission denied" in assert_one_line_naming(error, path)


def test_audio_error_is_a_value_error():
    assert issubclass(AudioError, ValueError)
    assert audio_duration(SPEECH) == pytest.approx(66458 / 16000)
