"""Converts a NeMo .nemo checkpoint to the mlx-community layout: config.json (NeMo's model
config as JSON, with its `target` key naming the NeMo class) and model.safetensors (weights
named by parakeet-mlx's module tree, in MLX's layouts).

Needs torch, safetensors and PyYAML (not NeMo):
    python convert.py MODEL.nemo OUTDIR [--dtype float32|bfloat16]

--dtype bfloat16 stores the weights in bfloat16 (as most mlx-community checkpoints are) and
refuses to do so unless every float weight is exactly representable (see make_models.py).

Renames and layouts:
- PyTorch Conv1d weights (out, in, k) become MLX's (out, k, in); Conv2d weights
  (out, in, kh, kw) become (out, kh, kw, in).
- The prediction network's nn.LSTM (weight_ih_lN, weight_hh_lN, bias_ih_lN, bias_hh_lN)
  becomes one MLX LSTM per layer: lstm.N.Wx, lstm.N.Wh and lstm.N.bias = bias_ih + bias_hh
  (both use the gate order i, f, g, o).
- The joint's output layer is joint_net.2 as in parakeet-mlx (activation, dropout, linear);
  NeMo leaves the dropout out of its Sequential when the joint's dropout is 0, which makes
  it joint_net.1 there.
- BatchNorm running statistics are kept; num_batches_tracked, the preprocessor's window and
  filterbank and the positional-encoding tables are dropped (the engine computes them).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tarfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

DROPPED = re.compile(r"^preprocessor\.|\.num_batches_tracked$|^encoder\.pos_enc\.")
LSTM = re.compile(r"^(.*\.dec_rnn\.lstm)\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")
JOINT_OUT = re.compile(r"^joint\.joint_net\.(\d+)\.(weight|bias)$")


def read_nemo(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with tarfile.open(path) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        config = yaml.safe_load(tar.extractfile(members["model_config.yaml"]).read())
        raw = tar.extractfile(members["model_weights.ckpt"]).read()
    weights = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    return config, weights


def convert_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    lstm: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    joint_out = sorted({int(m.group(1)) for k in weights if (m := JOINT_OUT.match(k))})
    for name, value in weights.items():
        if DROPPED.search(name):
            continue
        if m := LSTM.match(name):
            lstm.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        if m := JOINT_OUT.match(name):
            if int(m.group(1)) != joint_out[-1]:
                raise ValueError(f"unexpected joint layer {name}")
            name = f"joint.joint_net.2.{m.group(2)}"
        if value.ndim == 3:  # Conv1d (out, in, k) -> (out, k, in)
            value = value.permute(0, 2, 1)
        elif value.ndim == 4:  # Conv2d (out, in, kh, kw) -> (out, kh, kw, in)
            value = value.permute(0, 2, 3, 1)
        out[name] = value
    for (prefix, layer), parts in lstm.items():
        out[f"{prefix}.{layer}.Wx"] = parts["weight_ih"]
        out[f"{prefix}.{layer}.Wh"] = parts["weight_hh"]
        out[f"{prefix}.{layer}.bias"] = parts["bias_ih"] + parts["bias_hh"]
    return {k: v.contiguous() for k, v in sorted(out.items())}


def cast(weights: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in weights.items():
        if value.is_floating_point():
            converted = value.to(dtype)
            if not torch.equal(converted.to(value.dtype), value):
                raise ValueError(f"{name} is not exactly representable in {dtype}")
            value = converted
        out[name] = value
    return out


def convert(nemo: Path, folder: Path, dtype: str = "float32") -> None:
    config, weights = read_nemo(nemo)
    if "target" not in config:
        raise ValueError(f"{nemo}: model_config.yaml names no target class")
    tensors = cast(convert_weights(weights), getattr(torch, dtype))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    save_file(tensors, str(folder / "model.safetensors"))
    size = sum(v.numel() * v.element_size() for v in tensors.values())
    print(f"{nemo.name}: {len(tensors)} tensors, {size / 1e6:.2f} MB ({dtype}) -> {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nemo", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    convert(args.nemo, args.out, args.dtype)


if __name__ == "__main__":
    main()
