"""Beam search speed: beam 4 beside greedy on the full parakeet-tdt-0.6b architecture.

Builds the 0.6b TDT model with random weights (bench/offline.py's checkpoint, its joint
calibrated on the audio to speech-like token rates), encodes the same audio once and
decodes that encoder output with greedy and with beam search in turns,
then times both end to end (`transcribe`). parakeet-mlx 0.6.0's beam search is measured in
its own process on a shorter clip (it is slow) and reported per second of audio.

The random model's token distribution is nearly flat and its blank far ahead, so with the
default expansion_gamma most frames have a single expansion; the run without pruning
(expansion_gamma=inf) shows the cost when every frame has beam_size alternatives.

    python bench/beam.py [--seconds 60] [--beam-size 4] [--repeats 7]
                         [--reference-seconds 10] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from offline import make_audio, make_checkpoint  # noqa: E402


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _summary(times: list[float]) -> dict:
    return {"min_s": min(times), "median_s": statistics.median(times), "runs_s": times}


def measure_ours(folder: Path, audio_path: Path, beam_size: int, repeats: int) -> dict:
    import mlx.core as mx

    import asr  # loads the fast BLAS before MLX
    from asr.audio import get_logmel, load_audio
    from asr.blas import blas_in_use

    model = asr.from_pretrained(str(folder), dtype=mx.float32)
    audio = load_audio(audio_path, 16000)
    mel = get_logmel(audio, model.preprocessor_config)
    t0 = time.perf_counter()
    features, lengths = model.encoder(mel)
    mx.eval(features, lengths)
    encoder_s = time.perf_counter() - t0
    configs = {
        "greedy": asr.DecodingConfig(),
        "beam": asr.DecodingConfig(decoding=asr.Beam(beam_size=beam_size)),
    }
    model.decode(features, lengths, configs["greedy"])  # builds the decoder's numpy copy

    def side_by_side() -> tuple[dict[str, list[float]], dict]:
        times: dict[str, list[float]] = {name: [] for name in configs}
        hyps = {}
        for _ in range(repeats):  # in turns, so that both see the same machine load
            for name, config in configs.items():
                elapsed, out = _timed(lambda config=config: model.decode(features, lengths, config))
                times[name].append(elapsed)
                hyps[name] = out[0]
        return times, hyps

    times, hyps = side_by_side()
    one_thread = None
    try:  # numpy's BLAS threads fight over a busy machine's cores: also time with one
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            one_thread, _ = side_by_side()
    except ImportError:
        pass
    unpruned = asr.DecodingConfig(
        decoding=asr.Beam(beam_size=beam_size, expansion_gamma=float("inf"))
    )
    unpruned_s, unpruned_hyp = _timed(lambda: model.decode(features, lengths, unpruned)[0])

    end_to_end: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(max(1, repeats // 3)):
        for name, config in configs.items():
            elapsed, _ = _timed(
                lambda config=config: model.transcribe(audio_path, decoding_config=config)
            )
            end_to_end[name].append(elapsed)

    decode = {name: _summary(t) for name, t in times.items()}
    e2e = {name: _summary(t) for name, t in end_to_end.items()}
    pinned = {name: _summary(t) for name, t in one_thread.items()} if one_thread else None
    return {
        "engine": "parakeet-tui (asr)",
        "blas": blas_in_use(),
        "encoder_frames": int(lengths[0]),
        "encoder_s": encoder_s,
        "decode": decode,
        "decode_ratio_min": decode["beam"]["min_s"] / decode["greedy"]["min_s"],
        "decode_ratio_median": decode["beam"]["median_s"] / decode["greedy"]["median_s"],
        "decode_one_blas_thread": pinned,
        "decode_one_blas_thread_ratio_min": (
            pinned["beam"]["min_s"] / pinned["greedy"]["min_s"] if pinned else None
        ),
        "end_to_end": e2e,
        "end_to_end_ratio_min": e2e["beam"]["min_s"] / e2e["greedy"]["min_s"],
        "greedy": {"tokens": len(hyps["greedy"].tokens), "score": hyps["greedy"].score},
        "beam": {
            "tokens": len(hyps["beam"].tokens),
            "score": hyps["beam"].score,
            "joint_evaluations": hyps["beam"].steps,
        },
        "beam_unpruned": {
            "decode_s": unpruned_s,
            "ratio_to_greedy_min": unpruned_s / decode["greedy"]["min_s"],
            "tokens": len(unpruned_hyp.tokens),
            "score": unpruned_hyp.score,
            "joint_evaluations": unpruned_hyp.steps,
        },
    }


REFERENCE_SCRIPT = """
import json, sys, time
import mlx.core as mx
from parakeet_mlx import Beam, DecodingConfig, from_pretrained
from parakeet_mlx.audio import get_logmel, load_audio
folder, audio_path, beam_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = from_pretrained(folder, dtype=mx.float32)
audio = load_audio(audio_path, 16000, mx.float32)
mel = get_logmel(audio, model.preprocessor_config)
features, lengths = model.encoder(mel); mx.eval(features, lengths)
out = {"engine": "parakeet-mlx 0.6.0", "encoder_frames": int(lengths[0])}
for name, config in (("greedy", DecodingConfig()),
                     ("beam", DecodingConfig(decoding=Beam(beam_size=beam_size)))):
    t0 = time.perf_counter(); tokens, _ = model.decode(features, lengths, config=config)
    out[name + "_decode_s"] = time.perf_counter() - t0
    out[name + "_tokens"] = len(tokens[0])
print(json.dumps(out))
"""


def measure_reference(folder: Path, audio_path: Path, beam_size: int, timeout: float) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [sys.executable, "-c", REFERENCE_SCRIPT, str(folder), str(audio_path)]
    try:
        proc = subprocess.run(
            [*command, str(beam_size)], capture_output=True, text=True, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"engine": "parakeet-mlx 0.6.0", "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"engine": "parakeet-mlx 0.6.0", "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7, help="decodes of each kind, in turns")
    parser.add_argument(
        "--reference-seconds",
        type=float,
        default=10.0,
        help="audio length for parakeet-mlx's beam (0 skips it)",
    )
    parser.add_argument("--reference-timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tdt-0.6b-random"
        audio_path = Path(tmp) / "audio.wav"
        make_audio(audio_path, args.seconds)
        make_checkpoint(folder, audio_path)
        ours = measure_ours(folder, audio_path, args.beam_size, args.repeats)
        print(json.dumps(ours, indent=1), flush=True)
        reference = None
        if args.reference_seconds > 0:
            ref_audio = Path(tmp) / "reference.wav"
            make_audio(ref_audio, args.reference_seconds)
            reference = measure_reference(folder, ref_audio, args.beam_size, args.reference_timeout)
            print(json.dumps(reference, indent=1), flush=True)

    per_second = {
        "ours_greedy_ms": 1000 * ours["decode"]["greedy"]["min_s"] / args.seconds,
        "ours_beam_ms": 1000 * ours["decode"]["beam"]["min_s"] / args.seconds,
    }
    if reference and "beam_decode_s" in reference:
        per_second["parakeet_mlx_greedy_ms"] = (
            1000 * reference["greedy_decode_s"] / args.reference_seconds
        )
        per_second["parakeet_mlx_beam_ms"] = (
            1000 * reference["beam_decode_s"] / args.reference_seconds
        )
    report = {
        "benchmark": "beam",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "audio_seconds": args.seconds,
        "reference_audio_seconds": args.reference_seconds,
        "beam_size": args.beam_size,
        "ours": ours,
        "parakeet_mlx": reference,
        "decode_ms_per_audio_second": per_second,
    }
    if "parakeet_mlx_beam_ms" in per_second:
        report["beam_speedup_over_parakeet_mlx"] = (
            per_second["parakeet_mlx_beam_ms"] / per_second["ours_beam_ms"]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "beam.json").write_text(json.dumps(report, indent=1))
    summary = {
        "decode_ratio_min": ours["decode_ratio_min"],
        "decode_ratio_median": ours["decode_ratio_median"],
        "decode_one_blas_thread_ratio_min": ours["decode_one_blas_thread_ratio_min"],
        "end_to_end_ratio_min": ours["end_to_end_ratio_min"],
        **per_second,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
