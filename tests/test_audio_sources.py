"""Live audio sources: the file stand-in for a microphone, devices, levels, MicSource's errors."""

from __future__ import annotations

import math
import threading
import time
import types

import numpy as np
import pytest
import soundfile as sf
from conftest import NEMO

from tui import audio_sources
from tui.audio_sources import (
    SILENCE_DB,
    AudioSourceError,
    FileSource,
    InputDevice,
    LiveSource,
    MicSource,
    block_level_db,
    list_input_devices,
)

CLIP = NEMO / "audio" / "speech0.wav"


def clip_samples() -> np.ndarray:
    return sf.read(CLIP, dtype="float32")[0]


class Blocks:
    """Collects blocks from the source's thread."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []
        self.lock = threading.Lock()
        self.first = threading.Event()

    def __call__(self, block: np.ndarray) -> None:
        assert block.dtype == np.float32 and block.ndim == 1
        with self.lock:
            self.blocks.append(block)
        self.first.set()

    def count(self) -> int:
        with self.lock:
            return len(self.blocks)

    def audio(self) -> np.ndarray:
        with self.lock:
            return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)


# ------------------------------------------------------------------- FileSource


def test_file_source_paced_delivers_the_whole_file():
    ended = threading.Event()
    source = FileSource(CLIP, speed=4.0, on_end=ended.set)
    assert isinstance(source, LiveSource)
    assert source.name == "speech0.wav" and source.sample_rate == 16000
    expected = clip_samples()
    blocks = Blocks()
    began = time.monotonic()
    source.start(blocks)
    assert ended.wait(30)
    elapsed = time.monotonic() - began
    assert source.finished and source.wait(5)
    np.testing.assert_array_equal(blocks.audio(), expected)
    assert all(len(b) == 1600 for b in blocks.blocks[:-1])
    assert source.position == pytest.approx(len(expected) / 16000)
    # paced at 4x real time: never faster than half that pace
    assert elapsed >= 0.5 * source.duration / 4


@pytest.mark.parametrize("speed", [0.0, -1.0, math.inf])
def test_file_source_as_fast_as_possible(speed):
    source = FileSource(CLIP, speed=speed, block_seconds=0.05)
    assert not source.paced
    blocks = Blocks()
    source.start(blocks)
    assert source.wait(30)
    assert source.finished
    np.testing.assert_array_equal(blocks.audio(), clip_samples())
    assert all(len(b) == 800 for b in blocks.blocks[:-1])


def test_file_source_pause_holds_delivery_and_resume_continues():
    source = FileSource(CLIP, speed=20.0)
    blocks = Blocks()
    paused = threading.Event()

    def on_block(block):
        blocks(block)
        if blocks.count() == 3:
            source.pause()  # from the source's own thread: no block after this one
            paused.set()

    source.start(on_block)
    assert paused.wait(10)
    time.sleep(0.3)  # at 20x, 0.3 s would be 60 blocks: more than the clip has
    assert blocks.count() == 3
    assert not source.finished and source.paused
    source.resume()
    assert source.wait(30) and source.finished
    np.testing.assert_array_equal(blocks.audio(), clip_samples())


def test_file_source_stop_ends_delivery_without_on_end():
    ended = threading.Event()
    source = FileSource(CLIP, speed=1.0, on_end=ended.set)
    blocks = Blocks()
    source.start(blocks)
    assert blocks.first.wait(10)
    source.stop()
    assert source.wait(10)
    assert not source.finished and not ended.is_set()
    assert 0 < blocks.count() < math.ceil(len(clip_samples()) / 1600)


def test_file_source_stop_while_paused_ends_the_thread():
    source = FileSource(CLIP, speed=1.0)
    source.pause()
    source.start(Blocks())
    source.stop()
    assert source.wait(10) and not source.finished


def test_file_source_resamples_to_the_requested_rate():
    source = FileSource(CLIP, speed=0, sample_rate=8000)
    blocks = Blocks()
    source.start(blocks)
    assert source.wait(30)
    assert abs(blocks.audio().size - clip_samples().size // 2) <= 2


def test_file_source_cannot_start_twice():
    source = FileSource(CLIP, speed=0)
    source.start(Blocks())
    with pytest.raises(AudioSourceError, match="already"):
        source.start(Blocks())
    source.wait(30)


def test_file_source_bad_files_give_one_line_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioSourceError) as info:
        FileSource(missing)
    assert "no such file" in str(info.value) and "\n" not in str(info.value)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioSourceError) as info:
        FileSource(garbage)
    assert "garbage.wav" in str(info.value) and "\n" not in str(info.value)


def test_file_source_rejects_nonsense_settings():
    with pytest.raises(AudioSourceError):
        FileSource(CLIP, speed=float("nan"))
    with pytest.raises(AudioSourceError):
        FileSource(CLIP, block_seconds=0)


# ------------------------------------------------------------------- levels


def test_block_level_db():
    assert block_level_db(np.zeros(0, np.float32)) == SILENCE_DB
    assert block_level_db(np.zeros(1600, np.float32)) == SILENCE_DB
    assert block_level_db(np.full(1600, 1e-9, np.float32)) == SILENCE_DB
    assert block_level_db(np.ones(1600, np.float32)) == pytest.approx(0.0)
    assert block_level_db(np.full(100, 0.1, np.float32)) == pytest.approx(-20.0)
    t = np.arange(16000) / 16000
    sine = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    assert block_level_db(sine) == pytest.approx(-3.01, abs=0.01)
    assert block_level_db(0.5 * sine) == pytest.approx(-9.03, abs=0.01)
    assert block_level_db(np.array([np.nan, 1.0], np.float32)) == SILENCE_DB


# ------------------------------------------------------------------- devices


def machine_has_sound_input() -> bool:
    try:
        import sounddevice

        sounddevice.query_devices(kind="input")
        return True
    except Exception:
        return False


@pytest.mark.skipif(machine_has_sound_input(), reason="this machine has a sound input")
def test_no_input_devices_here():
    # no sound devices (or no PortAudio): an empty list, no exception
    assert list_input_devices() == []


def fake_sounddevice(devices, default_input=0, fail_rates=(), **extra):
    """A stand-in for the sounddevice module: query_devices, default and an InputStream
    whose callback the test drives."""
    streams = []

    class InputStream:
        def __init__(self, *, samplerate, blocksize, device, channels, dtype, callback):
            if samplerate in fail_rates:
                raise RuntimeError(
                    "Error opening InputStream: Invalid sample rate [PaErrorCode -9997]"
                )
            self.samplerate, self.blocksize, self.device = samplerate, blocksize, device
            self.channels, self.dtype, self.callback = channels, dtype, callback
            self.active = False
            self.closed = False
            streams.append(self)

        def start(self):
            self.active = True

        def stop(self):
            self.active = False

        def close(self):
            self.closed = True

    def query_devices(device=None, kind=None):
        if device is None and kind is None:
            return devices
        index = default_input if device is None else device
        return devices[index]

    module = types.SimpleNamespace(
        query_devices=query_devices,
        default=types.SimpleNamespace(device=[default_input, -1]),
        InputStream=InputStream,
        streams=streams,
        **extra,
    )
    return module


DEVICES = [
    {"name": "Speakers", "max_input_channels": 0, "default_samplerate": 48000.0},
    {"name": "Built-in Mic", "max_input_channels": 1, "default_samplerate": 48000.0},
    {"name": "USB Headset", "max_input_channels": 2, "default_samplerate": 44100.0},
]


def test_list_input_devices_keeps_inputs_and_marks_the_default(monkeypatch):
    fake = fake_sounddevice(DEVICES, default_input=2)
    monkeypatch.setattr(audio_sources, "_sounddevice", lambda: fake)
    assert list_input_devices() == [
        InputDevice(1, "Built-in Mic", 48000.0, False),
        InputDevice(2, "USB Headset", 44100.0, True),
    ]


def test_list_input_devices_never_raises(monkeypatch):
    def broken():
        raise OSError("PortAudio library not found")

    fake = fake_sounddevice(DEVICES)
    fake.query_devices = broken
    monkeypatch.setattr(audio_sources, "_sounddevice", lambda: fake)
    assert list_input_devices() == []


@pytest.mark.skipif(machine_has_sound_input(), reason="this machine has a sound input")
def test_mic_without_a_device_gives_one_line_error():
    mic = MicSource()
    assert isinstance(mic, LiveSource) and not mic.finished
    with pytest.raises(AudioSourceError) as info:
        mic.start(lambda block: None)
    assert str(info.value) == "no microphone: the system reports no audio input device"
    mic.stop()  # harmless after a failed start


def test_mic_hands_on_mono_float32_blocks(monkeypatch):
    fake = fake_sounddevice(DEVICES, default_input=1)
    monkeypatch.setattr(audio_sources, "_sounddevice", lambda: fake)
    mic = MicSource(device=1)
    assert mic.name == "Built-in Mic"
    blocks = Blocks()
    mic.start(blocks)
    (stream,) = fake.streams
    assert (stream.samplerate, stream.blocksize, stream.channels) == (16000, 1600, 1)
    assert stream.dtype == "float32" and stream.device == 1 and stream.active
    indata = np.arange(1600, dtype=np.float32).reshape(-1, 1) / 1600
    stream.callback(indata, 1600, None, None)
    indata[:] = 0  # PortAudio reuses its buffer: the block handed on must be a copy
    np.testing.assert_array_equal(blocks.audio(), np.arange(1600, dtype=np.float32) / 1600)
    mic.pause()
    assert not stream.active
    mic.resume()
    assert stream.active
    mic.stop()
    assert stream.closed


def test_mic_falls_back_to_the_devices_rate_and_resamples(monkeypatch):
    fake = fake_sounddevice(DEVICES, default_input=1, fail_rates=(16000,))
    monkeypatch.setattr(audio_sources, "_sounddevice", lambda: fake)
    mic = MicSource()
    blocks = Blocks()
    mic.start(blocks)
    (stream,) = fake.streams
    assert stream.samplerate == 48000 and stream.blocksize == 4800
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(-1, 1)
    for i in range(0, 48000, 4800):
        stream.callback(tone[i : i + 4800], 4800, None, None)
    out = blocks.audio()
    assert 15000 <= out.size <= 16000  # a resampler's delay may hold back a little
    assert block_level_db(out[2000:]) == pytest.approx(block_level_db(tone), abs=0.1)
    mic.stop()


def test_mic_open_failure_is_one_line(monkeypatch):
    fake = fake_sounddevice(DEVICES, default_input=1, fail_rates=(16000, 48000))
    monkeypatch.setattr(audio_sources, "_sounddevice", lambda: fake)
    with pytest.raises(AudioSourceError) as info:
        MicSource().start(lambda block: None)
    assert str(info.value).startswith("cannot open Built-in Mic: Error opening InputStream")
    assert "\n" not in str(info.value)
