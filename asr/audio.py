"""Audio in, NeMo's log-mel features out.

Loading: `load_audio` decodes a file to mono float32 at the model's sample rate (soundfile
for WAV/FLAC/OGG and friends, ffmpeg for everything else), and `AudioError` reports every
file it cannot use in one line naming the file.

Features: `get_logmel` reproduces NeMo's AudioToMelSpectrogramPreprocessor in eval mode
(no dither): preemphasis, an STFT with zero padding of n_fft // 2 at both edges and a
symmetric window centred inside n_fft, the complex magnitude raised to `mag_power`, a Slaney
mel filterbank (librosa's, as NeMo uses it), log with an additive (or clamping) guard,
len // hop frames, and per-feature normalization with Bessel's correction. The work is done
in float32 numpy, in blocks of frames, so memory stays linear in the audio's length.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
import soundfile as sf

from .config import PreprocessArgs
from .mel_filters import mel_filterbank

# NeMo adds this to the standard deviation so that constant features do not divide by zero.
STD_EPSILON = 1e-5

# Formats libsndfile decodes itself; anything else goes to ffmpeg first.
SOUNDFILE_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au"}
    | {".snd", ".caf", ".w64", ".rf64"}
)

_FRAMES_PER_BLOCK = 1024  # frames per FFT block: a few MB of buffers, reused
_ROWS_PER_STATISTICS_BLOCK = 8192
_NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


class AudioError(ValueError):
    """Audio that cannot be used; the message is one line naming the file."""


# ---------------------------------------------------------------------------- loading


def load_audio(
    path: str | os.PathLike[str], sample_rate: int, dtype: mx.Dtype = mx.float32
) -> mx.array:
    """Decodes a file to a 1-D mono array at `sample_rate` (channels are averaged)."""
    samples = read_audio(path, sample_rate)
    audio = mx.array(samples)
    return audio if dtype == mx.float32 else audio.astype(dtype)


def read_audio(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """`load_audio` as a float32 numpy array (for playback and other non-MLX uses)."""
    name = os.fspath(path)
    _check_file(name)
    _check_wav_complete(name)
    decoders = [_decode_soundfile, _decode_ffmpeg]
    if Path(name).suffix.lower() not in SOUNDFILE_SUFFIXES:
        decoders.reverse()
    failures: list[str] = []
    for decode in decoders:
        try:
            samples = decode(name, sample_rate)
        except _DecodeError as e:
            failures.append(str(e))
            continue
        if samples.size == 0:
            raise AudioError(f"{name}: contains no audio")
        return samples
    raise AudioError(f"{name}: not a readable audio file ({'; '.join(failures)})")


def audio_duration(path: str | os.PathLike[str]) -> float:
    """The file's duration in seconds, from its header (no decoding)."""
    name = os.fspath(path)
    _check_file(name)
    try:
        info = sf.info(name)
        if info.samplerate > 0 and info.frames >= 0:
            return info.frames / info.samplerate
    except (sf.SoundFileError, RuntimeError, ValueError, OSError):
        pass
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        raise AudioError(f"{name}: cannot read its duration (soundfile cannot; ffprobe not found)")
    try:
        probe = _ffprobe(ffprobe, name)
    except _DecodeError as e:
        raise AudioError(f"{name}: cannot read its duration ({e})") from None
    if probe.channels == 0:
        raise AudioError(f"{name}: contains no audio")
    if probe.duration is None:
        raise AudioError(f"{name}: cannot read its duration (ffprobe reports none)")
    return probe.duration


class _DecodeError(Exception):
    """One decoder's failure, as a short phrase."""


def _check_file(name: str) -> None:
    if not os.path.exists(name):
        raise AudioError(f"{name}: no such file")
    if os.path.isdir(name):
        raise AudioError(f"{name}: is a directory, not an audio file")
    if not os.access(name, os.R_OK):
        raise AudioError(f"{name}: permission denied")
    if os.path.isfile(name) and os.path.getsize(name) == 0:
        raise AudioError(f"{name}: contains no audio (the file is empty)")


def _check_wav_complete(name: str) -> None:
    """A WAV whose data chunk is shorter than its header says was cut off (an interrupted
    copy or recording). Decoders read such a file silently; a transcript of part of the
    recording presented as the whole would mislead, so it is refused with a way out."""
    try:
        with open(name, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return
            order = "<" if head[:4] == b"RIFF" else ">"
            while chunk := f.read(8):
                if len(chunk) < 8:
                    return
                kind, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
                if kind == b"data":
                    present = os.path.getsize(name) - f.tell()
                    if size != 0xFFFFFFFF and present <= 0 < size:
                        raise AudioError(f"{name}: contains no audio (a truncated WAV)")
                    if size != 0xFFFFFFFF and present < size:
                        raise AudioError(
                            f"{name}: truncated WAV (its header promises {size} bytes of audio, "
                            f"{max(present, 0)} are there); `ffmpeg -i` can rewrite what remains"
                        )
                    return
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return


def _one_line(text: str, name: str) -> str:
    """The last non-empty line of a tool's message, without the file name it repeats."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else "unknown error"
    for prefix in (f"{name}: ", f"Error opening {name!r}: ", f"Error opening '{name}': "):
        line = line.replace(prefix, "")
    return line


def _mono_at_rate(data: np.ndarray, source_rate: int, sample_rate: int) -> np.ndarray:
    """(samples, channels) float32 -> 1-D float32 at `sample_rate`."""
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if source_rate != sample_rate and mono.size:
        import soxr  # imported here to keep import time low

        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(
            np.float32, copy=False
        )
    return mono


def _decode_soundfile(name: str, sample_rate: int) -> np.ndarray:
    try:
        with sf.SoundFile(name) as f:
            source_rate = f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, OSError, EOFError) as e:
        raise _DecodeError(f"soundfile: {_one_line(str(e), name)}") from None
    return _mono_at_rate(data, source_rate, sample_rate)


@dataclass(frozen=True)
class _Probe:
    rate: int
    channels: int  # 0: the file has no audio stream
    duration: float | None


def _ffprobe(ffprobe: str, name: str) -> _Probe:
    cmd = [ffprobe, "-v", "error", "-select_streams", "a:0", "-of", "json"]
    cmd += ["-show_entries", "stream=sample_rate,channels,duration:format=duration", name]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise _DecodeError(f"ffprobe: {_one_line(proc.stderr.decode(errors='replace'), name)}")
    try:
        info = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError:
        raise _DecodeError("ffprobe: unreadable output") from None
    streams = info.get("streams") or []
    if not streams:
        return _Probe(0, 0, None)
    stream = streams[0]
    duration = stream.get("duration") or (info.get("format") or {}).get("duration")
    try:
        return _Probe(
            int(stream["sample_rate"]),
            int(stream["channels"]),
            float(duration) if duration not in (None, "N/A") else None,
        )
    except (KeyError, TypeError, ValueError):
        raise _DecodeError("ffprobe: no sample rate or channel count") from None


def _decode_ffmpeg(name: str, sample_rate: int) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise _DecodeError("ffmpeg is not installed, and is needed for this format")
    ffprobe = shutil.which("ffprobe")
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", name]
    cmd += ["-map", "0:a:0", "-f", "f32le"]
    if ffprobe is not None:
        # Decode at the native rate and layout so that the mixdown (a plain mean) and the
        # resampler (soxr) are the same as for files soundfile reads. ffmpeg's own -ac 1
        # sums stereo at 1/sqrt(2) for float output.
        probe = _ffprobe(ffprobe, name)
        if probe.channels == 0:
            return np.zeros(0, dtype=np.float32)
        cmd += ["-ac", str(probe.channels), "-ar", str(probe.rate), "-"]
        channels, rate = probe.channels, probe.rate
    else:
        cmd += ["-ac", "1", "-ar", str(sample_rate), "-"]
        channels, rate = 1, sample_rate
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise _DecodeError(f"ffmpeg: {_one_line(proc.stderr.decode(errors='replace'), name)}")
    data = np.frombuffer(proc.stdout, dtype="<f4")
    data = data[: data.size - data.size % channels].reshape(-1, channels)
    return _mono_at_rate(data, rate, sample_rate)


# ---------------------------------------------------------------------------- features

_WINDOWS = {
    # NeMo builds these with periodic=False, i.e. numpy's symmetric windows.
    "hann": np.hanning,
    "hanning": np.hanning,
    "hamming": np.hamming,
    "blackman": np.blackman,
    "bartlett": np.bartlett,
}


def _n_fft(args: PreprocessArgs) -> int:
    return args.n_fft or 2 ** math.ceil(math.log2(args.win_length))


@functools.lru_cache(maxsize=16)
def _window(name: str | None, win_length: int) -> np.ndarray:
    if name is None or name in ("none", "ones", "rectangular"):
        window = np.ones(win_length)
    elif name in _WINDOWS:
        window = _WINDOWS[name](win_length)
    else:
        raise ValueError(f"unknown window {name!r} (expected one of {sorted(_WINDOWS)})")
    window = window.astype(np.float32)
    window.flags.writeable = False
    return window


@functools.lru_cache(maxsize=16)
def _filterbank(
    sample_rate: int, n_fft: int, features: int, fmin: float, fmax: float, norm: str | None
) -> np.ndarray:
    """(n_fft // 2 + 1, features) float32, the filters as NeMo builds them."""
    bank = mel_filterbank(sample_rate, n_fft, features, fmin, fmax, norm)
    bank = np.ascontiguousarray(bank.T, dtype=np.float32)
    bank.flags.writeable = False
    return bank


def frame_count(num_samples: int, args: PreprocessArgs) -> int:
    """NeMo's valid frame count: the centred STFT's frames less the last one."""
    n_fft = _n_fft(args)
    return max(0, (num_samples + 2 * (n_fft // 2) - n_fft) // args.hop_length)


def _float32(array: mx.array | np.ndarray) -> np.ndarray:
    if isinstance(array, mx.array) and array.dtype != mx.float32:
        array = array.astype(mx.float32)  # numpy has no bfloat16
    return np.asarray(array, dtype=np.float32)


def _to_numpy(audio: mx.array | np.ndarray) -> np.ndarray:
    audio = _float32(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected 1-D audio, got shape {tuple(audio.shape)}")
    return audio


def _guard_value(args: PreprocessArgs) -> float:
    value = args.log_zero_guard_value
    if value == "tiny":
        return float(np.finfo(np.float32).tiny)
    if value == "eps":
        return float(np.finfo(np.float32).eps)
    return float(value)


def _padded_segment(
    audio: np.ndarray, start: int, stop: int, preemph: float | None, out: np.ndarray
) -> np.ndarray:
    """Samples start..stop of the preemphasized audio, zero outside it (NeMo's STFT padding).
    Built per block so that no padded copy of the whole recording is ever made."""
    segment = out[: stop - start]
    lo, hi = max(start, 0), min(stop, audio.size)
    if lo > start or hi < stop:
        segment[:] = 0.0
    if hi <= lo:
        return segment
    segment[lo - start : hi - start] = audio[lo:hi]
    if preemph is not None:  # y[t] = x[t] - preemph * x[t-1], y[0] = x[0]
        first = max(lo, 1)
        segment[first - start : hi - start] -= np.float32(preemph) * audio[first - 1 : hi - 1]
    return segment


def _rfft(frames: np.ndarray, n_fft: int, out: np.ndarray) -> np.ndarray:
    if _NUMPY_2:  # float32 FFTs and `out=` arrived in numpy 2.0
        return np.fft.rfft(frames, n=n_fft, out=out)
    out[:] = np.fft.rfft(frames, n=n_fft)
    return out


def _log_mel_numpy(audio: np.ndarray, args: PreprocessArgs) -> np.ndarray:
    n_fft, hop, win = _n_fft(args), args.hop_length, args.win_length
    if win > n_fft:
        raise ValueError(f"window length {win} is longer than n_fft {n_fft}")
    frames = frame_count(audio.size, args)
    if frames == 0:
        needed = hop + n_fft - 2 * (n_fft // 2)
        raise AudioError(
            f"audio is too short: {audio.size} samples give no feature frame "
            f"(at least {needed} are needed, {needed / args.sample_rate:.3f} s)"
        )
    if args.log and args.log_zero_guard_type not in ("add", "clamp"):
        raise ValueError(f"unknown log_zero_guard_type {args.log_zero_guard_type!r}")
    window = _window(args.window, win)
    highfreq = args.highfreq or args.sample_rate / 2
    bank = _filterbank(
        args.sample_rate, n_fft, args.features, args.lowfreq, highfreq, args.mel_norm
    )
    guard = np.float32(_guard_value(args))
    # torch.stft centres a window shorter than n_fft inside the frame. Only its win samples
    # are nonzero, and moving them to the start of the FFT buffer (rfft pads at the end)
    # changes the phase, not the magnitude: frame t is samples t*hop + offset + [0, win).
    offset = (n_fft - win) // 2 - n_fft // 2
    block = min(_FRAMES_PER_BLOCK, frames)
    # Buffers reused by every block: fresh multi-megabyte arrays would page-fault each time.
    segment_buffer = np.empty((block - 1) * hop + win, dtype=np.float32)
    windowed = np.empty((block, win), dtype=np.float32)
    spectrum = np.empty((block, n_fft // 2 + 1), dtype=np.complex64)
    power = np.empty((block, n_fft // 2 + 1), dtype=np.float32)
    imaginary = np.empty_like(power)
    mel = np.empty((frames, args.features), dtype=np.float32)
    for first in range(0, frames, block):
        count = min(block, frames - first)
        start = first * hop + offset
        segment = _padded_segment(
            audio, start, start + (count - 1) * hop + win, args.preemph, segment_buffer
        )
        views = np.lib.stride_tricks.sliding_window_view(segment, win)[::hop]
        frames_spectrum = _rfft(
            np.multiply(views, window, out=windowed[:count]), n_fft, spectrum[:count]
        )
        magnitude = np.square(frames_spectrum.real, out=power[:count])
        magnitude += np.square(frames_spectrum.imag, out=imaginary[:count])
        if args.mag_power != 2.0:  # NeMo: sqrt(re^2 + im^2) ** mag_power
            np.sqrt(magnitude, out=magnitude)
            if args.mag_power != 1.0:
                np.power(magnitude, np.float32(args.mag_power), out=magnitude)
        out = mel[first : first + count]
        np.matmul(magnitude, bank, out=out)
        if args.log:
            if args.log_zero_guard_type == "add":
                out += guard
            else:
                np.maximum(out, guard, out=out)
            np.log(out, out=out)
    return mel


def _statistics_numpy(mel: np.ndarray, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    if normalize not in ("per_feature", "all_features"):
        raise ValueError(f"unknown normalize {normalize!r} (per_feature, all_features or None)")
    axis = 0 if normalize == "per_feature" else None
    count = mel.shape[0] if axis == 0 else mel.size
    # Two passes in float64, a block at a time: float32 sums over an hour's 360,000 frames
    # would lose digits, and a float64 copy of the whole mel is not needed.
    block = np.empty((min(_ROWS_PER_STATISTICS_BLOCK, mel.shape[0]), *mel.shape[1:]))

    def blocks():
        for first in range(0, mel.shape[0], _ROWS_PER_STATISTICS_BLOCK):
            rows = mel[first : first + _ROWS_PER_STATISTICS_BLOCK]
            np.copyto(block[: len(rows)], rows)
            yield block[: len(rows)]

    mean = sum(rows.sum(axis=axis) for rows in blocks()) / count
    if count < 2:
        std = np.zeros_like(mean)
    else:
        squares = 0.0
        for rows in blocks():
            rows -= mean
            squares = squares + np.square(rows, out=rows).sum(axis=axis)
        std = np.sqrt(squares / (count - 1))
    return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)


def log_mel_spectrogram(audio: mx.array, args: PreprocessArgs) -> mx.array:
    """NeMo's log-mel of 1-D audio before normalization: (frames, features) float32 with
    frames = len // hop_length. Raises AudioError when that is 0 (audio shorter than a hop).
    `pad_to` is not applied: NeMo's padding lies beyond the valid frames, which is all this
    returns."""
    return mx.array(_log_mel_numpy(_to_numpy(audio), args))


def feature_statistics(mel: mx.array, normalize: str = "per_feature") -> tuple[mx.array, mx.array]:
    """Mean and standard deviation (Bessel's correction, N-1) of a (frames, features) mel
    over time: per feature, shapes (features,), or over everything ("all_features"),
    scalars. With a single frame (or value) the standard deviation is 0, where NeMo would
    get NaN: normalization then maps that frame to 0, never to NaN."""
    mean, std = _statistics_numpy(_float32(mel), normalize)
    return mx.array(mean), mx.array(std)


def normalize_features(mel: mx.array, mean: mx.array, std: mx.array) -> mx.array:
    """(mel - mean) / (std + 1e-5), as NeMo normalizes."""
    return (mel - mean) / (std + STD_EPSILON)


def get_logmel(audio: mx.array, args: PreprocessArgs) -> mx.array:
    """NeMo's preprocessor output for 1-D audio: (1, frames, features), normalized as
    `args.normalize` says ("per_feature", "all_features" or None), in the audio's dtype
    (computed in float32 whatever that is). Eval mode: no dither. A single frame normalizes
    to zeros (see `feature_statistics`). Raises AudioError for audio shorter than a hop."""
    mel = _log_mel_numpy(_to_numpy(audio), args)
    if args.normalize:
        mean, std = _statistics_numpy(mel, args.normalize)
        mel -= mean
        mel /= std + np.float32(STD_EPSILON)
    out = mx.array(mel)[None]
    dtype = audio.dtype if isinstance(audio, mx.array) else mx.float32
    return out if dtype == mx.float32 else out.astype(dtype)
