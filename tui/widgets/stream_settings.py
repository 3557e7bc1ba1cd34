"""Context (left, right) and depth of the running stream, as three sliders.

Holding + moves a slider many times a second, and every change restarts the stream's
encoder state, so a change is announced only once the sliders have been still a moment.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.timer import Timer

from ..messages import StreamSettingsChanged
from .sliders import Slider

SETTLE_SECONDS = 0.4
MAX_LEFT_CONTEXT = 1024
MAX_RIGHT_CONTEXT = 256


class StreamSettings(Horizontal):
    def __init__(
        self,
        context: tuple[int, int],
        depth: int,
        *,
        max_depth: int = 24,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self._initial = (context, depth)
        self._max_depth = max(max_depth, depth)
        self._announce_timer: Timer | None = None
        self._announced = (context, depth)

    def compose(self) -> ComposeResult:
        (left, right), depth = self._initial
        yield Slider(
            "Left context",
            minimum=1,
            maximum=max(MAX_LEFT_CONTEXT, left),
            step=16,
            value=left,
            id="left-context",
        )
        yield Slider(
            "Right context",
            minimum=0,
            maximum=max(MAX_RIGHT_CONTEXT, right),
            step=4,
            value=right,
            id="right-context",
        )
        yield Slider("Depth", minimum=1, maximum=self._max_depth, value=depth, id="depth")

    @property
    def context(self) -> tuple[int, int]:
        return (
            self.query_one("#left-context", Slider).value,
            self.query_one("#right-context", Slider).value,
        )

    @property
    def depth(self) -> int:
        return self.query_one("#depth", Slider).value

    def set_max_depth(self, layers: int) -> None:
        """The model's encoder layers: depth beyond them means the same as all of them."""
        self.query_one("#depth", Slider).set_range(1, max(1, layers))

    def on_slider_changed(self, event: Slider.Changed) -> None:
        event.stop()
        if self._announce_timer is not None:
            self._announce_timer.stop()
        self._announce_timer = self.set_timer(SETTLE_SECONDS, self._announce)

    def _announce(self) -> None:
        self._announce_timer = None
        settings = (self.context, self.depth)
        if settings != self._announced:
            self._announced = settings
            self.post_message(StreamSettingsChanged(*settings))
