"""The microphone's loudness as a bar: -60 dBFS (empty) to 0 dBFS (full)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

FLOOR_DB = -60.0
LOUD_DB = -12.0  # above this the bar warns of clipping
QUIET_DB = -40.0  # below this speech is hard to hear


class LevelMeter(Widget):
    COMPONENT_CLASSES = {
        "level-meter--quiet",
        "level-meter--good",
        "level-meter--loud",
        "level-meter--empty",
        "level-meter--value",
    }

    level_db: reactive[float | None] = reactive(None)

    def render(self) -> Text:
        value = " --- dB" if self.level_db is None else f" {self.level_db:4.0f} dB"
        width = max(1, (self.content_region.width or self.size.width) - len(value))
        level = FLOOR_DB if self.level_db is None else max(FLOOR_DB, min(0.0, self.level_db))
        filled = round((level - FLOOR_DB) / -FLOOR_DB * width)
        if level >= LOUD_DB:
            kind = "loud"
        elif level >= QUIET_DB:
            kind = "good"
        else:
            kind = "quiet"
        text = Text(no_wrap=True, end="")
        text.append("▮" * filled, self.get_component_rich_style(f"level-meter--{kind}"))
        text.append("▯" * (width - filled), self.get_component_rich_style("level-meter--empty"))
        text.append(value, self.get_component_rich_style("level-meter--value"))
        return text
