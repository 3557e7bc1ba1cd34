"""What `parakeet-tui transcribe` prints: progress, summaries and one-line errors.

Quiet when stdout is not a terminal (a script or a pipe), unless --verbose; errors always go
to stderr. On a terminal a progress bar shows each file's chunks as they finish.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

ProgressCallback = Callable[[int, int], None]


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class Reporter:
    def __init__(
        self,
        verbose: bool = False,
        *,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        self.interactive = _isatty(self.out) if interactive is None else interactive
        self.verbose = verbose
        self.quiet = not (self.interactive or verbose)
        self._console = (
            Console(file=self.out, force_terminal=True, highlight=False)
            if self.interactive
            else None
        )
        self._live: Progress | None = None

    # -------------------------------------------------------------------- lines

    def info(self, text: str) -> None:
        """A line for a person watching: summaries. Not printed when quiet."""
        if not self.quiet:
            self._print(text)

    def detail(self, text: str) -> None:
        """A line only --verbose prints."""
        if self.verbose:
            self._print(text)

    def warning(self, text: str) -> None:
        """A line on stderr about something the run goes on after."""
        print(f"warning: {text}", file=self.err, flush=True)

    def error(self, text: str) -> None:
        line = f"error: {text}"
        if self._live is not None and _isatty(self.err):
            # through the live display: a line written beside it would be overdrawn
            self._live.console.print(Text(line, style="bold red"), soft_wrap=True)
        else:
            print(line, file=self.err, flush=True)

    def _print(self, text: str) -> None:
        if self._console is not None:
            self._console.print(Text(text), soft_wrap=True)
        else:
            print(text, file=self.out, flush=True)

    # -------------------------------------------------------------------- progress

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner with text while the block runs (on a terminal); --verbose logs it."""
        self.detail(text)
        if self._console is None or self.verbose:
            yield
            return
        with self._console.status(text):
            yield

    @contextmanager
    def progress(self) -> Iterator[None]:
        """The live progress display, for the whole run, on a terminal."""
        if self._console is None:
            yield
            return
        live = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        with live:
            self._live = live
            try:
                yield
            finally:
                self._live = None

    @contextmanager
    def track(self, label: str) -> Iterator[ProgressCallback]:
        """A callback(done, total) for one file's progress: a bar on a terminal, a line per
        chunk with --verbose elsewhere."""
        live = self._live
        if live is None:
            yield self._log_progress(label) if self.verbose else _ignore
            return
        task = live.add_task(Text(label).markup, total=None)
        try:
            yield lambda done, total: live.update(task, completed=done, total=total)
        finally:
            live.remove_task(task)

    def _log_progress(self, label: str) -> ProgressCallback:
        def log(done: int, total: int) -> None:
            if 0 < done < total:  # the end is reported by the summary
                self._print(f"{label}: {done / total:.0%}")

        return log


def _ignore(done: int, total: int) -> None:
    pass
