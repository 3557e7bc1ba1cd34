"""Writes a trained model in the mlx-community layout: config.json (NeMo's configuration,
with the tokenizer's vocabulary) and model.safetensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from train.torch_model import ModelSize

RNNT_TARGET = "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel"


def model_config(
    size: ModelSize, vocabulary: list[str], local_context: tuple[int, int]
) -> dict[str, Any]:
    durations = list(size.durations)
    vocab_size = len(vocabulary)
    return {
        "target": RNNT_TARGET,
        "sample_rate": 16000,
        "labels": vocabulary,
        "model_defaults": {
            "enc_hidden": size.d_model,
            "pred_hidden": size.pred_hidden,
            "joint_hidden": size.joint_hidden,
            "tdt_durations": durations,
            "num_tdt_durations": len(durations),
        },
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": size.features,
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 1e-05,
            "pad_to": 0,
            "pad_value": 0.0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": size.features,
            "feat_out": -1,
            "n_layers": size.n_layers,
            "d_model": size.d_model,
            "subsampling": "dw_striding",
            "subsampling_factor": 8,
            "subsampling_conv_channels": size.subsampling_channels,
            "causal_downsampling": False,
            "ff_expansion_factor": 4,
            "self_attention_model": "rel_pos_local_attn",
            "n_heads": size.n_heads,
            "att_context_size": list(local_context),
            "xscaling": True,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": size.conv_kernel_size,
            "conv_norm_type": "batch_norm",
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "blank_as_pad": True,
            "prednet": {"pred_hidden": size.pred_hidden, "pred_rnn_layers": 1},
            "vocab_size": vocab_size,
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "num_extra_outputs": len(durations),
            "num_classes": vocab_size,
            "vocabulary": vocabulary,
            "jointnet": {
                "joint_hidden": size.joint_hidden,
                "activation": "relu",
                "encoder_hidden": size.d_model,
                "pred_hidden": size.pred_hidden,
            },
        },
        "decoding": {
            "strategy": "greedy_batch",
            "model_type": "tdt",
            "durations": durations,
            "greedy": {"max_symbols": 10},
        },
    }


def write_checkpoint(
    folder: Path,
    weights: dict[str, np.ndarray],
    config: dict[str, Any],
    dtype: str = "float16",
) -> Path:
    """Weights stored as `dtype` (float16 keeps the demo model under 10 MB); BatchNorm
    statistics stay float32, since running variances can underflow float16's range."""
    import mlx.core as mx

    folder.mkdir(parents=True, exist_ok=True)
    target = getattr(mx, dtype)
    arrays = {}
    for name, array in weights.items():
        value = mx.array(array)
        keep = "batch_norm.running" in name
        arrays[name] = value if keep else value.astype(target)
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    mx.save_safetensors(str(folder / "model.safetensors"), arrays)
    return folder
