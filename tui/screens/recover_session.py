"""At start: sessions that never closed (a crash, a closed terminal), offered for recovery.

Recover shows the chosen session's text in its pane (a recording's goes on transcribing
from where it stopped); Discard deletes it; Later leaves them all for the next start.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList
from textual.widgets.option_list import Option

from ..session_store import SessionError, SessionInfo, SessionStore
from ..time_format import clock


def describe(info: SessionInfo) -> str:
    return (
        f"{info.name}  ·  {info.started:%Y-%m-%d %H:%M}  ·  "
        f"{clock(info.final_seconds)} transcribed  ·  {info.source}"
    )


class RecoverSessionDialog(ModalScreen["SessionInfo | None"]):
    """Dismissed with the session to recover, or None."""

    BINDINGS = [
        Binding("escape", "later", "Later"),
        Binding("d", "discard", "Discard"),
    ]

    def __init__(self, sessions: list[SessionInfo]) -> None:
        super().__init__(id="recover")
        self.sessions = list(sessions)

    def compose(self) -> ComposeResult:
        with Vertical(id="recover-dialog", classes="dialog"):
            yield Label("Recover an unfinished session?", classes="dialog-title")
            yield Label(
                "These sessions did not close (the app crashed or the terminal closed). "
                "Their final text is safe on disk.",
                id="recover-explanation",
            )
            yield OptionList(*self._options(), id="recover-sessions")
            yield Label("", id="recover-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Recover", id="recover-session", variant="primary")
                yield Button("Discard", id="discard-session", variant="error")
                yield Button("Later", id="recover-later")

    def _options(self) -> list[Option]:
        return [Option(describe(info)) for info in self.sessions]

    def on_mount(self) -> None:
        self.query_one("#recover-error").display = False
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()

    def _chosen(self) -> SessionInfo | None:
        index = self.query_one(OptionList).highlighted
        return self.sessions[index] if index is not None and self.sessions else None

    @on(OptionList.OptionSelected, "#recover-sessions")
    @on(Button.Pressed, "#recover-session")
    def action_recover(self) -> None:
        chosen = self._chosen()
        if chosen is not None:
            self.dismiss(chosen)

    @on(Button.Pressed, "#discard-session")
    def action_discard(self) -> None:
        chosen = self._chosen()
        if chosen is not None:
            self._discard(chosen)

    @work(thread=True, exclusive=True)
    def _discard(self, info: SessionInfo) -> None:
        try:
            SessionStore.open(info.path).discard()
        except SessionError as error:
            self.app.call_from_thread(self._show_error, str(error))
            return
        self.app.call_from_thread(self._discarded, info)

    def _discarded(self, info: SessionInfo) -> None:
        self.sessions.remove(info)
        if not self.sessions:
            self.dismiss(None)
            return
        options = self.query_one(OptionList)
        options.set_options(self._options())
        options.highlighted = 0

    def _show_error(self, message: str) -> None:
        error = self.query_one("#recover-error", Label)
        error.update(message)
        error.display = True

    @on(Button.Pressed, "#recover-later")
    def action_later(self) -> None:
        self.dismiss(None)
