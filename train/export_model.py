"""Writes trained weights (train/train.py's --weights file) as an mlx-community checkpoint
and reports the engine's word error rate on held-out speech.

    python -m train.export_model train/runs/weights.pt tui/demo/model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from train.export import model_config, write_checkpoint
from train.torch_model import TDTModel, mlx_weights
from train.vocabulary import VOCABULARY

DEFAULT_CONTEXT = (64, 64)  # the model's local attention: +-5 s, within what training heard


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--dtype", default="float16")
    args = parser.parse_args(argv)
    saved = torch.load(args.weights, weights_only=False, map_location="cpu")
    model = TDTModel(saved["size"], len(VOCABULARY))
    model.load_state_dict(saved["model"])
    config = model_config(saved["size"], VOCABULARY, DEFAULT_CONTEXT)
    config["training_steps"] = saved.get("step")
    write_checkpoint(args.folder, mlx_weights(model), config, dtype=args.dtype)
    size = sum(f.stat().st_size for f in args.folder.iterdir())
    print(f"wrote {args.folder} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
