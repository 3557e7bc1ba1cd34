"""Loading checkpoints in the mlx-community layout (config.json + model.safetensors) from a
local folder or huggingface-hub's cache."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .config import CTCArgs, TransducerArgs, from_dict, model_family
from .model import BaseParakeet, ParakeetCTC, ParakeetRNNT, ParakeetTDT, ParakeetTDTCTC

FILES = ("config.json", "model.safetensors")


class ModelError(RuntimeError):
    """A model that cannot be found or loaded; the message is one line for the user."""


def default_dtype() -> mx.Dtype:
    """bfloat16 where a GPU runs it; float32 on CPUs, whose BLAS has no bfloat16 path."""
    return mx.bfloat16 if mx.default_device() == mx.gpu else mx.float32


def from_config(config: dict[str, Any]) -> BaseParakeet:
    """Builds a model with random weights from a NeMo config (as in config.json)."""
    family = model_family(config)
    if family == "ctc":
        model: BaseParakeet = ParakeetCTC(from_dict(CTCArgs, config))
    else:
        config = dict(config)
        durations = (config.get("model_defaults") or {}).get("tdt_durations")
        decoding = dict(config.get("decoding") or {})
        if family.startswith("tdt") and not decoding.get("durations"):
            decoding["durations"] = durations
        config["decoding"] = decoding
        args = from_dict(TransducerArgs, config)
        model = {
            "tdt": ParakeetTDT,
            "rnnt": ParakeetRNNT,
            "tdt_ctc": ParakeetTDTCTC,
            "rnnt_ctc": ParakeetRNNT,
        }[family](args)
    model.eval()
    return model


def resolve(model_id: str, cache_dir: str | Path | None = None) -> Path:
    """A folder holding the model's files: the path itself, or huggingface-hub's snapshot."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") != 1:
        raise ModelError(f"model {model_id!r}: no such folder, and not a Hugging Face repo id")
    from huggingface_hub import hf_hub_download

    files = []
    for name in FILES:
        try:  # the cache first: no network round trip for a model already downloaded
            files.append(
                hf_hub_download(model_id, name, cache_dir=cache_dir, local_files_only=True)
            )
            continue
        except Exception:
            pass
        if os.environ.get("HF_HUB_OFFLINE"):
            files = []
            break
        try:
            files.append(hf_hub_download(model_id, name, cache_dir=cache_dir))
        except Exception as e:
            raise ModelError(
                f"model {model_id!r} is not in the Hugging Face cache and could not be "
                f"downloaded ({type(e).__name__}); on a connected machine run "
                f"`huggingface-cli download {model_id}`, or pass a local folder"
            ) from None
    if len(files) != len(FILES):
        raise ModelError(
            f"model {model_id!r} is not in the Hugging Face cache (offline); on a connected "
            f"machine run `huggingface-cli download {model_id}`, or pass a local folder"
        )
    return Path(files[0]).parent


def load_config(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelError(f"model folder {folder} has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read {config_path}: {e}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_path} does not hold a JSON object")
    return config


def load_weights(model: nn.Module, weights_path: Path, dtype: mx.Dtype) -> None:
    if not weights_path.is_file():
        raise ModelError(f"model folder {weights_path.parent} has no model.safetensors")
    try:
        weights = mx.load(str(weights_path))
    except Exception as e:
        raise ModelError(
            f"cannot read {weights_path} (corrupted or not safetensors): {e}"
        ) from None
    expected = dict(tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        raise ModelError(f"{weights_path} does not fit the config: " + ", ".join(detail))
    for name, value in weights.items():
        if value.shape != expected[name].shape:
            raise ModelError(
                f"{weights_path}: {name} has shape {tuple(value.shape)}, "
                f"the config needs {tuple(expected[name].shape)}"
            )
    cast = [
        (k, v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v)
        for k, v in weights.items()
    ]
    model.load_weights(cast, strict=True)
    mx.eval(model.parameters())


def from_pretrained(
    hf_id_or_path: str,
    *,
    dtype: mx.Dtype | None = None,
    cache_dir: str | Path | None = None,
) -> BaseParakeet:
    """Loads a Parakeet model from a local folder or a Hugging Face repo id (cached)."""
    folder = resolve(str(hf_id_or_path), cache_dir)
    config = load_config(folder)
    try:
        model = from_config(config)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{folder / 'config.json'}: {e}") from None
    load_weights(model, folder / "model.safetensors", dtype or default_dtype())
    return model
