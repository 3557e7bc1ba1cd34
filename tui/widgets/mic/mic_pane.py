"""The Mic pane: pick an input, record, pause, stop; the live transcript below.

Audio blocks arrive on the source's thread and go straight to the engine; the pane hears
about them only through throttled level messages, so a fast source cannot flood the UI.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Label, Select, Static

from asr.alignment import SentenceConfig

from ...audio_sources import (
    AudioSourceError,
    FileSource,
    InputDevice,
    LiveSource,
    MicSource,
    block_level_db,
    list_input_devices,
)
from ...messages import AudioLevel, LiveSourceEnded
from ...time_format import clock
from ..level_meter import LevelMeter
from ..transcript import Transcript
from ..transcript_pane import TranscriptPane

LEVEL_INTERVAL = 0.05  # seconds between level messages
STAND_IN = -1  # the Select value of the --mic-from recording

NO_DEVICE = (
    "No audio input device found. Connect a microphone and press i to look again, "
    "or start the app with --mic-from FILE to use a recording instead."
)


class MicPane(TranscriptPane):
    DEFAULT_SESSION_NAME = "microphone"
    BINDINGS = [
        Binding("r", "record", "Record/Resume"),
        Binding("p", "pause", "Pause"),
        Binding("s", "stop", "Stop"),
        Binding("i", "find_inputs", "Find inputs"),
    ]

    def __init__(
        self,
        sentence_config: SentenceConfig,
        *,
        mic_from: Path | None = None,
        mic_speed: float = 1.0,
        id: str | None = None,
    ) -> None:
        super().__init__(sentence_config, id=id)
        self.mic_from = mic_from
        self.mic_speed = mic_speed
        self.source: LiveSource | None = None
        self.state = "idle"  # idle, starting, recording, paused, stopping
        self._heard_seconds = 0.0
        self._last_level_at = 0.0
        self._source_lock = threading.Lock()
        self.has_input = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="mic-controls"):
            yield Select[int]([], prompt="Input device", id="input-device")
            yield Button("Record", id="mic-record", variant="success", disabled=True)
            yield Button("Pause", id="mic-pause", disabled=True)
            yield Button("Stop", id="mic-stop", variant="error", disabled=True)
            yield Label("00:00", id="mic-elapsed")
            yield LevelMeter(id="mic-level")
        yield Static("", id="mic-notice")
        yield Transcript(
            placeholder="Press r to record; the transcript appears here.", id="mic-transcript"
        )

    def on_mount(self) -> None:
        self.query_one("#mic-notice").display = False
        self.action_find_inputs()

    # -- inputs ----------------------------------------------------------------------------
    def action_find_inputs(self) -> None:
        if self.mic_from is not None:
            self._show_inputs([])
        else:
            self._find_inputs()

    @work(thread=True, exclusive=True, group="find-inputs")
    def _find_inputs(self) -> None:
        devices = list_input_devices()  # PortAudio can take a while: not on the UI thread
        self.app.call_from_thread(self._show_inputs, devices)

    def _show_inputs(self, devices: list[InputDevice]) -> None:
        select = self.query_one("#input-device", Select)
        notice = self.query_one("#mic-notice", Static)
        if self.mic_from is not None:
            select.set_options([(f"{self.mic_from.name} (as mic)", STAND_IN)])
            select.value = STAND_IN
            notice.display = False
        elif devices:
            select.set_options([(device.name, device.index) for device in devices])
            default = next((d for d in devices if d.is_default), devices[0])
            select.value = default.index
            notice.display = False
        else:
            select.set_options([])
            notice.update(NO_DEVICE)
            notice.display = True
        self.has_input = self.mic_from is not None or bool(devices)
        self._update_controls()

    def _update_controls(self) -> None:
        ready = self.has_input and self.parakeet.model is not None
        record = self.query_one("#mic-record", Button)
        record.label = "Resume" if self.state == "paused" else "Record"
        record.disabled = not ready or self.state not in ("idle", "paused")
        self.query_one("#mic-pause", Button).disabled = self.state != "recording"
        self.query_one("#mic-stop", Button).disabled = self.state not in ("recording", "paused")
        self.query_one("#input-device", Select).disabled = self.state != "idle"

    def model_ready(self) -> None:
        self._update_controls()

    # -- record, pause, stop ---------------------------------------------------------------
    @on(Button.Pressed, "#mic-record")
    def action_record(self) -> None:
        if self.state == "paused":
            self._resume()
            return
        if self.state != "idle":
            return
        app = self.parakeet
        if app.model is None:
            app.notify("The model is not loaded yet.", severity="warning")
            return
        if not self.has_input:
            app.notify(NO_DEVICE, severity="warning", timeout=8)
            return
        if app.engine_owner not in (None, self):
            app.notify(
                "The engine is busy transcribing the recording; record when it is done.",
                severity="warning",
            )
            return
        self.state = "starting"
        store = app.create_session(self._new_session_name(), source=self._source_label())
        bridge = self.start_bridge(store)
        self._heard_seconds = 0.0
        self.query_one("#mic-elapsed", Label).update("00:00")
        self._open_source(bridge.sample_rate)
        self._update_controls()

    def _new_session_name(self) -> str:
        return datetime.now().strftime("mic-%Y-%m-%d-%H%M%S")

    def _source_label(self) -> str:
        if self.mic_from is not None:
            return f"{self.mic_from} (as microphone)"
        select = self.query_one("#input-device", Select)
        return f"microphone {select.value}" if select.value != Select.BLANK else "microphone"

    @work(thread=True, exclusive=True, group="mic-source")
    def _open_source(self, sample_rate: int) -> None:
        # Decoding a stand-in recording or opening a device both take time: a worker thread.
        try:
            if self.mic_from is not None:
                source: LiveSource = FileSource(
                    self.mic_from,
                    speed=self.mic_speed,
                    sample_rate=sample_rate,
                    on_end=lambda: self.post_message(LiveSourceEnded()),
                )
            else:
                device = self.app.call_from_thread(self._chosen_device)
                source = MicSource(device, sample_rate=sample_rate)
            with self._source_lock:
                self.source = source
            source.start(self._on_block)
        except AudioSourceError as error:
            self.app.call_from_thread(self._source_failed, str(error))
            return
        self.app.call_from_thread(self._source_started)

    def _chosen_device(self) -> int | None:
        value = self.query_one("#input-device", Select).value
        return None if value in (Select.BLANK, STAND_IN) else int(value)

    def _source_started(self) -> None:
        if self.state == "starting":
            self.state = "recording"
        self._update_controls()

    def _source_failed(self, message: str) -> None:
        self.app.notify(message, title="Microphone", severity="error", timeout=8)
        self.source = None
        self.state = "stopping"
        self._stop_engine()
        self._update_controls()

    def _on_block(self, block) -> None:
        """The source's thread: hand the audio on; tell the UI about it now and then."""
        bridge = self.bridge
        if bridge is None:
            return
        bridge.feed(block)
        self._heard_seconds += len(block) / bridge.sample_rate
        now = time.monotonic()
        if now - self._last_level_at >= LEVEL_INTERVAL:
            self._last_level_at = now
            self.post_message(AudioLevel(block_level_db(block), self._heard_seconds))

    def on_audio_level(self, message: AudioLevel) -> None:
        message.stop()
        if self.state in ("recording", "starting"):
            self.query_one(LevelMeter).level_db = message.level_db
        self.query_one("#mic-elapsed", Label).update(clock(message.heard_seconds), layout=False)

    @on(Button.Pressed, "#mic-pause")
    def action_pause(self) -> None:
        if self.state != "recording" or self.source is None or self.bridge is None:
            return
        try:
            self.source.pause()
        except AudioSourceError as error:
            self.app.notify(str(error), severity="error")
            return
        self.bridge.pause()  # makes the drafts final
        self.state = "paused"
        self.query_one(LevelMeter).level_db = None
        self._update_controls()

    def _resume(self) -> None:
        if self.source is None or self.bridge is None:
            return
        self.bridge.resume()
        try:
            self.source.resume()
        except AudioSourceError as error:
            self.app.notify(str(error), severity="error")
            return
        self.state = "recording"
        self._update_controls()

    @on(Button.Pressed, "#mic-stop")
    def action_stop(self) -> None:
        if self.state not in ("recording", "paused", "starting"):
            return
        self.state = "stopping"
        with self._source_lock:
            source, self.source = self.source, None
        if source is not None:
            source.stop()
        self.query_one(LevelMeter).level_db = None
        self._stop_engine()
        self._update_controls()

    def on_live_source_ended(self, message: LiveSourceEnded) -> None:
        message.stop()
        self.app.notify(f"{self.mic_from.name if self.mic_from else 'The input'} ended.")
        self.action_stop()

    @work(thread=True, group="mic-stop")
    def _stop_engine(self) -> None:
        bridge = self.bridge
        if bridge is not None:
            bridge.stop(timeout=None)

    def engine_stopped(self) -> None:
        self.state = "idle"
        self._update_controls()

    def shut_down(self, timeout: float) -> None:
        with self._source_lock:
            source, self.source = self.source, None
        if source is not None:
            source.stop()
        super().shut_down(timeout)
