"""Hours of audio in one pass: peak memory and time of `transcribe` without chunking.

Each length runs in a fresh process (peak memory is per process), on a random model of the
chosen size with local attention, and the JSON notes how peak memory grows with length.

    python bench/long_audio.py --model small --minutes 5 10 20 40 60          # this CPU
    python bench/long_audio.py --model 0.6b --minutes 10 60 180 --compare-full 10   # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from offline import tdt_06b_config  # noqa: E402  (imports asr, hence the fast BLAS, first)

import asr  # noqa: E402


def model_config(size: str) -> dict:
    config = tdt_06b_config()
    if size == "small":  # 8 layers of d_model 256: the 0.6b's shape at a CPU sweep's size
        config["encoder"].update(n_layers=8, d_model=256, n_heads=4, subsampling_conv_channels=64)
        config["joint"]["jointnet"]["encoder_hidden"] = 256
    return config


def run_one(size: str, minutes: float, context: int | None, folder: Path) -> dict:
    """In this process: transcribe `minutes` of audio in one call, report time and peak."""
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    config = model_config(size)
    model_dir = folder / size
    if not (model_dir / "model.safetensors").exists():
        mx.random.seed(0)
        model = asr.from_config(config)
        # Random weights would emit tokens at random; biased to blank, the decoder costs
        # what it does on silence, and the figures are those of features and encoder.
        out = model.joint.joint_net[-1]
        bias = np.zeros(out.bias.shape, np.float32)
        bias[config["joint"]["num_classes"]] = 30.0
        out.bias = mx.array(bias)
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps(config))
        weights = dict(tree_flatten(model.parameters()))
        mx.save_safetensors(str(model_dir / "model.safetensors"), weights)
        del model
    model = asr.from_pretrained(str(model_dir))
    if context:
        model.encoder.set_attention_model("rel_pos_local_attn", (context, context))
    rate = 16000
    rng = np.random.default_rng(0)
    samples = int(minutes * 60 * rate)
    # speech-like: a voiced tone under a syllable-rate envelope, plus noise
    t = np.arange(samples, dtype=np.float32) / rate
    audio = 0.2 * np.sin(2 * np.pi * 170 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    audio += 0.01 * rng.standard_normal(samples).astype(np.float32)
    audio = mx.array(audio.astype(np.float32))
    del t
    mx.eval(audio)
    model.transcribe_audio(audio[: 20 * rate])  # compiles the GPU kernels, outside the timing
    mx.clear_cache()
    mx.reset_peak_memory()
    start = time.perf_counter()
    result = model.transcribe_audio(audio)
    seconds = time.perf_counter() - start
    import resource

    return {
        "minutes": minutes,
        "model": size,
        "attention": f"local ({context}, {context})" if context else "full",
        "device": str(mx.default_device()),
        "seconds": seconds,
        "real_time_factor": seconds / (minutes * 60),
        "peak_mlx_memory_gb": mx.get_peak_memory() / 2**30,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "tokens": len(result.tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("small", "0.6b"), default="small")
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 40, 60])
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument(
        "--compare-full",
        type=float,
        nargs="*",
        default=[],
        help="also run full attention at these lengths (minutes)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, default=Path("/tmp/parakeet-long-audio"))
    parser.add_argument(
        "--one", nargs=3, metavar=("SIZE", "MINUTES", "CONTEXT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.one:
        size, minutes, context = args.one
        report = run_one(size, float(minutes), int(context) or None, args.work)
        print(json.dumps(report), flush=True)
        return

    runs = [(m, args.context) for m in args.minutes] + [(m, 0) for m in args.compare_full]
    results = []
    for minutes, context in runs:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--work",
                str(args.work),
                "--one",
                args.model,
                str(minutes),
                str(context),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            report = {
                "minutes": minutes,
                "context": context,
                "error": tail,
                "returncode": proc.returncode,
            }
        else:
            report = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(report), flush=True)
        results.append(report)

    local = {
        r["minutes"]: r
        for r in results
        if "peak_mlx_memory_gb" in r and r["attention"].startswith("local")
    }
    summary = {}
    if 10 in local and 60 in local:
        peak = {m: local[m]["peak_mlx_memory_gb"] for m in (10, 60)}
        summary["peak_60_over_10"] = peak[60] / peak[10]
    full = {r["minutes"]: r for r in results if r.get("attention") == "full"}
    for minutes in full.keys() & local.keys():
        summary[f"local_over_full_time_at_{minutes:g}_min"] = (
            local[minutes]["seconds"] / full[minutes]["seconds"]
        )
    report = {
        "benchmark": "long_audio",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "model": args.model,
        "runs": results,
        "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"long_audio_{args.model}.json"
    (args.out / name).write_text(json.dumps(report, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
