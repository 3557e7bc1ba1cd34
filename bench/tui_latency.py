"""The app's responsiveness: key press to the next screen update while the engine transcribes
a long recording as fast as it can.

The app runs headless (Textual's pilot) on the File pane with a long recording. A thread
stands in for the terminal's input thread and posts key presses (right/left: skip 5 s, which
moves the seek bar) at random intervals; the time from posting a key to the first screen
update after its handler ran is one sample. Samples are taken only while the engine is
transcribing. Prints and saves JSON.

    python bench/tui_latency.py [--model FOLDER_OR_REPO | --full-size] [--minutes 15]

The default model is the tests' small NeMo TDT model, which transcribes about 50 times
faster than real time here: the most engine messages per second the UI must absorb, and an
engine thread busy in Python (holding the GIL) most of the time. --full-size builds the
parakeet-tdt-0.6b architecture with random weights calibrated to speech (bench/offline.py)
and transcribes espeak-ng speech with it: the engine's time goes to MLX (GIL released).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from textual import events  # noqa: E402

import asr  # noqa: E402  (loads the fast BLAS before MLX)
from tui.app import ParakeetApp  # noqa: E402
from tui.app_options import AppOptions  # noqa: E402
from tui.widgets.file.file_pane import FilePane  # noqa: E402

FIXTURE_MODEL = REPO / "tests" / "fixtures" / "nemo" / "tdt" / "mlx"
CLIPS = [REPO / "tests" / "fixtures" / "nemo" / "audio" / f"speech{i}.wav" for i in range(3)]


def full_size_model_and_speech(folder: Path, minutes: float) -> tuple[str, Path]:
    sys.path.insert(0, str(HERE))
    from offline import make_audio, make_checkpoint

    speech = folder / "speech.wav"
    make_audio(speech, minutes * 60)
    make_checkpoint(folder / "tdt-0.6b-random", speech)
    return str(folder / "tdt-0.6b-random"), speech


def _shown(model_id: str) -> str:
    path = Path(model_id)
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else model_id


def long_recording(path: Path, minutes: float) -> float:
    clips = [sf.read(clip, dtype="float32")[0] for clip in CLIPS]
    once = np.concatenate(clips)
    repeats = int(np.ceil(minutes * 60 * 16000 / len(once)))
    sf.write(path, np.tile(once, repeats), 16000)
    return repeats * len(once) / 16000


class LatencyProbe:
    """Times from a posted key to the first screen update after its handler ran."""

    def __init__(self, app: ParakeetApp) -> None:
        self.app = app
        self.samples: list[float] = []
        self.lock = threading.Lock()
        self._posted_at: float | None = None
        self._handled = False
        self.done = threading.Event()
        display = app._display

        def timed_display(screen, renderable) -> None:
            display(screen, renderable)
            if renderable is None:
                return
            with self.lock:
                if self._posted_at is not None and self._handled:
                    self.samples.append(time.perf_counter() - self._posted_at)
                    self._posted_at = None
                    self.done.set()

        app._display = timed_display  # type: ignore[method-assign]
        skip = FilePane.action_skip

        def timed_skip(pane, seconds) -> None:
            skip(pane, seconds)
            with self.lock:
                self._handled = True

        FilePane.action_skip = timed_skip  # type: ignore[method-assign]

    def press(self, key: str) -> bool:
        """Posts a key as the terminal's input thread would; waits for its screen update."""
        with self.lock:
            self._posted_at = time.perf_counter()
            self._handled = False
            self.done.clear()
        self.app.post_message(events.Key(key, None))
        return self.done.wait(5.0)


async def run(model_id: str | None, minutes: float, presses: int, seed: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="tui-latency-"))
    os.environ["PARAKEET_TUI_DATA_DIR"] = str(folder / "data")
    if model_id is None:
        model_id, recording = full_size_model_and_speech(folder, minutes)
        audio_seconds = sf.info(recording).duration
    else:
        recording = folder / "long.wav"
        audio_seconds = long_recording(recording, minutes)
    model = asr.from_pretrained(model_id)
    options = AppOptions(recording=recording, model=model_id, audio_output=False)
    app = ParakeetApp(options, model=model, offer_recovery=False)
    rng = random.Random(seed)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.file_pane
        while pane.bridge is None:
            await pilot.pause(0.05)
        app.query_one("#file-transcript").focus()
        await pilot.pause(0.5)  # past the first updates
        probe = LatencyProbe(app)
        transcribing_at_start = pane.bridge.transcribed_seconds
        started = time.perf_counter()

        def press_keys() -> None:
            for number in range(presses):
                if pane.bridge.stopped:
                    break
                time.sleep(rng.uniform(0.02, 0.1))
                probe.press("right" if number % 2 == 0 else "left")

        presser = threading.Thread(target=press_keys)
        presser.start()
        while presser.is_alive():
            await pilot.pause(0.05)
        elapsed = time.perf_counter() - started
        transcribed = pane.bridge.transcribed_seconds - transcribing_at_start
        still_transcribing = not pane.bridge.stopped
        if pane.feeder is not None:
            pane.feeder.cancel()
    shutil.rmtree(folder, ignore_errors=True)
    full = model_id.endswith("tdt-0.6b-random")
    samples = np.array(probe.samples) * 1000
    return {
        "benchmark": "tui_latency",
        "what": "key press (posted from another thread) to the next screen update, ms",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "model": "parakeet-tdt-0.6b architecture, random weights" if full else _shown(model_id),
        "recording_seconds": round(audio_seconds, 1),
        "presses": presses,
        "samples": int(samples.size),
        "p50_ms": round(float(np.percentile(samples, 50)), 2),
        "p95_ms": round(float(np.percentile(samples, 95)), 2),
        "p99_ms": round(float(np.percentile(samples, 99)), 2),
        "max_ms": round(float(samples.max()), 2),
        "seconds_measured": round(elapsed, 1),
        "audio_transcribed_meanwhile_s": round(transcribed, 1),
        "engine_speed_x_real_time": round(transcribed / elapsed, 1),
        "engine_still_transcribing_at_end": still_transcribing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(FIXTURE_MODEL))
    parser.add_argument("--full-size", action="store_true", help="the 0.6b architecture")
    parser.add_argument("--minutes", type=float, help="recording length (15; 3 full-size)")
    parser.add_argument("--presses", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/")
    args = parser.parse_args()
    model = None if args.full_size else args.model
    minutes = args.minutes or (3.0 if args.full_size else 15.0)
    result = asyncio.run(run(model, minutes, args.presses, args.seed))
    print(json.dumps(result, indent=1))
    name = "tui_latency_full_size.json" if args.full_size else "tui_latency.json"
    out = args.out or HERE / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    sys.stdout.flush()
    os._exit(0)  # as the app does: MLX's threads can abort the interpreter's teardown


if __name__ == "__main__":
    main()
