"""The interactive app's command line: `parakeet-tui [FILE] [--model ...] [--context L R] ...`.

Imports neither MLX nor Textual, so that `--help` and mistakes are answered at once.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

PROG = "parakeet-tui"
# Kept in step with tui.model_loading.DEFAULT_MODEL, which imports the engine (slow for --help).
DEFAULT_MODEL = "mlx-community/parakeet-tdt-0.6b-v3"
DEFAULT_CONTEXT = (256, 16)
DEFAULT_DEPTH = 1


class AppUsageError(Exception):
    """A command line the app cannot use; the message is one line."""


@dataclass(frozen=True)
class AppOptions:
    recording: Path | None = None  # opens the File pane on it
    model: str = DEFAULT_MODEL
    context: tuple[int, int] = DEFAULT_CONTEXT
    depth: int = DEFAULT_DEPTH
    mic_from: Path | None = None  # a recording that stands in for the microphone
    mic_speed: float = 1.0  # its pace, times real time; 0 or less: as fast as possible
    audio_output: bool = True  # False: playback always runs silently on a clock
    # Run-on speech without punctuation still breaks into lines a reader can follow.
    max_sentence_seconds: float | None = 12.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise AppUsageError(message)


def _frames(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    return value


def _speed(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description=(
            "Live transcription in the terminal. Without FILE the app opens on the microphone; "
            "with FILE it transcribes that recording and plays it back. "
            "`parakeet-tui transcribe --help` covers transcribing files without the app."
        ),
    )
    parser.add_argument("recording", nargs="?", metavar="FILE", help="a recording to open")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Hugging Face repo id or a local model folder (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--context",
        nargs=2,
        type=_frames,
        metavar=("LEFT", "RIGHT"),
        default=None,
        help=(
            f"encoder frames of attention context on each side (default: {DEFAULT_CONTEXT[0]} "
            f"{DEFAULT_CONTEXT[1]}; with --demo, the demo model's own)"
        ),
    )
    parser.add_argument(
        "--depth",
        type=_frames,
        default=DEFAULT_DEPTH,
        help="encoder layers kept exact while streaming (default: %(default)s)",
    )
    parser.add_argument(
        "--mic-from",
        type=Path,
        metavar="FILE",
        help="use a recording as the microphone (played at --mic-speed)",
    )
    parser.add_argument(
        "--mic-speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="pace of --mic-from, times real time; 0 for as fast as possible (default: 1)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the built-in demo: a small model (no download) on a bundled recording, or on FILE",
    )
    return parser


def _demo_context() -> tuple[int, int]:
    """The local attention context the demo model was made for (its config says)."""
    import json

    from .demo import DEMO_MODEL

    left, right = json.loads((DEMO_MODEL / "config.json").read_text())["encoder"][
        "att_context_size"
    ]
    return int(left), int(right)


def parse_app_args(args: list[str]) -> AppOptions:
    """The options in args. Raises AppUsageError (one line) for anything unusable; exits
    (SystemExit) for --help, as argparse does."""
    ns = build_parser().parse_args(args)
    left, right = ns.context or (_demo_context() if ns.demo else DEFAULT_CONTEXT)
    if left < 1 or right < 0:
        raise AppUsageError(f"--context needs LEFT >= 1 and RIGHT >= 0, got {left} {right}")
    if ns.depth < 1:
        raise AppUsageError(f"--depth must be at least 1, got {ns.depth}")
    recording = Path(ns.recording) if ns.recording else None
    model = ns.model
    if ns.demo:
        from .demo import DEMO_MODEL, DEMO_RECORDING

        model = str(DEMO_MODEL)
        recording = recording or DEMO_RECORDING
    if recording is not None and not recording.is_file():
        raise AppUsageError(f"{recording}: no such file")
    if ns.mic_from is not None and not ns.mic_from.is_file():
        raise AppUsageError(f"--mic-from {ns.mic_from}: no such file")
    return AppOptions(
        recording=recording,
        model=model,
        context=(left, right),
        depth=ns.depth,
        mic_from=ns.mic_from,
        mic_speed=ns.mic_speed,
    )
