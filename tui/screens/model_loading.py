"""Loading the model: download progress while huggingface-hub fetches it, errors in one line.

The load runs on a worker thread; its progress callbacks arrive on that thread (or the
hub's) and reach the screen through call_from_thread.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, ProgressBar

from asr import ModelError
from asr.threads import release_thread_streams

from ..model_loading import DownloadProgress, load_model, model_label


class ModelLoadingScreen(ModalScreen["BaseParakeet | None"]):
    """Dismissed with the model, or with None when the user goes on without one."""

    BINDINGS = [Binding("escape", "without_model", "Continue without a model", show=False)]

    def __init__(self, model_id: str) -> None:
        super().__init__(id="model-loading")
        self.model_id = model_id
        self.failed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="model-loading-dialog", classes="dialog"):
            yield Label(f"Loading {model_label(self.model_id)}", classes="dialog-title")
            yield Label("Looking for the model…", id="model-loading-detail")
            yield ProgressBar(id="model-loading-progress", show_eta=False)
            yield Label("", id="model-loading-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Continue without a model", id="without-model")
                yield Button("Quit", id="quit", variant="error")

    def on_mount(self) -> None:
        self.query_one("#model-loading-error").display = False
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            self._load_model()
        finally:
            release_thread_streams()

    def _load_model(self) -> None:
        try:
            model = load_model(self.model_id, on_progress=self._progress_from_thread)
        except ModelError as error:
            self.app.call_from_thread(self._failed, str(error))
            return
        except Exception as error:  # noqa: BLE001 - anything else is still one line here
            self.app.call_from_thread(self._failed, f"{type(error).__name__}: {error}")
            return
        self.app.call_from_thread(self.dismiss, model)

    def _progress_from_thread(self, progress: DownloadProgress) -> None:
        self.app.call_from_thread(self._show_progress, progress)

    def _show_progress(self, progress: DownloadProgress) -> None:
        bar = self.query_one(ProgressBar)
        megabytes = progress.downloaded / 1e6
        if progress.total:
            bar.update(total=progress.total, progress=progress.downloaded)
            detail = f"Downloading {progress.filename}: {megabytes:.0f} of "
            detail += f"{progress.total / 1e6:.0f} MB"
        else:
            bar.update(total=None)
            detail = f"Downloading {progress.filename}: {megabytes:.0f} MB"
        self.query_one("#model-loading-detail", Label).update(detail)

    def _failed(self, message: str) -> None:
        self.failed = True
        self.query_one(ProgressBar).display = False
        self.query_one("#model-loading-detail", Label).update("The model could not be loaded.")
        error = self.query_one("#model-loading-error", Label)
        error.update(message.strip().splitlines()[0] if message.strip() else "unknown error")
        error.display = True
        self.query_one("#quit", Button).focus()

    @on(Button.Pressed, "#without-model")
    def action_without_model(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#quit")
    def _quit(self) -> None:
        self.app.exit(return_code=1)
