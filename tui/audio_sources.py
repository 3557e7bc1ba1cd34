"""Live audio for the app: the microphone, or a file standing in for it (`--mic-from FILE`).

Both deliver 1-D float32 blocks at the model's sample rate to a callback on a background
thread (PortAudio's for the microphone, a daemon thread for a file), and both pause, resume
and stop. Errors a person can act on are `AudioSourceError`s with one-line messages.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE = 16000  # Parakeet's
BLOCK_SECONDS = 0.1
SILENCE_DB = -90.0  # the level reported for silence and empty blocks

BlockCallback = Callable[[np.ndarray], None]


class AudioSourceError(RuntimeError):
    """Audio that cannot be captured or read; the message is one line for the user."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    default_samplerate: float
    is_default: bool


@runtime_checkable
class LiveSource(Protocol):
    """What the app records from. `on_block` runs on a background thread and must be quick."""

    sample_rate: int

    def start(self, on_block: BlockCallback) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def finished(self) -> bool: ...

    @property
    def name(self) -> str: ...


def _sounddevice() -> ModuleType:
    """sounddevice, or AudioSourceError when it or PortAudio is missing."""
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is not installed
        raise AudioSourceError(
            f"no audio input: sounddevice unavailable ({_first_line(e)})"
        ) from None
    return sounddevice


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    line = text.splitlines()[0].strip() if text else ""
    if isinstance(error, BaseException):
        return line or type(error).__name__
    return line


def list_input_devices() -> list[InputDevice]:
    """The devices that can record, the system default marked; [] when there are none or
    sounddevice/PortAudio are unavailable. Never raises."""
    try:
        sd = _sounddevice()
        devices = sd.query_devices()
        try:
            default = int(sd.default.device[0])
        except Exception:
            default = -1
        found = []
        for index, info in enumerate(devices):
            if int(info.get("max_input_channels", 0)) <= 0:
                continue
            found.append(
                InputDevice(
                    index=index,
                    name=str(info.get("name", f"device {index}")),
                    default_samplerate=float(info.get("default_samplerate", 0.0)),
                    is_default=index == default,
                )
            )
        return found
    except Exception:
        return []


def block_level_db(block: np.ndarray) -> float:
    """The block's RMS level in dBFS (full scale 1.0, so a full-scale sine is about -3 dB),
    never below SILENCE_DB. Empty, silent or non-finite blocks give SILENCE_DB."""
    samples = np.asarray(block, dtype=np.float64).ravel()
    if samples.size == 0:
        return SILENCE_DB
    rms = math.sqrt(float(np.mean(np.square(samples))))
    if not math.isfinite(rms) or rms <= 0.0:
        return SILENCE_DB
    return max(SILENCE_DB, 20.0 * math.log10(rms))


# ----------------------------------------------------------------------- microphone


class MicSource:
    """A microphone through sounddevice, mono float32 at `sample_rate`, blocks of about
    `block_seconds`. When the device refuses that rate, it records at its own default rate and
    resamples each block (soxr's streaming resampler) in the callback."""

    def __init__(
        self,
        device: int | None = None,
        *,
        sample_rate: int = SAMPLE_RATE,
        block_seconds: float = BLOCK_SECONDS,
    ):
        if sample_rate <= 0 or not block_seconds > 0:
            raise AudioSourceError("sample rate and block length must be positive")
        self.device = device
        self.sample_rate = sample_rate
        self.block_seconds = block_seconds
        self._stream: Any = None
        self._on_block: BlockCallback | None = None
        self._resampler: Any = None
        self._overflows = 0
        self._name: str | None = None

    @property
    def name(self) -> str:
        if self._name is None:
            self._name = self._device_name()
        return self._name

    def _device_name(self) -> str:
        try:
            sd = _sounddevice()
            kind = None if self.device is not None else "input"
            return str(sd.query_devices(self.device, kind)["name"])
        except Exception:
            return "default microphone" if self.device is None else f"input device {self.device}"

    @property
    def finished(self) -> bool:
        return False  # a microphone never runs out

    @property
    def overflows(self) -> int:
        """Times PortAudio reported lost input (the callback or the system fell behind)."""
        return self._overflows

    def start(self, on_block: BlockCallback) -> None:
        if self._stream is not None:
            raise AudioSourceError("the microphone is already recording")
        sd = _sounddevice()
        self._on_block = on_block
        try:
            stream = self._open(sd, self.sample_rate)
        except Exception as first:
            rate = self._device_rate(sd)
            if rate is None or rate == self.sample_rate:
                raise AudioSourceError(self._open_error(first)) from None
            try:
                import soxr

                self._resampler = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="float32")
                stream = self._open(sd, rate)
            except Exception:
                self._resampler = None
                raise AudioSourceError(self._open_error(first)) from None
        try:
            stream.start()
        except Exception as e:
            close_quietly(stream)
            raise AudioSourceError(self._open_error(e)) from None
        self._stream = stream

    def _open(self, sd: ModuleType, rate: float) -> Any:
        return sd.InputStream(
            samplerate=rate,
            blocksize=max(1, round(rate * self.block_seconds)),
            device=self.device,
            channels=1,
            dtype="float32",
            callback=self._callback,
        )

    def _device_rate(self, sd: ModuleType) -> int | None:
        try:
            kind = None if self.device is not None else "input"
            rate = float(sd.query_devices(self.device, kind)["default_samplerate"])
        except Exception:
            return None
        return round(rate) if rate > 0 else None

    def _open_error(self, error: BaseException) -> str:
        if not list_input_devices():
            return "no microphone: the system reports no audio input device"
        return f"cannot open {self.name}: {_first_line(error)}"

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy the block and hand it on, nothing that waits.
        if status and getattr(status, "input_overflow", False):
            self._overflows += 1
        block = np.array(indata[:, 0] if indata.ndim == 2 else indata, dtype=np.float32)
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
            if block.size == 0:
                return
        on_block = self._on_block
        if on_block is not None:
            on_block(block)

    def pause(self) -> None:
        """Stops recording (the device is released) until resume()."""
        stream = self._stream
        if stream is not None and stream.active:
            try:
                stream.stop()
            except Exception as e:
                raise AudioSourceError(f"cannot pause {self.name}: {_first_line(e)}") from None

    def resume(self) -> None:
        stream = self._stream
        if stream is not None and not stream.active:
            try:
                stream.start()
            except Exception as e:
                raise AudioSourceError(f"cannot resume {self.name}: {_first_line(e)}") from None

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        self._on_block = None
        if stream is not None:
            close_quietly(stream)


def close_quietly(stream: Any) -> None:
    """Stops and closes a sounddevice stream, ignoring a device that already went away."""
    for action in ("stop", "close"):
        try:
            getattr(stream, action)()
        except Exception:
            pass


# ----------------------------------------------------------------------- file


class FileSource:
    """A file played into the app as if it were a microphone: blocks of `block_seconds` from a
    daemon thread, one each `block_seconds / speed` seconds (speed <= 0 or infinite: as fast as
    possible). The file is decoded when the source is made (slow for long compressed files:
    make it off the UI thread). `on_end` runs on that thread after the last block."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float = 1.0,
        sample_rate: int = SAMPLE_RATE,
        block_seconds: float = BLOCK_SECONDS,
        on_end: Callable[[], None] | None = None,
    ):
        if math.isnan(speed):
            raise AudioSourceError("speed must be a number")
        if sample_rate <= 0 or not block_seconds > 0 or not math.isfinite(block_seconds):
            raise AudioSourceError("sample rate and block length must be positive")
        from asr.audio import AudioError, read_audio

        try:
            self._samples = read_audio(path, sample_rate)
        except AudioError as e:
            raise AudioSourceError(_first_line(e)) from None
        self.path = Path(path)
        self.speed = speed
        self.sample_rate = sample_rate
        self.block_seconds = block_seconds
        self.on_end = on_end
        self._block = max(1, round(sample_rate * block_seconds))
        self._cond = threading.Condition()
        self._paused = False
        self._stopped = False
        self._finished = False
        self._delivered = 0  # samples handed on so far
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def samples(self) -> np.ndarray:
        """The whole decoded file (read-only view)."""
        view = self._samples.view()
        view.flags.writeable = False
        return view

    @property
    def duration(self) -> float:
        return self._samples.size / self.sample_rate

    @property
    def position(self) -> float:
        """Seconds of audio delivered so far."""
        return self._delivered / self.sample_rate

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def paced(self) -> bool:
        return 0 < self.speed < math.inf

    def start(self, on_block: BlockCallback) -> None:
        with self._cond:
            if self._thread is not None:
                raise AudioSourceError(f"{self.name} is already playing")
            self._thread = threading.Thread(
                target=self._run, args=(on_block,), name=f"file-source {self.name}", daemon=True
            )
        self._thread.start()

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        """Ends delivery and returns at once (it never waits for `on_block`, which may itself be
        waiting for the caller's thread): a block already being handed on still arrives, no
        other does. `on_end` is not called."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for delivery to end (finished or stopped); False on timeout."""
        thread = self._thread
        if thread is None:
            return self._stopped
        thread.join(timeout)
        return not thread.is_alive()

    def _wait_turn(self, deadline: float) -> float | None:
        """Waits, holding the lock, until the next block is due and not paused. Returns the
        deadline moved on by any time spent paused, or None when stopped."""
        with self._cond:
            while not self._stopped:
                if self._paused:
                    paused_at = time.monotonic()
                    self._cond.wait()
                    deadline += time.monotonic() - paused_at
                    continue
                remaining = deadline - time.monotonic() if self.paced else 0.0
                if remaining <= 0:
                    return deadline
                self._cond.wait(remaining)
            return None

    def _run(self, on_block: BlockCallback) -> None:
        interval = self._block / (self.sample_rate * self.speed) if self.paced else 0.0
        deadline = time.monotonic()
        total = self._samples.size
        while self._delivered < total:
            # A block becomes available once its duration has passed, as from a microphone.
            waited = self._wait_turn(deadline + interval)
            if waited is None:
                return
            deadline = waited
            block = self._samples[self._delivered : self._delivered + self._block].copy()
            on_block(block)
            with self._cond:
                self._delivered += block.size
        self._finished = True
        if self.on_end is not None:
            self.on_end()
