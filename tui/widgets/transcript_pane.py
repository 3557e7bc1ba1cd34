"""What the Mic and File panes share: a session on disk, its engine bridge, its transcript.

A pane owns at most one session at a time. The engine's messages reach the pane that
started it; messages from a bridge the pane has since left behind are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.containers import Vertical

from asr.alignment import SentenceConfig
from asr.results import AlignedResult, AlignedToken

from ..engine_bridge import EngineBridge
from ..live_transcript import LiveTranscript
from ..messages import (
    DraftChanged,
    EngineFailed,
    EngineStopped,
    SessionChanged,
    TokensFinalized,
)
from .transcript import Transcript

if TYPE_CHECKING:
    from ..app import ParakeetApp
    from ..session_store import SessionStore


class TranscriptPane(Vertical):
    DEFAULT_SESSION_NAME = "transcript"

    def __init__(
        self, sentence_config: SentenceConfig, *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.live = LiveTranscript(sentence_config)
        self.bridge: EngineBridge | None = None
        self.store: SessionStore | None = None

    @property
    def parakeet(self) -> ParakeetApp:
        return cast("ParakeetApp", self.app)

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    # -- the session -----------------------------------------------------------------------
    @property
    def session_name(self) -> str:
        if self.store is not None:
            return self.store.name
        return self.DEFAULT_SESSION_NAME

    @property
    def transcribing(self) -> bool:
        return self.bridge is not None and not self.bridge.stopped

    def result(self) -> AlignedResult:
        return self.live.result(include_draft=True)

    def has_text(self) -> bool:
        return self.live.row_count > 0

    def show_tokens(self, tokens: list[AlignedToken]) -> None:
        """Replaces the transcript with final tokens (a recovered session)."""
        self.live.clear()
        self.live.add_final(tokens)
        self.transcript.clear()
        self.transcript.replace_rows_from(0, self.live.rows)

    def adopt_session(self, store: SessionStore) -> None:
        """Takes a session recovered from disk: its text is shown and exported from here."""
        self.close_session()
        self.store = store
        self.show_tokens(list(store.tokens))
        self.post_message(SessionChanged())

    def close_session(self) -> None:
        """Closes a session no engine is writing to (one whose engine stopped closed it)."""
        store, self.store = self.store, None
        if store is not None and (self.bridge is None or self.bridge.store is not store):
            try:
                store.close()
            except Exception as error:  # noqa: BLE001 - the user is told; the app goes on
                self.app.notify(f"cannot close the session: {error}", severity="error")

    def start_bridge(self, store: SessionStore | None, time_offset: float = 0.0) -> EngineBridge:
        """A new session's engine, with the stream settings the sliders show now."""
        app = self.parakeet
        self.close_session()
        self.store = store
        self.live.clear()
        self.transcript.clear()
        self.bridge = EngineBridge(
            app.model,
            self,
            store=store,
            context=app.stream_context,
            depth=app.stream_depth,
            time_offset=time_offset,
        ).start()
        app.engine_owner = self
        self.post_message(SessionChanged())
        return self.bridge

    def shut_down(self, timeout: float) -> None:
        """Stops the session for quitting; blocks, so it runs on a worker thread."""
        bridge = self.bridge
        if bridge is not None and not bridge.stopped:
            bridge.stop(timeout)
        store = self.store
        if store is not None and (bridge is None or bridge.store is not store):
            store.close()

    # -- engine messages -------------------------------------------------------------------
    def _current(self, message: TokensFinalized | DraftChanged | EngineStopped) -> bool:
        return message.bridge is self.bridge

    def on_tokens_finalized(self, message: TokensFinalized) -> None:
        message.stop()
        if self._current(message):
            first = self.live.add_final(message.tokens)
            self.transcript.replace_rows_from(first, self.live.rows_from(first))

    def on_draft_changed(self, message: DraftChanged) -> None:
        message.stop()
        if self._current(message):
            first = self.live.set_draft(message.tokens)
            self.transcript.replace_rows_from(first, self.live.rows_from(first))

    def on_engine_failed(self, message: EngineFailed) -> None:
        message.stop()
        self.app.notify(message.message, title="Transcription", severity="error", timeout=8)

    def on_engine_stopped(self, message: EngineStopped) -> None:
        if not self._current(message):
            message.stop()
            return
        if self.parakeet.engine_owner is self:
            self.parakeet.engine_owner = None
        self.engine_stopped()
        # bubbles on to the app, which updates the title and status line

    def engine_stopped(self) -> None:
        """The session's engine ended: everything it heard is final and on disk."""

    def engine_released(self) -> None:
        """Another pane's engine ended: work waiting for the engine may start."""
