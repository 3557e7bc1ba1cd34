"""Small random checkpoints in the real mlx-community format, for tests that need a model
of a family or size the fixtures don't have."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from conftest import NEMO

from asr.config import CTC_TARGET, HYBRID_TARGET, RNNT_TARGET


def nemo_config(name: str) -> dict[str, Any]:
    return json.loads((NEMO / name / "mlx" / "config.json").read_text())


def tiny_config(family: str, *, n_layers: int = 2, d_model: int = 64) -> dict[str, Any]:
    """NeMo-style config for 'tdt', 'rnnt', 'ctc' or 'tdt_ctc', built from the fixtures'."""
    base = nemo_config("ctc" if family == "ctc" else ("rnnt" if family == "rnnt" else "tdt"))
    config = copy.deepcopy(base)
    config["encoder"].update(n_layers=n_layers, d_model=d_model)
    if family == "tdt_ctc":
        vocabulary = config["joint"]["vocabulary"]
        config["target"] = HYBRID_TARGET
        config["aux_ctc"] = {
            "decoder": {
                "feat_in": d_model,
                "num_classes": len(vocabulary),
                "vocabulary": vocabulary,
            }
        }
    assert config["target"] in (RNNT_TARGET, CTC_TARGET, HYBRID_TARGET)
    return config


def write_checkpoint(folder: Path, config: dict[str, Any], weights: dict) -> Path:
    """Writes config.json and model.safetensors as the mlx-community repos hold them."""
    import mlx.core as mx

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    return folder
