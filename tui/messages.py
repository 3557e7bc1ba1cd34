"""Messages between the app's threads and widgets.

Engine messages are posted from the engine thread to the pane that owns the session; they
carry the bridge they came from, so that a pane can ignore a session it has already left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from asr.engine import Progress
from asr.results import AlignedToken

if TYPE_CHECKING:
    from .engine_bridge import EngineBridge


class EngineMessage(Message):
    def __init__(self, bridge: EngineBridge) -> None:
        super().__init__()
        self.bridge = bridge


class TokensFinalized(EngineMessage):
    """Tokens became final: they never change again."""

    def __init__(self, bridge: EngineBridge, tokens: list[AlignedToken]) -> None:
        super().__init__(bridge)
        self.tokens = tokens


class DraftChanged(EngineMessage):
    """The draft tokens, replacing the previous draft."""

    def __init__(self, bridge: EngineBridge, tokens: list[AlignedToken]) -> None:
        super().__init__(bridge)
        self.tokens = tokens


class EngineProgressed(EngineMessage):
    def __init__(self, bridge: EngineBridge, progress: Progress) -> None:
        super().__init__(bridge)
        self.progress = progress


class EngineFailed(EngineMessage):
    def __init__(self, bridge: EngineBridge, message: str) -> None:
        super().__init__(bridge)
        self.message = message


class EngineStopped(EngineMessage):
    """The engine thread ended; everything it heard is final and saved."""


class AudioLevel(Message):
    """The loudness of the latest microphone audio, in dBFS, and the seconds heard so far."""

    def __init__(self, level_db: float, heard_seconds: float) -> None:
        super().__init__()
        self.level_db = level_db
        self.heard_seconds = heard_seconds


class LiveSourceEnded(Message):
    """The live source has no more audio (a recording standing in for the microphone)."""


class StreamSettingsChanged(Message):
    """The user settled on new context and depth for the running stream."""

    def __init__(self, context: tuple[int, int], depth: int) -> None:
        super().__init__()
        self.context = context
        self.depth = depth


class SessionChanged(Message):
    """A pane's session started, ended or was recovered (the title and exports follow it)."""
