"""One line about the engine: model, MLX backend, compute per audio second, lag, drops."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from asr.engine import Progress

SMOOTHING = 0.3  # weight of the newest update in the compute figure


class StatusBar(Widget):
    model_label: reactive[str] = reactive("no model")
    backend: reactive[str] = reactive("")
    compute_per_second: reactive[float | None] = reactive(None)
    lag_seconds: reactive[float | None] = reactive(None)
    dropped_seconds: reactive[float | None] = reactive(None)
    activity: reactive[str] = reactive("")

    def record(self, progress: Progress) -> None:
        if progress.update_audio_seconds > 0:
            ratio = progress.compute_seconds / progress.update_audio_seconds
            previous = self.compute_per_second
            self.compute_per_second = (
                ratio if previous is None else previous + SMOOTHING * (ratio - previous)
            )
        self.lag_seconds = progress.lag_seconds
        self.dropped_seconds = progress.dropped_seconds

    def reset_figures(self) -> None:
        self.compute_per_second = None
        self.lag_seconds = None
        self.dropped_seconds = None

    def render(self) -> Text:
        def seconds(value: float | None, digits: int = 1) -> str:
            return "–" if value is None else f"{value:.{digits}f} s"

        parts = [
            self.model_label,
            f"MLX {self.backend}" if self.backend else "MLX",
            f"compute {seconds(self.compute_per_second, 2)} per audio s",
            f"lag {seconds(self.lag_seconds)}",
            f"dropped {seconds(self.dropped_seconds)}",
        ]
        if self.activity:
            parts.append(self.activity)
        return Text(" · ".join(parts), no_wrap=True, overflow="ellipsis")
