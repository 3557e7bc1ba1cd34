"""Player: silent mode on a fake clock, and output mode through a fake sounddevice stream."""

from __future__ import annotations

import types

import numpy as np
import pytest

from tui import playback
from tui.playback import Player

RATE = 16000


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def silent_player(seconds: float = 10.0) -> tuple[Player, FakeClock]:
    clock = FakeClock()
    audio = np.zeros(int(seconds * RATE), np.float32)
    return Player(audio, RATE, output=False, clock=clock), clock


def test_silent_player_follows_the_clock():
    player, clock = silent_player(10.0)
    assert player.silent and player.silent_reason and "\n" not in player.silent_reason
    assert player.duration == 10.0
    assert (player.position, player.playing) == (0.0, False)
    clock.advance(5)
    assert player.position == 0.0  # not playing: the clock does not move it
    player.play()
    clock.advance(2.5)
    assert player.playing and player.position == pytest.approx(2.5)
    player.pause()
    clock.advance(3)
    assert not player.playing and player.position == pytest.approx(2.5)
    player.toggle()
    assert player.playing
    clock.advance(1)
    assert player.position == pytest.approx(3.5)
    player.toggle()
    assert not player.playing and player.position == pytest.approx(3.5)


def test_silent_player_seek_and_skip_clamp():
    player, clock = silent_player(10.0)
    player.seek(4.0)
    assert player.position == 4.0 and not player.playing
    player.skip(-10)
    assert player.position == 0.0
    player.skip(3.25)
    assert player.position == pytest.approx(3.25)
    player.seek(-1)
    assert player.position == 0.0
    player.play()
    clock.advance(1)
    player.skip(2)  # keeps playing from the new place
    assert player.playing and player.position == pytest.approx(3.0)
    clock.advance(1)
    assert player.position == pytest.approx(4.0)
    player.skip(100)  # past the end: at the end, stopped
    assert player.position == 10.0 and not player.playing and player.ended
    with pytest.raises(ValueError):
        player.seek(float("nan"))


def test_silent_player_stops_by_itself_at_the_end():
    player, clock = silent_player(3.0)
    player.play()
    clock.advance(2.0)
    assert player.playing and not player.ended
    clock.advance(5.0)
    assert not player.playing and player.ended
    assert player.position == 3.0
    clock.advance(5.0)
    assert player.position == 3.0
    player.play()  # at the end, play starts over
    assert player.playing and player.position == 0.0
    clock.advance(1.0)
    assert player.position == pytest.approx(1.0)


def test_empty_audio_never_plays():
    player = Player(np.zeros(0, np.float32), RATE, output=False)
    player.play()
    assert not player.playing and player.duration == 0.0 and player.position == 0.0


def test_bad_audio_is_a_value_error():
    with pytest.raises(ValueError, match="1-D"):
        Player(np.zeros((2, 100), np.float32), RATE, output=False)
    with pytest.raises(ValueError, match="sample rate"):
        Player(np.zeros(100, np.float32), 0, output=False)


def machine_has_sound_output() -> bool:
    try:
        import sounddevice

        sounddevice.query_devices(kind="output")
        return True
    except Exception:
        return False


@pytest.mark.skipif(machine_has_sound_output(), reason="this machine has a sound output")
def test_no_output_device_here_means_silent_with_a_reason():
    player = Player(np.zeros(RATE, np.float32), RATE)
    assert player.silent
    assert player.silent_reason and "\n" not in player.silent_reason
    player.play()
    assert player.playing
    player.close()
    assert not player.playing


# ------------------------------------------------------------------ output mode


class FakeStream:
    def __init__(self, *, samplerate, channels, dtype, device, callback, fail_start=False):
        self.samplerate, self.channels, self.dtype = samplerate, channels, dtype
        self.device, self.callback = device, callback
        self.fail_start = fail_start
        self.started = self.closed = False

    def start(self):
        if self.fail_start:
            raise RuntimeError("Error starting stream: Device unavailable [PaErrorCode -9985]")
        self.started = True

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True

    def pull(self, frames: int) -> np.ndarray:
        out = np.full((frames, self.channels), 9.0, np.float32)
        self.callback(out, frames, None, None)
        return out[:, 0].copy()


def fake_sounddevice(monkeypatch, fail_start=False):
    streams: list[FakeStream] = []

    def output_stream(**kwargs):
        stream = FakeStream(**kwargs, fail_start=fail_start)
        streams.append(stream)
        return stream

    fake = types.SimpleNamespace(
        OutputStream=output_stream, query_devices=lambda device=None, kind=None: {"name": "out"}
    )
    monkeypatch.setattr(playback, "_sounddevice", lambda: fake)
    return streams


def test_output_mode_plays_the_samples_and_stops_at_the_end(monkeypatch):
    streams = fake_sounddevice(monkeypatch)
    audio = np.arange(1000, dtype=np.float32) / 1000
    player = Player(audio, 1000)
    (stream,) = streams
    assert not player.silent and player.silent_reason is None
    assert (stream.samplerate, stream.channels, stream.dtype) == (1000, 1, "float32")
    np.testing.assert_array_equal(stream.pull(100), 0)  # not playing: silence
    player.play()
    assert stream.started
    np.testing.assert_array_equal(stream.pull(300), audio[:300])
    assert player.position == pytest.approx(0.3)
    player.pause()
    np.testing.assert_array_equal(stream.pull(100), 0)
    player.seek(0.9)
    player.play()
    out = stream.pull(300)  # the last 100 samples, then silence
    np.testing.assert_array_equal(out[:100], audio[900:])
    np.testing.assert_array_equal(out[100:], 0)
    assert not player.playing and player.ended and player.position == 1.0
    player.close()
    assert stream.closed and player.silent


def test_output_mode_skip_moves_the_samples(monkeypatch):
    streams = fake_sounddevice(monkeypatch)
    audio = np.arange(1000, dtype=np.float32)
    player = Player(audio, 1000)
    player.play()
    streams[0].pull(100)
    player.skip(0.5)
    np.testing.assert_array_equal(streams[0].pull(10), audio[600:610])
    player.skip(-5)
    np.testing.assert_array_equal(streams[0].pull(10), audio[:10])


def test_output_that_fails_to_start_goes_silent(monkeypatch):
    fake_sounddevice(monkeypatch, fail_start=True)
    clock = FakeClock()
    player = Player(np.zeros(2000, np.float32), 1000, clock=clock)
    assert not player.silent
    player.play()
    assert player.silent and player.playing
    assert "Device unavailable" in player.silent_reason and "\n" not in player.silent_reason
    clock.advance(1.5)
    assert player.position == pytest.approx(1.5)


def test_no_output_device_gives_that_reason(monkeypatch):
    fake_sounddevice(monkeypatch)

    def no_output(device=None, kind=None):
        raise ValueError("No output device matching ''")

    playback._sounddevice().query_devices = no_output
    player = Player(np.zeros(100, np.float32), 1000)
    assert player.silent and player.silent_reason == "no sound output device"


def test_output_false_never_opens_a_stream(monkeypatch):
    streams = fake_sounddevice(monkeypatch)
    player = Player(np.zeros(100, np.float32), 1000, output=False)
    assert player.silent and streams == []
    assert player.silent_reason == "sound output is off"
