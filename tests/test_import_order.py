"""Every module of the app, imported first in a fresh interpreter, leaves MLX on the fast
BLAS: asr loads it before MLX's first import, so nothing may import MLX ahead of asr
(the reference BLAS MLX's Linux wheel ships is about 50 times slower)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asr.blas import blas_in_use

TUI = Path(__file__).resolve().parents[1] / "tui"
MODULES = sorted(
    ".".join(path.relative_to(TUI.parent).with_suffix("").parts).removesuffix(".__init__")
    for path in TUI.rglob("*.py")
)


@pytest.mark.slow
@pytest.mark.skipif(blas_in_use() == "reference", reason="no fast BLAS is installed here")
@pytest.mark.parametrize("module", MODULES)
def test_importing_the_module_first_keeps_the_fast_blas(module):
    script = f"import {module}\nimport asr.blas\nprint(asr.blas.blas_in_use())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-400:]
    assert done.stdout.strip() == blas_in_use()
