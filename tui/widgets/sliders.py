"""A slider for whole numbers: `Label ━━━━●──── 256`; +/- (or left/right) and the mouse."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


@dataclass(frozen=True)
class _Layout:
    label: str
    track_start: int
    track_width: int
    value_text: str


class Slider(Widget, can_focus=True):
    COMPONENT_CLASSES = {
        "slider--label",
        "slider--filled",
        "slider--empty",
        "slider--knob",
        "slider--value",
    }
    BINDINGS = [
        Binding("plus,equals_sign,right", "increase", "More"),
        Binding("minus,left", "decrease", "Less"),
        Binding("pageup", "increase(10)", "Much more", show=False),
        Binding("pagedown", "decrease(10)", "Much less", show=False),
        Binding("home", "minimum", "Minimum", show=False),
        Binding("end", "maximum", "Maximum", show=False),
    ]

    value: reactive[int] = reactive(0)

    class Changed(Message):
        def __init__(self, slider: Slider, value: int) -> None:
            super().__init__()
            self.slider = slider
            self.value = value

        @property
        def control(self) -> Slider:
            return self.slider

    def __init__(
        self,
        label: str,
        *,
        minimum: int,
        maximum: int,
        step: int = 1,
        value: int,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.label = label
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.step = max(1, step)
        self.set_reactive(Slider.value, self._clamp(value))

    def _clamp(self, value: int) -> int:
        return max(self.minimum, min(self.maximum, int(value)))

    def validate_value(self, value: int) -> int:
        return self._clamp(value)

    def watch_value(self, old: int, new: int) -> None:
        if old != new:
            self.post_message(self.Changed(self, new))

    def set_range(self, minimum: int, maximum: int) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.value = self._clamp(self.value)
        self.refresh()

    def action_increase(self, steps: int = 1) -> None:
        self.value = self._clamp(self.value + steps * self.step)

    def action_decrease(self, steps: int = 1) -> None:
        self.value = self._clamp(self.value - steps * self.step)

    def action_minimum(self) -> None:
        self.value = self.minimum

    def action_maximum(self) -> None:
        self.value = self.maximum

    # -- drawing ---------------------------------------------------------------------------
    def _layout(self, width: int) -> _Layout:
        label = f"{self.label} "
        value_text = f" {self.value:>{len(str(self.maximum))}}"
        track_width = max(3, width - len(label) - len(value_text))
        return _Layout(label, len(label), track_width, value_text)

    def _fraction(self) -> float:
        span = self.maximum - self.minimum
        return (self.value - self.minimum) / span if span else 0.0

    def render(self) -> Text:
        layout = self._layout(self.content_region.width or self.size.width)
        knob = round(self._fraction() * (layout.track_width - 1))
        text = Text(no_wrap=True, end="")
        text.append(layout.label, self.get_component_rich_style("slider--label"))
        text.append("━" * knob, self.get_component_rich_style("slider--filled"))
        text.append("●", self.get_component_rich_style("slider--knob"))
        text.append(
            "─" * (layout.track_width - knob - 1), self.get_component_rich_style("slider--empty")
        )
        text.append(layout.value_text, self.get_component_rich_style("slider--value"))
        return text

    def on_click(self, event: events.Click) -> None:
        layout = self._layout(self.content_region.width or self.size.width)
        x = event.x - layout.track_start
        if not 0 <= x < layout.track_width:
            return
        fraction = x / max(1, layout.track_width - 1)
        raw = self.minimum + fraction * (self.maximum - self.minimum)
        steps = round((raw - self.minimum) / self.step)
        self.value = self._clamp(self.minimum + steps * self.step)
        self.focus()
