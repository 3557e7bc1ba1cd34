"""Offline transcription speed: this engine beside parakeet-mlx 0.6.0 as a user installs it.

Builds the full parakeet-tdt-0.6b architecture (24 layers, d_model 1024, 8 heads, 128 mels,
vocabulary 1024, 2-layer 640 prediction network) with random weights, writes it as an
mlx-community checkpoint, and transcribes the same audio with both engines, each in its
own process (the BLAS a process loads is process-wide). Prints and saves JSON.

    python bench/offline.py [--seconds 60] [--reference-seconds 60] [--out bench/results]

On a CPU with MKL the encoder runs its numpy path (asr.cpu_encoder); PARAKEET_NO_CPU_ENCODER=1
measures MLX's own layers instead (`encoder_path` says which ran).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import asr  # noqa: E402  (before anything imports MLX: it loads the fast BLAS)


def tdt_06b_config() -> dict:
    vocabulary = [f"\u2581w{i}" if i % 3 == 0 else f"p{i}" for i in range(1024)]
    return {
        "target": "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel",
        "sample_rate": 16000,
        "model_defaults": {"tdt_durations": [0, 1, 2, 3, 4], "num_tdt_durations": 5},
        "preprocessor": {
            "sample_rate": 16000,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": 128,
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 1e-5,
            "pad_to": 0,
            "pad_value": 0.0,
        },
        "encoder": {
            "feat_in": 128,
            "n_layers": 24,
            "d_model": 1024,
            "n_heads": 8,
            "ff_expansion_factor": 4,
            "subsampling": "dw_striding",
            "subsampling_factor": 8,
            "subsampling_conv_channels": 256,
            "self_attention_model": "rel_pos",
            "att_context_size": [-1, -1],
            "xscaling": True,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": 9,
            "conv_norm_type": "batch_norm",
            "causal_downsampling": False,
        },
        "decoder": {
            "vocab_size": 1024,
            "blank_as_pad": True,
            "prednet": {"pred_hidden": 640, "pred_rnn_layers": 2},
        },
        "joint": {
            "num_classes": 1024,
            "vocabulary": vocabulary,
            "num_extra_outputs": 5,
            "jointnet": {
                "joint_hidden": 640,
                "activation": "relu",
                "encoder_hidden": 1024,
                "pred_hidden": 640,
            },
        },
        "decoding": {
            "strategy": "greedy",
            "model_type": "tdt",
            "durations": [0, 1, 2, 3, 4],
            "greedy": {"max_symbols": 10},
        },
    }


def make_checkpoint(folder: Path, audio_path: Path | None = None) -> None:
    """Random weights, made to decode like a trained model on speech.

    A random conformer's output is nearly the same vector at every frame, so a random joint
    emits the same decision everywhere. Given `audio_path`, the joint's encoder projection
    has that direction projected out and the rest amplified (as NeMo's test fixtures do),
    and the blank logit is raised until about 0.4 tokens per frame come out."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from asr.audio import get_logmel, load_audio

    config = tdt_06b_config()
    mx.random.seed(0)
    model = asr.from_config(config)
    if audio_path is not None:
        audio = load_audio(audio_path, 16000)[: 16000 * 20]
        features, _ = model.encoder(get_logmel(audio, model.preprocessor_config))
        mean = features[0].mean(axis=0)
        mean = mean / mx.linalg.norm(mean)
        w = model.joint.enc.weight
        model.joint.enc.weight = (w - (w @ mean)[:, None] * mean[None, :]) * 8.0
        out = model.joint.joint_net[-1]
        low, high = 0.0, 20.0
        for _ in range(12):  # bisect the blank bias to the token rate of speech
            bias = np.zeros(out.bias.shape, np.float32)
            bias[1024] = (low + high) / 2
            bias[1025 + 1] = 2.0  # duration 1 is the most common on speech
            out.bias = mx.array(bias)
            hyp = model.decode(features)[0]
            rate = len(hyp.tokens) / features.shape[1]
            if abs(rate - 0.4) < 0.05:
                break
            low, high = (bias[1024], high) if rate > 0.4 else (low, bias[1024])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())))


SPEECH = (
    "The meeting started late because the projector would not connect. Anna summarized the "
    "quarterly numbers, and the team agreed to move the launch to the second week of March. "
    "Questions about the budget were left for Thursday, when finance can join the call."
)


def make_audio(path: Path, seconds: float) -> None:
    """Speech from espeak-ng (repeated to length) where it is installed, else a voiced tone."""
    rate = 16000
    espeak = shutil.which("espeak-ng")
    if espeak:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "speech.wav"
            subprocess.run([espeak, "-w", str(raw), SPEECH], check=True, capture_output=True)
            speech, source_rate = sf.read(raw, dtype="float32")
        import soxr

        speech = soxr.resample(speech, source_rate, rate)
        audio = np.resize(speech, int(seconds * rate))
    else:
        t = np.arange(int(seconds * rate)) / rate
        voice = np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t)
        audio = 0.3 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2)
    noise = 0.005 * np.random.default_rng(0).standard_normal(len(audio))
    sf.write(path, (audio + noise).astype(np.float32), rate)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_ours(folder: Path, audio_path: Path) -> dict:
    import mlx.core as mx

    from asr import cpu_path
    from asr.audio import get_logmel, load_audio
    from asr.blas import blas_in_use

    t0 = time.perf_counter()
    model = asr.from_pretrained(str(folder), dtype=mx.float32)
    load_s = time.perf_counter() - t0

    audio = load_audio(audio_path, 16000)
    t0 = time.perf_counter()
    mel = get_logmel(audio, model.preprocessor_config)
    mx.eval(mel)
    mel_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    features, lengths = model.encoder(mel)
    mx.eval(features, lengths)
    encoder_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hyp = model.decode(features, lengths)[0]
    decode_s = time.perf_counter() - t0
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    result = model.transcribe(audio_path)
    total_s = time.perf_counter() - t0

    # this machine's matrix throughput, through the same BLAS
    a = mx.random.normal((1024, 1024))
    b = mx.random.normal((1024, 4096))
    mx.eval(a @ b)
    t0 = time.perf_counter()
    for _ in range(5):
        mx.eval(a @ b)
    gflops = 5 * 2 * 1024 * 1024 * 4096 / (time.perf_counter() - t0) / 1e9
    frames = int(lengths[0])
    encoder_flop = encoder_flops(model.encoder_config, mel.shape[1], frames)
    return {
        "engine": "parakeet-tui (asr)",
        "blas": blas_in_use(),
        "encoder_path": "numpy + MKL" if cpu_path.usable(mel) else "mlx",
        "load_s": load_s,
        "mel_s": mel_s,
        "encoder_s": encoder_s,
        "decode_s": decode_s,
        "decode_steps": hyp.steps,
        "decode_ms_per_step": 1000 * decode_s / max(hyp.steps, 1),
        "tokens": len(hyp.tokens),
        "encoder_frames": frames,
        "end_to_end_s": total_s,
        "transcribed_tokens": len(result.tokens),
        "peak_mlx_memory_mb": mx.get_peak_memory() / 2**20,
        "peak_rss_mb": peak_rss_mb(),
        "matmul_gflops": gflops,
        "encoder_gflop": encoder_flop / 1e9,
        "encoder_gflops_achieved": encoder_flop / encoder_s / 1e9,
        "encoder_fraction_of_matmul_peak": encoder_flop / encoder_s / 1e9 / gflops,
    }


def encoder_flops(args, mel_frames: int, frames: int) -> float:
    """Multiply-adds x 2 of the encoder's matrix products (full rel-pos attention)."""
    c, d, t = args.subsampling_conv_channels, args.d_model, frames
    f = args.feat_in
    flops = 2 * (mel_frames // 2) * (f // 2) * c * 9  # first 3x3 convolution
    length, freq = mel_frames // 2, f // 2
    for _ in range(int(np.log2(args.subsampling_factor)) - 1):
        length, freq = length // 2, freq // 2
        flops += 2 * length * freq * c * (9 + c)  # depthwise + pointwise
    flops += 2 * t * c * freq * d  # output projection
    per_layer = (
        2 * 2 * t * d * d * args.ff_expansion_factor * 2  # two feed-forward modules
        + 2 * 4 * t * d * d  # q, k, v, out
        + 2 * (2 * t - 1) * d * d  # position projection
        + 2 * t * t * d
        + 2 * t * (2 * t - 1) * d
        + 2 * t * t * d  # scores, rel-pos, values
        + 2 * t * d * 2 * d
        + 2 * t * d * d  # pointwise convolutions
    )
    return flops + args.n_layers * per_layer


REFERENCE_SCRIPT = """
import json, resource, sys, time
import mlx.core as mx
from parakeet_mlx import from_pretrained
from parakeet_mlx.audio import get_logmel, load_audio
folder, audio_path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter(); model = from_pretrained(folder, dtype=mx.float32)
load_s = time.perf_counter() - t0
audio = load_audio(audio_path, 16000, mx.float32)
mel = get_logmel(audio, model.preprocessor_config); mx.eval(mel)
t0 = time.perf_counter(); features, lengths = model.encoder(mel); mx.eval(features, lengths)
encoder_s = time.perf_counter() - t0
t0 = time.perf_counter(); tokens, _ = model.decode(features, lengths)
decode_s = time.perf_counter() - t0
t0 = time.perf_counter(); result = model.transcribe(audio_path, dtype=mx.float32)
total_s = time.perf_counter() - t0
print(json.dumps({"engine": "parakeet-mlx 0.6.0", "load_s": load_s, "encoder_s": encoder_s,
    "decode_s": decode_s, "tokens": len(tokens[0]), "end_to_end_s": total_s,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure_reference(folder: Path, audio_path: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", REFERENCE_SCRIPT, str(folder), str(audio_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        return {"engine": "parakeet-mlx 0.6.0", "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--reference-seconds",
        type=float,
        default=60.0,
        help="audio length for parakeet-mlx (0 skips it)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tdt-0.6b-random"
        audio_path = Path(tmp) / "audio.wav"
        make_audio(audio_path, args.seconds)
        make_checkpoint(folder, audio_path)
        ours = measure_ours(folder, audio_path)
        print(json.dumps(ours, indent=1), flush=True)
        reference = None
        if args.reference_seconds > 0:
            ref_audio = Path(tmp) / "reference.wav"
            make_audio(ref_audio, args.reference_seconds)
            reference = measure_reference(folder, ref_audio)
            print(json.dumps(reference, indent=1), flush=True)

    report = {
        "benchmark": "offline",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "audio_seconds": args.seconds,
        "reference_audio_seconds": args.reference_seconds,
        "ours": ours,
        "parakeet_mlx": reference,
    }
    if reference and "end_to_end_s" in reference:
        scale = args.seconds / args.reference_seconds
        report["speedup_end_to_end"] = reference["end_to_end_s"] * scale / ours["end_to_end_s"]
        report["speedup_encoder"] = reference["encoder_s"] * scale / ours["encoder_s"]
        report["speedup_decode_per_token"] = (
            reference["decode_s"] / max(reference["tokens"], 1)
        ) / (ours["decode_s"] / max(ours["tokens"], 1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "offline.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k.startswith("speedup")}, indent=1))


if __name__ == "__main__":
    main()
