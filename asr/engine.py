"""The engine thread: one thread owns the model and the stream; audio and commands reach it
through a queue, events leave it through a callback.

    PortAudio callback -> feed() (never blocks; drops and counts when the backlog is full)
    UI -> set_context() / pause() / reset() / finish() / set_model() (commands, in order)
    engine thread -> on_event(Finalized | Draft | Progress | EngineError | Stopped)

Audio queued while an update runs is taken together by the next one, so an engine that
falls behind makes fewer, larger updates instead of a growing backlog. Text already final
is never lost: commands apply between updates, and an error in an update is reported as an
event, after which the stream restarts from the next audio.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from . import bf16_matmul
from .cpu_streaming import numpy_streaming_encoder
from .decoding.config import DecodingConfig
from .numpy_threads import limit_numpy_blas_threads
from .results import AlignedToken
from .streaming import StreamingParakeet, as_mono_float32
from .threads import release_thread_streams
from .warmup import warm_up_streaming

# The longest an update waits for audio, however slow the machine: drafts stay this fresh.
MAX_UPDATE_SECONDS = 2.0


@dataclass
class Finalized:
    """Tokens that became final: append them; they never change."""

    tokens: list[AlignedToken]


@dataclass
class Draft:
    """The current draft, replacing the previous one."""

    tokens: list[AlignedToken]


@dataclass
class Progress:
    audio_seconds: float  # audio the engine has transcribed, from the session's start
    compute_seconds: float  # what the last update took
    update_audio_seconds: float  # audio that update took in
    lag_seconds: float  # audio received but not yet transcribed
    dropped_seconds: float  # audio dropped because the backlog was full, in all
    nonfinite_blocks: int = 0  # blocks that held NaN or infinities (turned to silence)


@dataclass
class EngineError:
    message: str  # one line, for a person
    exception: BaseException | None = field(default=None, repr=False)


@dataclass
class Stopped:
    pass


Event = Finalized | Draft | Progress | EngineError | Stopped


@dataclass
class _Command:
    name: str
    args: tuple = ()


class TranscriptionEngine:
    def __init__(
        self,
        model,
        on_event: Callable[[Event], None],
        *,
        context_size: tuple[int, int] | None = None,  # None: the model's stream_context
        depth: int = 1,
        decoding_config: DecodingConfig | None = None,
        max_backlog_seconds: float = 30.0,
        bf16_weights: bool | None = None,  # None: bf16_weights_pay_off
        compute_share: float = 0.4,
        compiled: bool | None = None,  # None: compile_pays_off (a GPU)
    ):
        self._model = model
        self._compiled = compiled
        self._bf16_weights = bf16_weights
        # An update costs a fixed part (reading every weight once, the drafts' frames) plus
        # a part per audio second. Waiting for `compute / compute_share` seconds of audio
        # before the next update keeps the engine's share of real time near
        # `compute_share`: every block on a GPU, about a second's worth on a laptop CPU.
        self._compute_share = compute_share
        self._update_seconds = 0.0  # audio an update waits for; adapts to the last updates
        self._on_event = on_event
        self._context = tuple(context_size) if context_size else model.stream_context
        self._depth = depth
        self._decoding = decoding_config
        self._rate = model.preprocessor_config.sample_rate
        self._max_backlog = int(max_backlog_seconds * self._rate)
        self._items: deque[np.ndarray | _Command] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queued_samples = 0
        self._dropped_samples = 0
        self._paused = False
        self._thread: threading.Thread | None = None
        self._stream: StreamingParakeet | None = None
        self._saved_attention = None

    # -- from any thread ---------------------------------------------------------------
    def start(self) -> TranscriptionEngine:
        if self._thread is not None:
            raise RuntimeError("the engine is already started")
        self._thread = threading.Thread(target=self._run, name="asr-engine", daemon=True)
        self._thread.start()
        return self

    def feed(self, block) -> bool:
        """Queues samples; safe in an audio callback (takes a lock briefly, never waits for
        the model). Returns False when the block was dropped: paused, stopped, or the
        backlog already holds `max_backlog_seconds`."""
        samples = np.asarray(block)
        if samples.ndim not in (1, 2) or samples.dtype.kind not in "iuf":
            raise ValueError(
                f"audio blocks must be (samples,) or (samples, channels) numbers, "
                f"got {samples.dtype} {samples.shape}"
            )
        count = len(samples)
        with self._lock:
            if self._paused or self._thread is None or not self._thread.is_alive():
                return False
            if self._queued_samples + count > self._max_backlog:
                self._dropped_samples += count
                return False
            self._items.append(samples.copy())
            self._queued_samples += count
            self._wake.notify()
        return True

    def _command(self, name: str, *args) -> None:
        with self._lock:
            self._items.append(_Command(name, args))
            self._wake.notify()

    def set_context(self, context_size: tuple[int, int], depth: int | None = None) -> None:
        self._command("context", tuple(context_size), depth)

    def pause(self) -> None:
        """Stops taking audio (feed returns False); what was queued is still transcribed."""
        with self._lock:
            self._paused = True
        self._command("finish")

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def reset(self) -> None:
        """Drops the queued audio and the stream's state; final text stays final."""
        with self._lock:
            self._items = deque(i for i in self._items if isinstance(i, _Command))
            self._queued_samples = 0
        self._command("reset")

    def finish(self) -> None:
        """Makes everything heard so far final (the drafts become final text)."""
        self._command("finish")

    def wait_idle(self, timeout: float | None = 30.0) -> bool:
        """Waits until everything queued before this call has been handled."""
        done = threading.Event()
        self._command("sync", done)
        return done.wait(timeout)

    def set_model(self, model) -> None:
        self._command("model", model)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Transcribes what is queued, finalizes it, and ends the thread."""
        if self._thread is None:
            return
        self._command("stop")
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the engine thread -------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        try:
            self._on_event(event)
        except Exception:  # a failing listener must not kill the engine
            pass

    def _new_stream(self) -> StreamingParakeet:
        # GPU: before live audio
        warm_up_streaming(self._model, self._context, self._depth, self._compiled)
        bf16 = self._bf16_weights
        if bf16 is None:
            bf16 = bf16_weights_pay_off(self._model)
        stream = self._model.transcribe_stream(
            self._context,
            self._depth,
            decoding_config=self._decoding,
            bf16_weights=bf16,
            compiled=self._compiled,
        )
        return stream.__enter__()

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.restore_attention()
            self._stream = None

    def _take(self) -> list[np.ndarray | _Command]:
        """Everything queued, once there is a command or about `_update_seconds` of audio
        (to the nearest block: waiting for a whole block more to cover a fraction of one
        would add that block to every word's latency), or the audio has taken that long."""
        with self._lock:
            while not self._items:
                self._wake.wait()
            wanted = self._update_seconds * self._rate
            deadline = time.monotonic() + self._update_seconds
            while (
                not any(isinstance(item, _Command) for item in self._items)
                and self._queued_samples + len(self._items[-1]) / 2 < wanted
                and (left := deadline - time.monotonic()) > 0
            ):
                self._wake.wait(left)
            items = list(self._items)
            self._items.clear()
            self._queued_samples = 0
        return items

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            release_thread_streams()

    def _serve(self) -> None:
        limit_numpy_blas_threads()
        try:
            self._stream = self._new_stream()
        except Exception as e:  # noqa: BLE001 - reported, the thread ends cleanly
            self._emit(EngineError(f"cannot start streaming: {e}", e))
            self._emit(Stopped())
            return
        stopping = False
        while not stopping:
            pending: list[np.ndarray] = []
            for item in self._take():
                if isinstance(item, np.ndarray):
                    pending.append(item)
                    continue
                self._transcribe(pending)
                pending = []
                stopping = self._apply(item)
                if stopping:
                    break
            self._transcribe(pending)
        self._close_stream()
        self._emit(Stopped())

    def _apply(self, command: _Command) -> bool:
        """Runs a command between updates; True for stop."""
        try:
            if command.name == "context":
                context, depth = command.args
                self._context = context
                self._depth = depth or self._depth
                self._finalize(lambda: self._stream.set_context(context, depth))
            elif command.name == "finish":
                self._finalize(self._stream.finish_audio)
            elif command.name == "reset":
                self._stream.draft_tokens = []
                self._stream.reset()
                self._emit(Draft([]))
            elif command.name == "model":
                self._finalize(self._stream.finish_audio)
                offset = self._stream.audio_seconds
                self._close_stream()
                self._model = command.args[0]
                self._stream = self._new_stream()
                self._stream.start_at(offset)
            elif command.name == "sync":
                command.args[0].set()
            elif command.name == "stop":
                self._finalize(self._stream.close)
                return True
        except Exception as e:  # noqa: BLE001
            self._emit(EngineError(f"{command.name} failed: {_one_line(e)}", e))
        return False

    def _finalize(self, action: Callable[[], object]) -> None:
        before = len(self._stream.finalized_tokens)
        action()
        new = self._stream.finalized_tokens[before:]
        if new:
            self._emit(Finalized(list(new)))
        self._emit(Draft([]))

    def _adapt_update_seconds(self, compute: float) -> None:
        if self._compute_share <= 0:
            return
        wanted = min(MAX_UPDATE_SECONDS, compute / self._compute_share)
        # halfway to the new estimate: one slow update (a busy machine) doesn't double it
        self._update_seconds = 0.5 * (self._update_seconds + wanted)

    def _transcribe(self, blocks: list[np.ndarray]) -> None:
        if not blocks:
            return
        converted = [as_mono_float32(b) for b in blocks]
        audio = np.concatenate([samples for samples, _ in converted])
        started = time.perf_counter()
        try:
            self._stream.nonfinite_blocks += sum(nonfinite for _, nonfinite in converted)
            update = self._stream.add_audio(audio)
        except Exception as e:  # noqa: BLE001 - reported; the next audio starts afresh
            self._emit(EngineError(f"transcription failed: {_one_line(e)}", e))
            try:
                self._stream.reset()
            except Exception:  # noqa: BLE001
                self._stream = self._new_stream()
            return
        compute = time.perf_counter() - started
        self._adapt_update_seconds(compute)
        if update.finalized:
            self._emit(Finalized(list(update.finalized)))
        self._emit(Draft(list(update.draft)))
        with self._lock:
            lag = self._queued_samples / self._rate
            dropped = self._dropped_samples / self._rate
        self._emit(
            Progress(
                audio_seconds=update.audio_seconds,
                compute_seconds=compute,
                update_audio_seconds=len(audio) / self._rate,
                lag_seconds=lag,
                dropped_seconds=dropped,
                nonfinite_blocks=self._stream.nonfinite_blocks,
            )
        )


def bf16_weights_pay_off(model) -> bool:
    """Live streaming on a CPU with bfloat16 instructions runs the encoder's layers in
    numpy with bfloat16 projection weights (asr.cpu_streaming): an update reads half the
    bytes and skips MLX's per-operation cost, over twice as fast on the 0.6b model;
    tokens can differ from float32's where the model is unsure."""
    return bf16_matmul.available() and model.dtype == mx.float32 and mx.default_device() == mx.cpu


def prepare_streaming(model) -> None:
    """Makes ahead of time what the engine's streams will need, so that the first recording
    starts at once: the numpy layers with bfloat16 weights where they pay off (seconds for
    a large model), and on a GPU the streaming kernels (about a minute the first time on a
    new machine, longer than the engine's queue holds audio; seconds once MLX has them on
    disk). Optional; call it off the UI thread."""
    if bf16_weights_pay_off(model):
        numpy_streaming_encoder(model.encoder)
    warm_up_streaming(model, model.stream_context, 1)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
