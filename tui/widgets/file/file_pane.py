"""The File pane: a recording transcribed in the background while it plays.

The transcript fills in as the engine goes; Enter or a click on a sentence moves playback
there, and the sentence under the playhead is highlighted while it plays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Label

from asr.alignment import SentenceConfig
from asr.audio import AudioError, read_audio

from ...engine_bridge import FileFeeder
from ...messages import EngineProgressed
from ...playback import Player
from ...session_store import SessionStore
from ..seek_bar import SeekBar
from ..transcript import Transcript
from ..transcript_pane import TranscriptPane

SKIP_SECONDS = 5.0
TICK_SECONDS = 0.1
SAMPLE_RATE = 16000  # decoding rate before a model is known; Parakeet models all use it


class FilePane(TranscriptPane):
    DEFAULT_SESSION_NAME = "recording"
    BINDINGS = [
        Binding("space", "toggle_play", "Play/Pause"),
        Binding("left", "skip(-5)", "-5 s"),
        Binding("right", "skip(5)", "+5 s"),
        Binding("o", "open", "Open"),
    ]

    def __init__(
        self,
        sentence_config: SentenceConfig,
        *,
        audio_output: bool = True,
        id: str | None = None,
    ) -> None:
        super().__init__(sentence_config, id=id)
        self.audio_output = audio_output
        self.recording: Path | None = None
        self.audio: np.ndarray | None = None
        self.player: Player | None = None
        self.feeder: FileFeeder | None = None
        self._pending_transcription = False
        self._resume_from: float | None = None  # a recovered session's end, to go on from

    def compose(self) -> ComposeResult:
        with Horizontal(id="file-header"):
            yield Label("No recording open: press o to open one.", id="file-name")
            yield Label("", id="file-state")
        with Horizontal(id="player"):
            yield Button("▶ Play", id="play", disabled=True)
            yield SeekBar(id="seek-bar")
        yield Transcript(
            placeholder="The transcript appears here.", seekable=True, id="file-transcript"
        )

    def on_mount(self) -> None:
        self.set_interval(TICK_SECONDS, self._follow_playhead)

    # -- opening ---------------------------------------------------------------------------
    def action_open(self) -> None:
        self.parakeet.action_open_recording()

    def open_recording(self, path: Path, *, recovered: SessionStore | None = None) -> None:
        """Loads the recording (in a worker), then transcribes it, or, for a recovered
        session, shows its text and transcribes the rest."""
        if self.transcribing:
            self.app.notify("A recording is still being transcribed.", severity="warning")
            return
        self._close_player()
        self.recording = path
        self.audio = None
        self.query_one("#file-name", Label).update(path.name)
        self._set_state("loading…")
        if recovered is not None:
            self.adopt_session(recovered)
            self._resume_from = recovered.info.final_seconds
        else:
            self._resume_from = None
            self.live.clear()
            self.transcript.clear()
        self._load_audio(path)

    @work(thread=True, exclusive=True, group="load-recording")
    def _load_audio(self, path: Path) -> None:
        try:
            audio = read_audio(path, SAMPLE_RATE)
        except (AudioError, OSError) as error:
            self.app.call_from_thread(self._load_failed, path, str(error))
            return
        player = Player(audio, SAMPLE_RATE, output=self.audio_output)
        self.app.call_from_thread(self._audio_loaded, path, audio, player)

    def _load_failed(self, path: Path, message: str) -> None:
        if path != self.recording:
            return
        self._set_state("")
        self.query_one("#file-name", Label).update(f"Cannot open {path.name}")
        self.app.notify(message, title="Recording", severity="error", timeout=8)

    def _audio_loaded(self, path: Path, audio: np.ndarray, player: Player) -> None:
        if path != self.recording:
            player.close()
            return
        self.audio = audio
        self.player = player
        if player.silent and player.silent_reason:
            self.app.notify(
                f"No sound: {player.silent_reason}. Playback runs silently.",
                title="Playback",
                severity="warning",
            )
        seek_bar = self.query_one(SeekBar)
        seek_bar.duration = player.duration
        seek_bar.position = 0.0
        self.query_one("#play", Button).disabled = False
        self._pending_transcription = True
        self.start_transcription()

    def model_ready(self) -> None:
        self.start_transcription()

    # -- transcribing ----------------------------------------------------------------------
    def start_transcription(self) -> None:
        app = self.parakeet
        if not self._pending_transcription or self.audio is None or self.recording is None:
            return
        if app.model is None:
            self._set_state("waiting for the model")
            return
        if app.engine_owner not in (None, self):
            self._set_state("waiting for the microphone to stop")
            return
        self._pending_transcription = False
        start = self._resume_from or 0.0
        if self._resume_from is not None and self.store is not None:
            store = self.store
            self.store = None  # handed to the new bridge, which goes on writing to it
            tokens = self.live.final_tokens
            bridge = self.start_bridge(store, time_offset=start)
            self.show_tokens(tokens)
        else:
            store = app.create_session(self.recording.stem, source=str(self.recording))
            bridge = self.start_bridge(store)
        self.query_one(SeekBar).transcribed = start
        self.feeder = FileFeeder(bridge, self.audio, start_seconds=start).start()
        self._set_state("transcribing…")

    def on_engine_progressed(self, message: EngineProgressed) -> None:
        # not stopped: the app shows the figures in the status line
        if message.bridge is not self.bridge or self.player is None:
            return
        done = min(message.progress.audio_seconds, self.player.duration)
        self.query_one(SeekBar).transcribed = done
        percent = 100 * done / self.player.duration if self.player.duration else 100
        self._set_state(f"transcribing… {percent:.0f}%")

    def engine_stopped(self) -> None:
        self.feeder = None
        if self.player is not None:
            self.query_one(SeekBar).transcribed = self.player.duration
        self._set_state("transcribed")

    def engine_released(self) -> None:
        self.start_transcription()

    def _set_state(self, text: str) -> None:
        # a fixed width: no layout of the screen for each engine update
        self.query_one("#file-state", Label).update(text, layout=False)

    # -- playback --------------------------------------------------------------------------
    @on(Button.Pressed, "#play")
    def action_toggle_play(self) -> None:
        if self.player is None:
            return
        self.player.toggle()
        self._follow_playhead()

    def action_skip(self, seconds: float) -> None:
        if self.player is None:
            return
        self.player.skip(seconds)
        self._follow_playhead()

    def seek(self, seconds: float) -> None:
        if self.player is None:
            return
        self.player.seek(seconds)
        self._follow_playhead()

    @on(Transcript.SentenceChosen)
    def _sentence_chosen(self, event: Transcript.SentenceChosen) -> None:
        event.stop()
        self.seek(event.start)

    @on(SeekBar.Seeked)
    def _seek_bar_clicked(self, event: SeekBar.Seeked) -> None:
        event.stop()
        self.seek(event.seconds)

    def _follow_playhead(self) -> None:
        player = self.player
        if player is None:
            return
        position = player.position
        playing = player.playing
        self.query_one(SeekBar).position = position
        button = self.query_one("#play", Button)
        button.label = "⏸ Pause" if playing else "▶ Play"
        transcript = self.transcript
        row = self.live.row_at_time(position)
        if row != transcript.playing:
            transcript.playing = row
            if playing and row is not None:
                transcript.show_row(row)

    def _close_player(self) -> None:
        if self.player is not None:
            self.player.close()
            self.player = None
        self.query_one("#play", Button).disabled = True

    def shut_down(self, timeout: float) -> None:
        if self.feeder is not None:
            self.feeder.cancel()
        if self.player is not None:
            self.player.close()
        super().shut_down(timeout)
