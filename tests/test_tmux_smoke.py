"""The installed `parakeet-tui` command in a real terminal: tmux runs it, keys go in, the
screen is read back. A recording stands in for the microphone; the fixture model is small.
The demo (its own model and recording) shows real words."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from app_fixtures import AUDIO, MODEL_DIR
from demo_model import demo_text, normalized_words

from tui.session_store import SessionStore

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(shutil.which("parakeet-tui") is None, reason="parakeet-tui not installed"),
]


class Terminal:
    """One tmux server of our own (its own socket), one window of 120 x 36."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.socket = f"parakeet-smoke-{uuid.uuid4().hex[:8]}"
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "app",
            "-x",
            "120",
            "-y",
            "36",
            "-c",
            str(cwd),
            command,
            env=env,
        )

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "app")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "app", *keys)

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout} s; the screen:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def test_record_export_and_quit_in_a_real_terminal(tmp_path):
    data = tmp_path / "data"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),  # this checkout, whatever the editable install points at
        "PARAKEET_TUI_DATA_DIR": str(data),
        "TERM": "xterm-256color",
    }
    app = (
        f"parakeet-tui --model {MODEL_DIR} --mic-from {AUDIO / 'speech0.wav'} --mic-speed 4"
        " --context 128 8"
    )
    terminal = Terminal(f"sh -c '{app}; echo \"exit code $?\"; sleep 60'", tmp_path, env)
    try:
        # the input list fills in from a worker: the hint may be drawn before it
        screen = terminal.wait_for(
            lambda s: "Press r to record" in s and "speech0.wav (as mic)" in s, "Mic pane"
        )
        assert "Left context" in screen and " 128" in screen
        assert "^s Export" in screen  # the footer lists the bindings
        terminal.keys("r")
        terminal.wait_for(lambda s: "[00:00]" in s, "transcript line")
        terminal.wait_for(lambda s: "speech0.wav ended" in s, "end of the recording")
        terminal.wait_for(lambda s: "compute" in s and "per audio s" in s, "status figures")
        terminal.keys("C-s")
        screen = terminal.wait_for(lambda s: "Export the transcript" in s, "export dialog")
        terminal.keys("Enter")
        terminal.wait_for(lambda s: "Saved " in s, "export notice")
        exports = list(tmp_path.glob("mic-*.srt"))
        assert len(exports) == 1 and exports[0].read_text().startswith("1\n00:00:0")
        terminal.keys("f")
        terminal.wait_for(lambda s: "No recording open" in s, "File pane")
        terminal.keys("C-q")
        screen = terminal.wait_for(lambda s: "exit code" in s, "exit")
        assert "exit code 0" in screen
        assert "Traceback" not in screen
    finally:
        terminal.close()
    assert SessionStore.unfinished(root=data / "sessions") == []


def file_state(screen: str) -> str | None:
    """The File pane's state, at the right of the line naming the recording."""
    for line in screen.splitlines():
        if line.startswith(" recording.flac "):
            return line.removeprefix(" recording.flac ").strip()
    return None


def test_demo_shows_the_recordings_words_in_a_real_terminal(tmp_path):
    """`parakeet-tui --demo`, as a newcomer would run it: the bundled model transcribes the
    bundled recording, and its words are on the screen."""
    data = tmp_path / "data"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PARAKEET_TUI_DATA_DIR": str(data),
        "TERM": "xterm-256color",
    }
    command = "parakeet-tui --demo"
    terminal = Terminal(f"sh -c '{command}; echo \"exit code $?\"; sleep 60'", tmp_path, env)
    reference = set(normalized_words(demo_text()))
    try:
        terminal.wait_for(lambda s: "recording.flac" in s, "File pane")
        screen = terminal.wait_for(
            lambda s: file_state(s) == "transcribed", "the end of transcription", 120
        )
        assert "Recover an unfinished session" not in screen  # its own session is running
        assert "Welcome to the demo" in screen, screen
        shown = [w for w in normalized_words(screen) if w in reference]
        assert len(set(shown)) >= 0.6 * len(reference), screen
        last_words = " ".join(normalized_words(demo_text())[-4:])
        assert last_words in " ".join(normalized_words(screen)), screen
        terminal.keys("C-q")
        screen = terminal.wait_for(lambda s: "exit code" in s, "exit")
        assert "exit code 0" in screen
        assert "Traceback" not in screen
    finally:
        terminal.close()
    assert SessionStore.unfinished(root=data / "sessions") == []
