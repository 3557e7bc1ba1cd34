"""o: open another recording in the File pane."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class OpenRecordingDialog(ModalScreen["Path | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="open-dialog", classes="dialog"):
            yield Label("Open a recording", classes="dialog-title")
            yield Input(placeholder="path/to/recording.mp3", id="open-path")
            yield Label("", id="open-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Open", id="open-confirm", variant="primary")
                yield Button("Cancel", id="open-cancel")

    def on_mount(self) -> None:
        self.query_one("#open-error").display = False
        self.query_one(Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#open-confirm")
    def action_open(self) -> None:
        text = self.query_one(Input).value.strip()
        path = Path(text).expanduser()
        if text and path.is_file():
            self.dismiss(path)
            return
        error = self.query_one("#open-error", Label)
        error.update(f"{text}: no such file" if text else "Enter the path of a recording.")
        error.display = True

    @on(Button.Pressed, "#open-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
