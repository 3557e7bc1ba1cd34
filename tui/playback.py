"""Playing a recording while its transcript scrolls: play, pause, seek, and a position.

With an output device, a sounddevice OutputStream's callback copies samples from the current
frame on, and the position is the frames handed to the device. Without one (no device, no
PortAudio, or output=False), the player is silent and its position follows a monotonic
clock, so the transcript still moves in time. Either way it stops by itself at the end.
All methods may be called from any thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from .audio_sources import close_quietly


def _sounddevice() -> ModuleType:
    import sounddevice  # raises OSError when the PortAudio library is missing

    return sounddevice


class Player:
    def __init__(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        output: bool = True,
        device: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        samples = np.asarray(audio)
        if samples.ndim != 1 or samples.dtype.kind not in "iuf":
            raise ValueError(f"audio must be 1-D numbers, got {samples.dtype} {samples.shape}")
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        self._audio = np.ascontiguousarray(samples, dtype=np.float32)
        self._rate = int(sample_rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()  # starting the stream, never taken by the callback
        self._playing = False
        self._frame = 0  # output mode: the next frame the callback hands on
        self._anchor_position = 0.0  # silent mode: the position at _anchor_time
        self._anchor_time = 0.0
        self._stream: Any = None
        self._stream_started = False
        self._silent_reason: str | None = None
        if not output:
            self._silent_reason = "sound output is off"
        elif self._audio.size:
            self._open_stream(device)

    # ------------------------------------------------------------------ properties
    @property
    def duration(self) -> float:
        return self._audio.size / self._rate

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def silent(self) -> bool:
        return self._stream is None

    @property
    def silent_reason(self) -> str | None:
        """Why there is no sound, as a short phrase for the UI ("no sound output device");
        None when there is sound."""
        return self._silent_reason if self.silent else None

    @property
    def playing(self) -> bool:
        with self._lock:
            self._settle()
            return self._playing

    @property
    def position(self) -> float:
        with self._lock:
            return self._position()

    @property
    def ended(self) -> bool:
        """Stopped at the end of the audio."""
        with self._lock:
            return not self._playing and self._position() >= self.duration

    # ------------------------------------------------------------------ controls
    def play(self) -> None:
        """Plays from the position; from the start again when at the end."""
        with self._lock:
            position = self._position()
            if self._playing:
                return
            if position >= self.duration:
                position = 0.0
            if self.duration == 0:
                return
            self._set_position(position)
            self._playing = True
        self._ensure_stream_started()

    def pause(self) -> None:
        with self._lock:
            position = self._position()
            self._playing = False
            self._set_position(position)

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def seek(self, seconds: float) -> None:
        """Moves to `seconds`, clamped to [0, duration]; keeps playing if it was. Seeking to
        the end stops playback there."""
        if math.isnan(seconds):
            raise ValueError("cannot seek to NaN seconds")
        with self._lock:
            self._settle()
            target = min(max(float(seconds), 0.0), self.duration)
            self._set_position(target)
            if target >= self.duration:
                self._playing = False

    def skip(self, delta_seconds: float) -> None:
        with self._lock:
            self._settle()
            position = self._position()
        self.seek(position + delta_seconds)

    def close(self) -> None:
        """Stops playback and releases the output device; the player is silent afterwards."""
        with self._lock:
            position = self._position()
            self._playing = False
            stream, self._stream = self._stream, None
            self._set_position(position)
            if stream is not None:
                self._silent_reason = "the player is closed"
        if stream is not None:
            close_quietly(stream)

    # ------------------------------------------------------------------ internals
    # The helpers below run with self._lock held.
    def _position(self) -> float:
        self._settle()
        if self._stream is not None:
            return self._frame / self._rate
        if self._playing:
            elapsed = self._clock() - self._anchor_time
            return min(self._anchor_position + max(elapsed, 0.0), self.duration)
        return self._anchor_position

    def _settle(self) -> None:
        """Silent mode: stops at the end once the clock has passed it."""
        if self._stream is None and self._playing:
            if self._anchor_position + (self._clock() - self._anchor_time) >= self.duration:
                self._playing = False
                self._anchor_position = self.duration

    def _set_position(self, seconds: float) -> None:
        self._frame = min(round(seconds * self._rate), self._audio.size)
        self._anchor_position = seconds
        self._anchor_time = self._clock()

    def _open_stream(self, device: int | None) -> None:
        try:
            sd = _sounddevice()
        except (ImportError, OSError) as e:
            self._silent_reason = f"no sound library ({_first_line(e)})"
            return
        if device is None:
            try:
                sd.query_devices(kind="output")
            except Exception:
                self._silent_reason = "no sound output device"
                return
        try:
            self._stream = sd.OutputStream(
                samplerate=self._rate,
                channels=1,
                dtype="float32",
                device=device,
                callback=self._callback,
            )
        except Exception as e:
            self._silent_reason = f"cannot open the sound output ({_first_line(e)})"

    def _ensure_stream_started(self) -> None:
        with self._start_lock:
            stream = self._stream
            if stream is None or self._stream_started:
                return
            try:
                stream.start()
                self._stream_started = True
                return
            except Exception as e:
                error = e
        with self._lock:
            # carry on silently from where the output would have been
            position = self._frame / self._rate
            self._stream = None
            self._silent_reason = f"the sound output failed ({_first_line(error)})"
            self._set_position(position)
        close_quietly(stream)

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy samples under a short lock, nothing that waits longer.
        with self._lock:
            if not self._playing:
                outdata.fill(0)
                return
            start = self._frame
            chunk = self._audio[start : start + frames]
            outdata[: chunk.size, 0] = chunk
            outdata[chunk.size :] = 0
            self._frame = start + chunk.size
            if self._frame >= self._audio.size:
                self._playing = False


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0].strip() if text else "") or type(error).__name__
