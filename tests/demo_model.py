"""The bundled demo model (tui/demo) for tests that check words, not only shapes.

The demo model hears espeak-ng English well (about 2% WER offline on its recording), so
tests on it can ask whether the right words came out, where the random fixture models can
only show structure. Its output has punctuation and capitals: compare normalized words.
"""

from __future__ import annotations

import functools
import re

import jiwer
import numpy as np
import pytest

import asr
from asr.audio import read_audio
from tui.demo import DEMO_MODEL, DEMO_RECORDING, demo_text

__all__ = [
    "DEMO_MODEL",
    "DEMO_RECORDING",
    "MAX_WER",
    "demo_audio",
    "demo_model",
    "demo_text",
    "load_demo_model",
    "normalized_words",
    "word_error_rate",
]

SAMPLE_RATE = 16000
# The engine's offline WER on the recording is about 0.02; streaming settles near 0.03.
# This bound leaves room for run-to-run differences in how blocks coalesce, while a stream
# that loses or repeats a sentence (a dozen words of about ninety) still fails it.
MAX_WER = 0.15


@functools.cache
def load_demo_model():
    """The demo model, loaded once per test process."""
    return asr.from_pretrained(str(DEMO_MODEL))


@pytest.fixture(scope="session")
def demo_model():
    return load_demo_model()


@functools.cache
def _demo_audio() -> np.ndarray:
    audio = read_audio(DEMO_RECORDING, SAMPLE_RATE)
    audio.setflags(write=False)
    return audio


def demo_audio() -> np.ndarray:
    """The demo recording as 16 kHz mono float32 (read once; read-only)."""
    return _demo_audio()


def demo_seconds() -> float:
    return len(demo_audio()) / SAMPLE_RATE


def normalized_words(text: str) -> list[str]:
    """Lowercase words of letters and apostrophes; everything else separates words."""
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of hypothesis against reference, after normalizing both."""
    ref = " ".join(normalized_words(reference))
    hyp = " ".join(normalized_words(hypothesis))
    if not hyp:
        return 1.0
    return jiwer.wer(ref, hyp)


def word_alignment(reference: str, hypothesis: str):
    """jiwer's alignment of the normalized words: .insertions, .deletions, .substitutions."""
    return jiwer.process_words(
        " ".join(normalized_words(reference)), " ".join(normalized_words(hypothesis))
    )
