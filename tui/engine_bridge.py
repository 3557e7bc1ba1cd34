"""The seam between the engine thread and the Textual app.

An EngineBridge owns one TranscriptionEngine for one session: audio goes in from any thread,
the engine's events come out as Textual messages posted to the pane that owns the session
(post_message is thread-safe), and final tokens are appended to the session's store on the
engine thread, so that the UI thread never waits for the model or the disk.

A FileFeeder feeds a whole recording as fast as the engine takes it, never more than a few
seconds ahead of it, so nothing is dropped from the engine's bounded backlog.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from asr.engine import (
    Draft,
    EngineError,
    Event,
    Finalized,
    Progress,
    Stopped,
    TranscriptionEngine,
)
from asr.results import AlignedToken

from .messages import (
    DraftChanged,
    EngineFailed,
    EngineProgressed,
    EngineStopped,
    TokensFinalized,
)

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from .session_store import SessionStore


class EngineBridge:
    def __init__(
        self,
        model,
        target: MessagePump,
        *,
        store: SessionStore | None = None,
        context: tuple[int, int] = (256, 16),
        depth: int = 1,
        time_offset: float = 0.0,
        engine_factory: Callable[..., TranscriptionEngine] = TranscriptionEngine,
    ) -> None:
        self.target = target
        self.store = store
        self.sample_rate: int = model.preprocessor_config.sample_rate
        self.context = context
        self.depth = depth
        self.engine = engine_factory(model, self._on_event, context_size=context, depth=depth)
        # audio before this engine's start (a recovered session that goes on)
        self.time_offset = time_offset
        self.transcribed_seconds = time_offset
        self.store_error: str | None = None
        self._progress = threading.Condition()
        self._stopped = threading.Event()

    # -- from any thread -----------------------------------------------------------------
    def start(self) -> EngineBridge:
        self.engine.start()
        return self

    def feed(self, block: np.ndarray) -> bool:
        return self.engine.feed(block)

    def set_context(self, context: tuple[int, int], depth: int) -> None:
        if (context, depth) == (self.context, self.depth):
            return
        self.context, self.depth = context, depth
        self.engine.set_context(context, depth)

    def pause(self) -> None:
        self.engine.pause()

    def resume(self) -> None:
        self.engine.resume()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Transcribes what is queued, makes it final and ends the engine thread. Blocks:
        call it from a worker thread, never from the UI thread."""
        self.engine.stop(timeout)

    @property
    def running(self) -> bool:
        return self.engine.running

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def wait_until_transcribed(self, seconds: float, timeout: float) -> bool:
        """Waits until the engine has transcribed `seconds` of audio (or stopped)."""
        with self._progress:
            return self._progress.wait_for(
                lambda: self.transcribed_seconds >= seconds or self.stopped, timeout
            )

    # -- the engine thread ---------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, Finalized):
            tokens = self._shifted(event.tokens)
            self._save(tokens)
            self.target.post_message(TokensFinalized(self, tokens))
        elif isinstance(event, Draft):
            self.target.post_message(DraftChanged(self, self._shifted(event.tokens)))
        elif isinstance(event, Progress):
            event = replace(event, audio_seconds=event.audio_seconds + self.time_offset)
            with self._progress:
                self.transcribed_seconds = event.audio_seconds
                self._progress.notify_all()
            self.target.post_message(EngineProgressed(self, event))
        elif isinstance(event, EngineError):
            self.target.post_message(EngineFailed(self, event.message))
        elif isinstance(event, Stopped):
            self._close_store()
            with self._progress:
                self._stopped.set()
                self._progress.notify_all()
            self.target.post_message(EngineStopped(self))

    def _shifted(self, tokens: list[AlignedToken]) -> list[AlignedToken]:
        if not self.time_offset:
            return tokens
        return [replace(t, start=t.start + self.time_offset) for t in tokens]

    def _save(self, tokens: list[AlignedToken]) -> None:
        if self.store is None or self.store_error is not None:
            return
        try:
            self.store.append_final(tokens)
        except Exception as error:  # noqa: BLE001 - shown once; transcription goes on
            self.store_error = f"cannot save the session: {error}"
            self.target.post_message(EngineFailed(self, self.store_error))

    def _close_store(self) -> None:
        if self.store is None:
            return
        try:
            self.store.close()
        except Exception as error:  # noqa: BLE001
            self.target.post_message(EngineFailed(self, f"cannot close the session: {error}"))


class FileFeeder:
    """Feeds a recording to a bridge on its own thread, then stops the bridge."""

    def __init__(
        self,
        bridge: EngineBridge,
        audio: np.ndarray,
        *,
        start_seconds: float = 0.0,
        block_seconds: float = 1.0,
        max_ahead_seconds: float = 8.0,
    ) -> None:
        self.bridge = bridge
        self.audio = audio
        self.block = max(1, int(block_seconds * bridge.sample_rate))
        self.max_ahead = max_ahead_seconds
        self.start_seconds = start_seconds  # the bridge's time_offset, for a session going on
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-feeder", daemon=True)

    def start(self) -> FileFeeder:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stops feeding; the bridge still makes final what it already has."""
        self._cancelled.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        rate = self.bridge.sample_rate
        fed = int(self.start_seconds * rate)
        while fed < len(self.audio) and not self._cancelled.is_set():
            ahead_limit = fed / rate - self.max_ahead
            if not self.bridge.wait_until_transcribed(ahead_limit, timeout=0.25):
                continue
            if self.bridge.stopped:
                return
            block = self.audio[fed : fed + self.block]
            if self.bridge.feed(block):
                fed += len(block)
            else:  # the backlog is full: the engine is slower than max_ahead assumed
                self._cancelled.wait(0.05)
        self.bridge.stop(timeout=None)
