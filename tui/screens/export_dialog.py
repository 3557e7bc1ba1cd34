"""ctrl+s: the transcript to SRT, VTT, JSON or TXT, written atomically.

The file name starts as `<session name>.srt` in the working directory and follows the
chosen format until the user edits it. Errors stay in the dialog, in one line.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet

from asr.export import FORMATS, write_result
from asr.results import AlignedResult

from ..session_store import default_export_name

FORMAT_LABELS = {  # in the order shown
    "srt": "SRT",
    "vtt": "VTT",
    "json": "JSON",
    "txt": "TXT",
}


class ExportDialog(ModalScreen["Path | None"]):
    """Dismissed with the path written, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, result: AlignedResult, session_name: str, *, fmt: str = "srt") -> None:
        super().__init__(id="export")
        self.result = result
        self.session_name = session_name
        self.fmt = fmt

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog", classes="dialog"):
            yield Label("Export the transcript", classes="dialog-title")
            with RadioSet(id="export-format"):
                for fmt, label in FORMAT_LABELS.items():
                    yield RadioButton(label, value=fmt == self.fmt, name=fmt)
            yield Input(self._default_name(self.fmt), id="export-path")
            yield Label("", id="export-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", id="export-save", variant="primary")
                yield Button("Cancel", id="export-cancel")

    def _default_name(self, fmt: str) -> str:
        """`<session name>.<fmt>`: relative, so it lands in the working directory."""
        return default_export_name(self.session_name, fmt, Path(".")).name

    def on_mount(self) -> None:
        self.query_one("#export-error").display = False
        self.query_one("#export-path", Input).focus()

    @on(RadioSet.Changed, "#export-format")
    def _format_changed(self, event: RadioSet.Changed) -> None:
        fmt = event.pressed.name or "srt"
        path_input = self.query_one("#export-path", Input)
        path = Path(path_input.value.strip())
        # the name follows the format while it still ends in a format's extension
        if path.suffix.lower().lstrip(".") in FORMATS:
            path_input.value = str(path.with_suffix(f".{fmt}"))
        self.fmt = fmt

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export-save")
    def action_export(self) -> None:
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            self._show_error("Enter a file name.")
            return
        path = Path(text).expanduser()
        if path.is_dir():
            path = default_export_name(self.session_name, self.fmt, path)
        self.query_one("#export-save", Button).disabled = True
        self._write(path, self.fmt)

    @work(thread=True, exclusive=True)
    def _write(self, path: Path, fmt: str) -> None:
        try:
            if not path.parent.is_dir():
                raise OSError(f"no folder {path.parent}")
            written = write_result(self.result, path, fmt)
        except (OSError, ValueError) as error:
            self.app.call_from_thread(self._failed, str(error))
            return
        self.app.call_from_thread(self.dismiss, written)

    def _failed(self, message: str) -> None:
        self.query_one("#export-save", Button).disabled = False
        self._show_error(message)

    def _show_error(self, message: str) -> None:
        error = self.query_one("#export-error", Label)
        error.update(message.strip().splitlines()[0] if message.strip() else "failed")
        error.display = True

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
