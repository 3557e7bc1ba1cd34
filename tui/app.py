"""The `parakeet-tui` app: the Mic and File panes, stream settings, status line, footer.

The app holds what the panes share: the model, the one engine at a time (a pane must own
it to transcribe), the stream settings, the sessions to recover, exports. Everything slow
runs in workers or on the engine thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from asr.alignment import SentenceConfig

from .app_options import AppOptions, AppUsageError, parse_app_args
from .messages import EngineProgressed, EngineStopped, SessionChanged, StreamSettingsChanged
from .model_loading import backend_name, model_label
from .screens.export_dialog import ExportDialog
from .screens.open_recording import OpenRecordingDialog
from .screens.recover_session import RecoverSessionDialog
from .session_store import SessionError, SessionInfo, SessionStore
from .widgets.file.file_pane import FilePane
from .widgets.mic.mic_pane import MicPane
from .widgets.status_bar import StatusBar
from .widgets.stream_settings import StreamSettings
from .widgets.transcript_pane import TranscriptPane

SHUTDOWN_SECONDS = 10.0  # how long quitting waits for the engine to make its text final


class ParakeetApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "parakeet-tui"
    BINDINGS = [
        Binding("ctrl+s", "export", "Export"),
        Binding("m", "show_pane('mic')", "Mic"),
        Binding("f", "show_pane('file')", "File"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        options: AppOptions | None = None,
        *,
        model=None,
        offer_recovery: bool = True,
    ) -> None:
        """`model`: an already loaded model (tests, benchmarks); None loads options.model."""
        super().__init__()
        self.options = options or AppOptions()
        self.model = model
        self.offer_recovery = offer_recovery
        self.engine_owner: TranscriptPane | None = None
        self.sentence_config = SentenceConfig(max_duration=self.options.max_sentence_seconds)
        self._quitting = False
        self.mic_pane = MicPane(
            self.sentence_config,
            mic_from=self.options.mic_from,
            mic_speed=self.options.mic_speed,
            id="mic-pane",
        )
        self.file_pane = FilePane(
            self.sentence_config, audio_output=self.options.audio_output, id="file-pane"
        )

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        options = self.options
        yield Header(icon="◉")
        with TabbedContent(initial="file" if options.recording else "mic", id="panes"):
            with TabPane("Mic", id="mic"):
                yield self.mic_pane
            with TabPane("File", id="file"):
                yield self.file_pane
        yield StreamSettings(options.context, options.depth, id="stream-settings")
        yield StatusBar(id="status-bar")
        yield Footer()

    @property
    def active_pane(self) -> TranscriptPane:
        panes = self.query_one("#panes", TabbedContent)
        return self.file_pane if panes.active == "file" else self.mic_pane

    @property
    def stream_context(self) -> tuple[int, int]:
        return self.query_one(StreamSettings).context

    @property
    def stream_depth(self) -> int:
        return self.query_one(StreamSettings).depth

    def on_mount(self) -> None:
        status = self.query_one(StatusBar)
        status.model_label = model_label(self.options.model)
        status.backend = backend_name()
        self._update_title()
        if self.options.recording is not None:
            self.file_pane.open_recording(self.options.recording)
        if self.model is not None:
            self._model_ready(self.model)
        else:
            self._load_model()
        self.active_pane.transcript.focus()

    # -- the model -------------------------------------------------------------------------
    def _load_model(self) -> None:
        from .screens.model_loading import ModelLoadingScreen

        status = self.query_one(StatusBar)
        status.activity = "loading the model…"
        self.push_screen(ModelLoadingScreen(self.options.model), self._model_loaded)

    def _model_loaded(self, model) -> None:
        status = self.query_one(StatusBar)
        status.activity = ""
        if model is None:
            status.model_label = "no model"
            self.notify("No model: transcription is off; recovery and export still work.")
            self._offer_recovery()
            return
        self._model_ready(model)

    def _model_ready(self, model) -> None:
        self.model = model
        self.query_one(StreamSettings).set_max_depth(len(model.encoder.layers))
        self.mic_pane.model_ready()
        self.file_pane.model_ready()
        self._offer_recovery()

    # -- sessions --------------------------------------------------------------------------
    def create_session(self, name: str, *, source: str) -> SessionStore | None:
        """A new session on disk; None (and a notice) when it cannot be written, in which
        case transcription still runs, unsaved."""
        try:
            return SessionStore.create(name, source=source, model=self.options.model)
        except (SessionError, OSError) as error:
            self.notify(f"Not saving this session: {error}", severity="warning", timeout=8)
            return None

    def _offer_recovery(self) -> None:
        if not self.offer_recovery:
            return
        self.offer_recovery = False  # once per run
        # A pane may have started its own session already (a recording that loaded before
        # the model): unfinished because it is running, not because it crashed.
        own = {
            pane.store.path for pane in (self.mic_pane, self.file_pane) if pane.store is not None
        }
        try:
            sessions = [s for s in SessionStore.unfinished() if s.path not in own]
        except (SessionError, OSError):
            return
        if sessions:
            self.push_screen(RecoverSessionDialog(sessions), self._recover)

    def _recover(self, info: SessionInfo | None) -> None:
        if info is None:
            return
        try:
            store = SessionStore.open(info.path)
        except SessionError as error:
            self.notify(str(error), severity="error")
            return
        recording = Path(info.source)
        if recording.is_file():
            self.query_one("#panes", TabbedContent).active = "file"
            self.file_pane.open_recording(recording, recovered=store)
        else:
            self.query_one("#panes", TabbedContent).active = "mic"
            self.mic_pane.adopt_session(store)
        self.notify(f"Recovered {info.name}.")

    @on(SessionChanged)
    @on(TabbedContent.TabActivated)
    def _update_title(self) -> None:
        if self.is_mounted:
            self.sub_title = self.active_pane.session_name

    # -- the engine ------------------------------------------------------------------------
    def on_engine_progressed(self, message: EngineProgressed) -> None:
        self.query_one(StatusBar).record(message.progress)

    def on_engine_stopped(self, message: EngineStopped) -> None:
        for pane in (self.mic_pane, self.file_pane):
            if pane is not self.engine_owner:
                pane.engine_released()

    def on_stream_settings_changed(self, message: StreamSettingsChanged) -> None:
        owner = self.engine_owner
        if owner is not None and owner.bridge is not None:
            owner.bridge.set_context(message.context, message.depth)
        left, right = message.context
        self.notify(
            f"Context {left} left, {right} right; depth {message.depth}.",
            title="Stream settings",
            timeout=2,
        )

    # -- actions ---------------------------------------------------------------------------
    def action_show_pane(self, pane: str) -> None:
        self.query_one("#panes", TabbedContent).active = pane
        self.active_pane.transcript.focus()

    def action_export(self) -> None:
        pane = self.active_pane
        if not pane.has_text():
            self.notify("Nothing to export yet.", severity="warning")
            return
        self.push_screen(ExportDialog(pane.result(), pane.session_name), self._exported)

    def _exported(self, path: Path | None) -> None:
        if path is not None:
            self.notify(f"Saved {path}", title="Export")

    def action_open_recording(self) -> None:
        self.push_screen(OpenRecordingDialog(), self._open_chosen)

    def _open_chosen(self, path: Path | None) -> None:
        if path is not None:
            self.query_one("#panes", TabbedContent).active = "file"
            self.file_pane.open_recording(path)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        mic, file = self.mic_pane, self.file_pane
        commands = [
            ("Record", "Record from the microphone, or resume", mic.action_record),
            ("Pause recording", "Pause the microphone", mic.action_pause),
            ("Stop recording", "Stop and make the text final", mic.action_stop),
            ("Find inputs", "Look for audio input devices again", mic.action_find_inputs),
            ("Open recording", "Transcribe and play a file", self.action_open_recording),
            ("Play/Pause", "Play or pause the recording", file.action_toggle_play),
            ("Back 5 s", "Skip back in the recording", lambda: file.action_skip(-5)),
            ("Forward 5 s", "Skip ahead in the recording", lambda: file.action_skip(5)),
            ("Export", "Save the transcript as SRT, VTT, JSON or TXT", self.action_export),
            ("Mic pane", "Show the microphone", lambda: self.action_show_pane("mic")),
            ("File pane", "Show the recording", lambda: self.action_show_pane("file")),
        ]
        for title, help_text, callback in commands:
            yield SystemCommand(title, help_text, callback)

    # -- quitting --------------------------------------------------------------------------
    async def action_quit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        if self.engine_owner is not None:
            self.notify("Making the last words final…", timeout=SHUTDOWN_SECONDS)
        await asyncio.to_thread(self._shut_down, SHUTDOWN_SECONDS)
        self.exit(0)

    def on_unmount(self) -> None:
        if not self._quitting:  # ended some other way: still stop the threads, close sessions
            self._quitting = True
            self._shut_down(timeout=2.0)

    def _shut_down(self, timeout: float) -> None:
        for pane in (self.mic_pane, self.file_pane):
            try:
                pane.shut_down(timeout)
            except Exception:  # noqa: BLE001 - quitting goes on; the other pane still closes
                pass


def main(args: list[str]) -> int:
    try:
        options = parse_app_args(args)
    except AppUsageError as error:
        print(f"parakeet-tui: {error} (see `parakeet-tui --help`)", file=sys.stderr)
        return 2
    result = ParakeetApp(options).run()
    code = result if isinstance(result, int) else 0
    # Sessions are closed and the terminal restored by now. Skip the interpreter's teardown:
    # MLX's native threads, used from the engine thread, can abort it at exit ("terminate
    # called without an active exception"), which would turn a clean quit into exit code 134.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
