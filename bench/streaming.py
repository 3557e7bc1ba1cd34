"""Live streaming at real-time pace: compute per audio second, lag, and how long a word
takes to appear as a draft and as final text, over several context/depth settings.

The full parakeet-tdt-0.6b architecture with random weights calibrated to speech-like token
rates (see bench/offline.py), speech from espeak-ng, fed in 0.5 s blocks at real-time pace
into the engine thread, as a microphone would. Compute is also split into the encoder's
and the decoder's parts (the rest is features and bookkeeping).

    python bench/streaming.py [--minutes 5] [--settings 256,16,1 256,16,2 ...]
    python bench/streaming.py --minutes 1 --settings 256,16,1 256,16,1,eager --no-pace
        (a GPU: the compiled layers beside the plain ones)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from offline import make_audio, make_checkpoint  # noqa: E402  (imports asr first)

import asr  # noqa: E402
from asr import cuda_streaming  # noqa: E402
from asr.audio import load_audio  # noqa: E402
from asr.blas import blas_in_use  # noqa: E402
from asr.compiled_streaming import compile_pays_off  # noqa: E402
from asr.engine import (  # noqa: E402
    Draft,
    Finalized,
    Progress,
    Stopped,
    TranscriptionEngine,
    bf16_weights_pay_off,
)
from asr.streaming import StreamingParakeet  # noqa: E402

BLOCK_SECONDS = 0.5


class Timeline:
    """When each token (by its start time) first showed as a draft and as final text."""

    def __init__(self):
        self.start_wall = 0.0
        self.draft_seen: dict[float, float] = {}
        self.final_seen: dict[float, tuple[float, float]] = {}  # start -> (end, wall)
        self.progress: list[Progress] = []
        self.stopped = threading.Event()

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if isinstance(event, Draft):
            for t in event.tokens:
                self.draft_seen.setdefault(round(t.start, 3), now)
        elif isinstance(event, Finalized):
            for t in event.tokens:
                key = round(t.start, 3)
                self.draft_seen.setdefault(key, now)
                self.final_seen[key] = (t.end, now)
        elif isinstance(event, Progress):
            self.progress.append(event)
        elif isinstance(event, Stopped):
            self.stopped.set()


class StageTimes:
    """Seconds the streams spend in the encoder and in the decoder, while in a `with`
    (StreamingParakeet's two methods are wrapped with timers for that long)."""

    METHODS = {"encoder": "_encode", "decoder": "_decode"}

    def __init__(self):
        self.seconds = dict.fromkeys(self.METHODS, 0.0)
        self._originals: dict[str, object] = {}

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.METHODS, 0.0)

    def __enter__(self) -> StageTimes:
        for stage, name in self.METHODS.items():
            original = getattr(StreamingParakeet, name)
            self._originals[name] = original

            def timed(stream, *args, _original=original, _stage=stage):
                started = time.perf_counter()
                try:
                    return _original(stream, *args)
                finally:
                    self.seconds[_stage] += time.perf_counter() - started

            setattr(StreamingParakeet, name, timed)
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._originals.items():
            setattr(StreamingParakeet, name, original)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_setting(
    model,
    audio: np.ndarray,
    context: tuple[int, int],
    depth: int,
    pace: bool = True,
    bf16_weights: bool | None = None,
    compiled: bool | None = None,
) -> dict:
    with StageTimes() as stages:
        return _run_setting(model, audio, context, depth, pace, bf16_weights, compiled, stages)


def layers_kind(model, compiled: bool | None, bf16_weights: bool | None) -> str:
    """Which streaming layers a setting runs (asr.streaming picks them the same way)."""
    if bf16_weights_pay_off(model) if bf16_weights is None else bf16_weights:
        return "numpy, bfloat16 weights (asr.cpu_streaming)"
    if not (compile_pays_off() if compiled is None else compiled):
        return "MLX layers, one by one"
    if cuda_streaming.supports(model.encoder):
        return "CUDA kernels (asr.cuda_streaming)"
    return "MLX compiled (asr.compiled_streaming)"


def _run_setting(model, audio, context, depth, pace, bf16_weights, compiled, stages) -> dict:
    rate = model.preprocessor_config.sample_rate
    block = int(BLOCK_SECONDS * rate)
    timeline = Timeline()
    engine = TranscriptionEngine(
        model,
        timeline,
        context_size=context,
        depth=depth,
        bf16_weights=bf16_weights,
        compiled=compiled,
    ).start()
    engine.wait_idle(600)  # ready: its stream made (and bfloat16 weights, where used)
    timeline.start_wall = time.perf_counter()
    stages.reset()  # from here on: not the warm-up
    fed_at: list[float] = []
    for i, first in enumerate(range(0, len(audio), block)):
        due = timeline.start_wall + (i + 1) * BLOCK_SECONDS  # the block's audio has ended
        if pace:
            time.sleep(max(0.0, due - time.perf_counter()))
        else:  # as fast as it goes: one block per update, for compute figures
            engine.wait_idle()
        engine.feed(audio[first : first + block])
        fed_at.append(time.perf_counter())
    live_end = time.perf_counter()
    engine.stop(timeout=600)
    timeline.stopped.wait(600)

    def heard(end_seconds: float) -> float:
        """Wall time when the block holding this audio moment was fed."""
        index = min(len(fed_at) - 1, int(np.ceil(end_seconds / BLOCK_SECONDS)) - 1)
        return fed_at[max(index, 0)]

    draft_latency, final_latency = [], []
    for start, (end, final_wall) in timeline.final_seen.items():
        if final_wall > live_end:  # finalized by the stop at the end, not live
            continue
        final_latency.append(final_wall - heard(end))
        draft_latency.append(timeline.draft_seen[start] - heard(end))
    progress = timeline.progress
    compute = sum(p.compute_seconds for p in progress)
    seconds = len(audio) / rate
    lags = [p.lag_seconds for p in progress]
    return {
        "context": list(context),
        "depth": depth,
        "bf16_weights": bf16_weights_pay_off(model) if bf16_weights is None else bf16_weights,
        "compiled": compile_pays_off() if compiled is None else compiled,
        "encoder_layers": layers_kind(model, compiled, bf16_weights),
        "audio_seconds": seconds,
        "updates": len(progress),
        "compute_per_audio_second": compute / seconds,
        "encoder_per_audio_second": stages.seconds["encoder"] / seconds,
        "decoder_per_audio_second": stages.seconds["decoder"] / seconds,
        "max_lag_seconds": max(lags) if lags else None,
        "lag_last_minute_max": max(
            (p.lag_seconds for p in progress if p.audio_seconds > seconds - 60), default=None
        ),
        "dropped_seconds": progress[-1].dropped_seconds if progress else None,
        "draft_latency_p50": percentile(draft_latency, 50),
        "draft_latency_p95": percentile(draft_latency, 95),
        "final_latency_p50": percentile(final_latency, 50),
        "final_latency_p95": percentile(final_latency, 95),
        "final_tokens": len(timeline.final_seen),
    }


REFERENCE_SCRIPT = """
import json, sys, time
import mlx.core as mx
from parakeet_mlx import from_pretrained
from parakeet_mlx.audio import load_audio
folder, audio_path, blocks = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = from_pretrained(folder, dtype=mx.float32)
audio = load_audio(audio_path, 16000, mx.float32)
times = []
try:
    with model.transcribe_stream((256, 256), 1, keep_original_attention=True) as s:
        for i in range(blocks):
            t0 = time.perf_counter(); s.add_audio(audio[i * 8000:(i + 1) * 8000])
            times.append(time.perf_counter() - t0)
    print(json.dumps({"engine": "parakeet-mlx 0.6.0", "attention": "full (local needs Metal)",
                      "block_seconds": 0.5, "compute_per_block": times,
                      "compute_per_audio_second": sum(times) / (0.5 * len(times))}))
except Exception as e:
    print(json.dumps({"engine": "parakeet-mlx 0.6.0", "error": f"{type(e).__name__}: {e}"}))
"""


def measure_reference(folder: Path, audio_path: Path, blocks: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", REFERENCE_SCRIPT, str(folder), str(audio_path), str(blocks)],
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return {"engine": "parakeet-mlx 0.6.0", "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="audio of the default run")
    parser.add_argument(
        "--other-minutes", type=float, default=1.0, help="audio of the other settings' runs"
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["256,16,1", "256,8,1", "256,32,1", "256,16,2", "128,16,1"],
        help="left,right,depth[,f32][,eager]; the first is the default run; f32: float32 "
        "weights where the engine would choose bfloat16; eager: MLX layers not compiled "
        "where the engine would compile them (a GPU)",
    )
    parser.add_argument("--reference-blocks", type=int, default=6)
    parser.add_argument(
        "--no-pace",
        action="store_true",
        help="feed blocks as fast as updates finish (compute only; latencies "
        "are then not a live stream's)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import mlx.core as mx

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tdt-0.6b-random"
        audio_path = Path(tmp) / "speech.wav"
        make_audio(audio_path, args.minutes * 60)
        make_checkpoint(folder, audio_path)
        model = asr.from_pretrained(str(folder))
        audio = np.array(load_audio(audio_path, 16000))
        runs = []
        for i, setting in enumerate(args.settings):
            left, right, depth, *options = setting.split(",")
            left, right, depth = int(left), int(right), int(depth)
            bf16 = False if "f32" in options else None
            compiled = False if "eager" in options else None
            minutes = args.minutes if i == 0 else args.other_minutes
            clip = audio[: int(minutes * 60 * 16000)]
            report = run_setting(
                model,
                clip,
                (left, right),
                depth,
                pace=not args.no_pace,
                bf16_weights=bf16,
                compiled=compiled,
            )
            report["device"] = str(mx.default_device())
            print(json.dumps(report), flush=True)
            runs.append(report)
        reference = None
        if args.reference_blocks > 0:
            reference = measure_reference(folder, audio_path, args.reference_blocks)
            print(json.dumps(reference), flush=True)

    report = {
        "benchmark": "streaming",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "blas": blas_in_use(),
        "block_seconds": BLOCK_SECONDS,
        "runs": runs,
        "parakeet_mlx": reference,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "streaming_unpaced.json" if args.no_pace else "streaming.json"
    report["paced"] = not args.no_pace
    (args.out / name).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
