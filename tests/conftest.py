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
    """The NeMo fixture checkpoints, loaded once per test session."""
    return {name: asr.from_pretrained(str(NEMO / name / "mlx")) for name in NEMO_MODELS}
