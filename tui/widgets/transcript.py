"""The transcript view: one row per sentence, `[mm:ss]` before it, drafts dimmed.

A Line API widget: each row is wrapped once into strips and cached, and an update re-wraps
only the rows it replaced (the tail), so a long session scrolls and updates as fast as a
short one. It follows the newest line while the view is at the bottom; scrolling up stops
that, and reaching the bottom again (End) resumes it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..live_transcript import TranscriptRow
from ..time_format import clock


class Transcript(ScrollView, can_focus=True, inherit_bindings=False):
    """`seekable`: Enter and clicks choose a sentence (a recording's; the microphone's
    cannot be played)."""

    COMPONENT_CLASSES = {
        "transcript--time",
        "transcript--draft",
        "transcript--cursor",
        "transcript--playing",
        "transcript--placeholder",
    }
    BINDINGS = [
        Binding("up", "cursor_up", "Previous sentence", show=False),
        Binding("down", "cursor_down", "Next sentence", show=False),
        Binding("home", "first", "First sentence", show=False),
        Binding("end", "last", "Newest sentence", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("enter", "choose", "Jump here"),
    ]

    cursor: reactive[int | None] = reactive(None, always_update=True)
    playing: reactive[int | None] = reactive(None)

    class SentenceChosen(Message):
        """Enter or a click on a sentence."""

        def __init__(self, transcript: Transcript, index: int, start: float) -> None:
            super().__init__()
            self.transcript = transcript
            self.index = index
            self.start = start

        @property
        def control(self) -> Transcript:
            return self.transcript

    def __init__(
        self,
        placeholder: str = "",
        *,
        seekable: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._placeholder = placeholder
        self.seekable = seekable
        self._rows: list[TranscriptRow] = []
        self._row_strips: list[list[Strip]] = []
        self._first_lines: list[int] = []  # line where each row starts
        self._line_count = 0
        self._wrap_width = 0
        self._base_style = Style()

    # -- content ---------------------------------------------------------------------------
    @property
    def rows(self) -> Sequence[TranscriptRow]:
        return self._rows

    @property
    def placeholder(self) -> str:
        return self._placeholder

    @placeholder.setter
    def placeholder(self, text: str) -> None:
        self._placeholder = text
        self.refresh()

    def replace_rows_from(self, index: int, rows: Sequence[TranscriptRow]) -> None:
        """Rows from `index` on become `rows` (the rows before stay as they are)."""
        following = self.is_vertical_scroll_end
        index = min(index, len(self._rows))
        del self._rows[index:]
        del self._row_strips[index:]
        del self._first_lines[index:]
        self._line_count = self._first_lines[-1] + len(self._row_strips[-1]) if index else 0
        self._rows.extend(rows)
        self._wrap_rows(index)
        if self.cursor is not None and self.cursor >= len(self._rows):
            self.cursor = len(self._rows) - 1 if self._rows else None
        if following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def clear(self) -> None:
        self.cursor = None
        self.playing = None
        self.replace_rows_from(0, [])

    # -- layout ----------------------------------------------------------------------------
    def _content_width(self) -> int:
        return max(1, self.scrollable_content_region.width)

    def _wrap_rows(self, first: int) -> None:
        width = self._wrap_width
        for index in range(first, len(self._rows)):
            strips = self._render_row(index, self._rows[index], width) if width else []
            self._first_lines.append(self._line_count)
            self._row_strips.append(strips)
            self._line_count += len(strips)
        self._set_virtual_size(Size(width, self._line_count))

    def _set_virtual_size(self, size: Size) -> None:
        # The widget's own size never depends on its content (its scrollbar is always
        # shown), so growing content needs no layout of the screen: a layout on every
        # engine update costs the whole screen's arrangement, tens of milliseconds.
        if size != self.virtual_size:
            self.set_reactive(Transcript.virtual_size, size)
            self._scroll_update(size)
            self.refresh()

    def _rewrap_all(self) -> None:
        self._wrap_width = self._content_width() if self.is_mounted else 0
        self._row_strips.clear()
        self._first_lines.clear()
        self._line_count = 0
        self._wrap_rows(0)

    def _render_row(self, index: int, row: TranscriptRow, width: int) -> list[Strip]:
        console = self.app.console
        prefix = f"[{clock(row.start)}] "
        text = Text(end="", no_wrap=False, overflow="fold")
        text.append(row.final_text)
        if row.draft_text:
            text.append(row.draft_text, self.get_component_rich_style("transcript--draft"))
        text_width = max(1, width - len(prefix))
        options = console.options.update(width=text_width, height=None, no_wrap=False)
        lines = console.render_lines(text, options, pad=False, new_lines=False) or [[]]
        time_style = self.get_component_rich_style("transcript--time")
        meta = {"row": index}
        strips = []
        for number, segments in enumerate(lines):
            head = Segment(prefix, time_style) if number == 0 else Segment(" " * len(prefix))
            strip = Strip([head, *segments]).extend_cell_length(width)
            strips.append(strip.apply_meta(meta))
        return strips

    def on_resize(self, event: events.Resize) -> None:
        if self._content_width() != self._wrap_width:
            following = self.is_vertical_scroll_end
            self._rewrap_all()
            if following:
                self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_mount(self) -> None:
        self._rewrap_all()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted and self._rows:
            self._rewrap_all()

    # -- rendering -------------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        self._base_style = self.rich_style  # once per paint, not once per line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self._content_width()
        base = self._base_style
        line = self.scroll_offset.y + y
        if not self._rows:
            if line == 0 and self._placeholder:
                style = base + self.get_component_rich_style("transcript--placeholder")
                return Strip([Segment(self._placeholder[:width], style)]).extend_cell_length(
                    width, base
                )
            return Strip.blank(width, base)
        if line >= self._line_count:
            return Strip.blank(width, base)
        index = bisect_right(self._first_lines, line) - 1
        strip = self._row_strips[index][line - self._first_lines[index]]
        if index == self.cursor and self.has_focus:
            strip = strip.apply_style(self.get_component_rich_style("transcript--cursor"))
        elif index == self.playing:
            strip = strip.apply_style(self.get_component_rich_style("transcript--playing"))
        return strip.apply_style(base).crop_extend(0, width, base)

    def watch_cursor(self, cursor: int | None) -> None:
        if cursor is not None:
            self._scroll_to_row(cursor)
        self.refresh()

    def watch_playing(self, old: int | None, new: int | None) -> None:
        self.refresh()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def _row_region(self, index: int) -> Region:
        return Region(0, self._first_lines[index], self._wrap_width, len(self._row_strips[index]))

    def _scroll_to_row(self, index: int) -> None:
        if 0 <= index < len(self._first_lines):
            self.scroll_to_region(self._row_region(index), animate=False, immediate=True)

    def show_row(self, index: int) -> None:
        """Scrolls just enough to show a row (the one playing)."""
        self._scroll_to_row(index)

    # -- input -----------------------------------------------------------------------------
    def _start_cursor(self) -> int | None:
        if not self._rows:
            return None
        if self.cursor is not None:
            return self.cursor
        if self.playing is not None:
            return self.playing
        return min(len(self._rows) - 1, bisect_right(self._first_lines, self.scroll_offset.y))

    def _move_cursor(self, delta: int) -> None:
        start = self._start_cursor()
        if start is None:
            return
        if self.cursor is None:
            self.cursor = start
        else:
            self.cursor = max(0, min(len(self._rows) - 1, start + delta))

    def action_cursor_up(self) -> None:
        self._move_cursor(-1)

    def action_cursor_down(self) -> None:
        self._move_cursor(+1)

    def action_first(self) -> None:
        if self._rows:
            self.cursor = 0

    def action_last(self) -> None:
        if self._rows:
            self.cursor = len(self._rows) - 1
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def action_page_up(self) -> None:
        self._move_cursor(-max(1, self.scrollable_content_region.height // 2))

    def action_page_down(self) -> None:
        self._move_cursor(+max(1, self.scrollable_content_region.height // 2))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and not self.seekable:
            return False
        return True

    def action_choose(self) -> None:
        index = self._start_cursor()
        if index is None:
            return
        self.cursor = index
        self.post_message(self.SentenceChosen(self, index, self._rows[index].start))

    def on_click(self, event: events.Click) -> None:
        index = event.style.meta.get("row")
        if index is None or index >= len(self._rows):
            return
        self.focus()
        self.cursor = index
        if self.seekable:
            self.post_message(self.SentenceChosen(self, index, self._rows[index].start))
