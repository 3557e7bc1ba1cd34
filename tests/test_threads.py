"""A process that ran the engine thread exits cleanly: MLX's per-thread streams are released
by the thread that made them (without that, MLX 0.32 aborts at exit in some runs: about a
quarter of them for this script on a 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import soundfile as sf
import asr
from asr.engine import TranscriptionEngine
from tui.demo import DEMO_MODEL, DEMO_RECORDING
model = asr.from_pretrained(str(DEMO_MODEL))
audio, _ = sf.read(str(DEMO_RECORDING), dtype="float32")
engine = TranscriptionEngine(model, lambda event: None).start()
for start in range(0, len(audio), 8000):
    engine.feed(audio[start : start + 8000])
engine.stop()
print("stopped")
"""


@pytest.mark.slow
def test_a_process_that_ran_the_engine_thread_exits_with_status_zero():
    for _ in range(6):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-500:]
        assert done.stdout.strip() == "stopped"
