"""What the app's tests share: the fixture model, recordings, waiting for the app."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import CLIPS, NEMO

import asr
from asr.results import AlignedToken
from tui.app import ParakeetApp
from tui.app_options import AppOptions, parse_app_args

MODEL_DIR = NEMO / "tdt" / "mlx"
AUDIO = NEMO / "audio"
SIZE = (120, 36)

_model = None


def fixture_model():
    """The small NeMo TDT model (it emits tokens, not words), loaded once."""
    global _model
    if _model is None:
        _model = asr.from_pretrained(str(MODEL_DIR))
    return _model


def long_recording(folder: Path, repeats: int = 1, gap_seconds: float = 0.0) -> Path:
    """The fixture clips one after another (12 s; the fixture model hears two words)."""
    parts = []
    for _ in range(repeats):
        for clip in CLIPS:
            audio, rate = sf.read(AUDIO / f"{clip}.wav", dtype="float32")
            parts += [audio, np.zeros(int(gap_seconds * rate), np.float32)]
    path = folder / "meeting.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path


def make_app(**options) -> ParakeetApp:
    """The app on the fixture model, silent playback, short sentences (the fixture model's
    words run long), no recovery offer unless asked."""
    offer_recovery = options.pop("offer_recovery", False)
    options.setdefault("model", str(MODEL_DIR))
    options.setdefault("audio_output", False)
    options.setdefault("max_sentence_seconds", 1.0)
    return ParakeetApp(AppOptions(**options), model=fixture_model(), offer_recovery=offer_recovery)


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Lets the app run until condition() holds; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        await pilot.pause(0.05)


def sample_tokens() -> list[AlignedToken]:
    """Readable tokens with fixed times, for screens that must look the same every run."""
    words = [
        (" Welcome", 0.4),
        (" to", 0.9),
        (" the", 1.1),
        (" weekly", 1.3),
        (" meeting.", 1.8),
        (" First,", 3.0),
        (" the", 3.6),
        (" budget", 3.8),
        (" numbers", 4.3),
        (" are", 4.9),
        (" in.", 5.1),
        (" Then", 7.2),
        (" we", 7.6),
        (" plan", 7.8),
        (" the", 8.2),
        (" launch", 8.4),
        (" for", 8.9),
        (" next", 9.1),
        (" month.", 9.5),
    ]
    return [AlignedToken(i, text, start, 0.4) for i, (text, start) in enumerate(words)]


def make_demo_app(**options) -> ParakeetApp:
    """The app on the demo model (loaded once) with the stream settings `--demo` gives,
    silent playback, the app's own sentence lengths, no recovery offer."""
    from demo_model import load_demo_model

    demo = parse_app_args(["--demo"])
    options.setdefault("model", demo.model)
    options.setdefault("context", demo.context)
    options.setdefault("depth", demo.depth)
    options.setdefault("audio_output", False)
    return ParakeetApp(AppOptions(**options), model=load_demo_model(), offer_recovery=False)
