"""The offline demo: a small model of our own (train/) and a recording it knows how to hear.

The model is a FastConformer-TDT in the mlx-community layout, trained on synthetic espeak-ng
speech; it needs no download, and runs on every backend the engine does.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).parent
DEMO_MODEL = DEMO_DIR / "model"
DEMO_RECORDING = DEMO_DIR / "recording.flac"
DEMO_RECORDING_TEXT = DEMO_DIR / "recording.txt"  # what the recording says


def demo_text() -> str:
    return DEMO_RECORDING_TEXT.read_text().strip()
