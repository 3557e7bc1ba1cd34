"""Where playback is in a recording: `01:23 ━━━━●─────── 05:00`; a click seeks.

The part of the recording already transcribed is drawn brighter than the rest.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from ..time_format import clock


class SeekBar(Widget):
    COMPONENT_CLASSES = {
        "seek-bar--played",
        "seek-bar--transcribed",
        "seek-bar--pending",
        "seek-bar--head",
        "seek-bar--time",
    }

    position: reactive[float] = reactive(0.0)
    duration: reactive[float] = reactive(0.0)
    transcribed: reactive[float] = reactive(0.0)

    class Seeked(Message):
        def __init__(self, seek_bar: SeekBar, seconds: float) -> None:
            super().__init__()
            self.seek_bar = seek_bar
            self.seconds = seconds

        @property
        def control(self) -> SeekBar:
            return self.seek_bar

    def _labels(self) -> tuple[str, str]:
        return f"{clock(self.position)} ", f" {clock(self.duration)}"

    def _track_width(self, width: int) -> int:
        left, right = self._labels()
        return max(3, width - len(left) - len(right))

    def render(self) -> Text:
        left, right = self._labels()
        width = self._track_width(self.content_region.width or self.size.width)
        duration = self.duration or 1.0
        head = min(width - 1, round(self.position / duration * (width - 1)))
        done = min(width, round(self.transcribed / duration * width))
        text = Text(no_wrap=True, end="")
        text.append(left, self.get_component_rich_style("seek-bar--time"))
        text.append("━" * head, self.get_component_rich_style("seek-bar--played"))
        text.append("●", self.get_component_rich_style("seek-bar--head"))
        after_head = width - head - 1
        transcribed = max(0, min(after_head, done - head - 1))
        text.append("─" * transcribed, self.get_component_rich_style("seek-bar--transcribed"))
        text.append(
            "─" * (after_head - transcribed), self.get_component_rich_style("seek-bar--pending")
        )
        text.append(right, self.get_component_rich_style("seek-bar--time"))
        return text

    def on_click(self, event: events.Click) -> None:
        left, _ = self._labels()
        width = self._track_width(self.content_region.width or self.size.width)
        x = event.x - len(left)
        if self.duration <= 0 or not 0 <= x < width:
            return
        self.post_message(self.Seeked(self, x / max(1, width - 1) * self.duration))
