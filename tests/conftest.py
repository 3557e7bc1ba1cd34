from __future__ import annotations

import json
from pathlib import Path

import pytest

import asr  # noqa: F401  (loads the fast BLAS before anything imports MLX)

FIXTURES = Path(__file__).parent / "fixtures"
NEMO = FIXTURES / "nemo"
NEMO_MODELS = ("tdt", "tdt-local", "rnnt", "ctc")
CLIPS = ("speech0", "speech1", "speech2")


def nemo_reference(family: str) -> dict:
    return json.loads((NEMO / family / "reference" / "reference.json").read_text())


@pytest.fixture(scope="session")
def nemo_models():
    """The NeMo fixture checkpoints, loaded once per test session, in float32 on every
    backend: NeMo made the references in float32. (On an NVIDIA GPU models load in
    bfloat16 by default; there streamed and offline tokens, and NeMo's, flip where they
    are near ties: measured on an H200.)"""
    import mlx.core as mx  # here: asr must come first, and has

    return {
        name: asr.from_pretrained(str(NEMO / name / "mlx"), dtype=mx.float32)
        for name in NEMO_MODELS
    }
