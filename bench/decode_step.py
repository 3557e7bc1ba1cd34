"""The TDT greedy step, this engine beside parakeet-mlx 0.6.0, on the same encoder output.

Full parakeet-tdt-0.6b architecture, random weights calibrated to speech-like token rates
(bench/offline.py). Both decoders get the same encoder frames; the time per step is each
one's decoding time over the steps of the greedy search (the same rule in both). Ours is
timed as `decode` runs it (on an NVIDIA GPU, the search as one CUDA kernel) and on the host
loop (`ours_host_*`), which the CPU and Metal use.

    python bench/decode_step.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from offline import make_audio, make_checkpoint  # noqa: E402  (imports asr first)

import asr  # noqa: E402

# parakeet-mlx imports librosa (for its filterbank) and huggingface_hub at import time; a
# GPU machine without them gets small stand-ins, with our identical filterbank.
REFERENCE_SCRIPT = """
import json, sys, time, types
try:
    import librosa  # noqa: F401
except ImportError:
    sys.path.insert(0, sys.argv[4])
    from asr.mel_filters import mel_filterbank
    filters = types.SimpleNamespace(mel=lambda sr, n_fft, n_mels, fmin, fmax, norm:
                                    mel_filterbank(sr, n_fft, n_mels, fmin, fmax, norm))
    sys.modules["librosa"] = types.SimpleNamespace(filters=filters)
try:
    import huggingface_hub  # noqa: F401
except ImportError:
    def missing(*a, **k):
        raise OSError("offline")
    sys.modules["huggingface_hub"] = types.SimpleNamespace(hf_hub_download=missing)
import numpy as np
import mlx.core as mx
from parakeet_mlx.utils import from_pretrained
model = from_pretrained(sys.argv[1], dtype=mx.float32)
features = mx.array(np.load(sys.argv[2]))[None]
mx.eval(features)
model.decode(features[:, :50], mx.array([50]))  # warm up
start = time.perf_counter()
tokens, _ = model.decode(features, mx.array([features.shape[1]]))
print(json.dumps({"decode_s": time.perf_counter() - start, "tokens": len(tokens[0]),
                  "ids": [t.id for t in tokens[0]]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import mlx.core as mx

    from asr.audio import get_logmel, load_audio

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tdt-0.6b-random"
        audio_path = Path(tmp) / "speech.wav"
        make_audio(audio_path, args.seconds)
        make_checkpoint(folder, audio_path)
        model = asr.from_pretrained(str(folder), dtype=mx.float32)
        mel = get_logmel(load_audio(audio_path, 16000), model.preprocessor_config)
        features, _ = model.encoder(mel)
        mx.eval(features)
        model.decode(features[:, :50])  # warm up (compiles the GPU search where it runs)
        start = time.perf_counter()
        hyp = model.decode(features)[0]
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        host = model.greedy(features[0], on_device=False)
        host_s = time.perf_counter() - start
        features_path = Path(tmp) / "features.npy"
        np.save(features_path, np.array(features[0]))
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                REFERENCE_SCRIPT,
                str(folder),
                str(features_path),
                "",
                str(HERE.parent),
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
        )
    lines = proc.stdout.strip().splitlines()
    reference = json.loads(lines[-1]) if lines else {"error": proc.stderr.strip()[-500:]}
    report = {
        "benchmark": "decode_step",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "device": str(mx.default_device()),
        "encoder_frames": int(features.shape[1]),
        "steps": hyp.steps,
        "tokens": len(hyp.tokens),
        "ours_search": "CUDA kernel" if model.device_search() else "host",
        "ours_decode_s": ours_s,
        "ours_ms_per_step": 1000 * ours_s / hyp.steps,
        "ours_host_decode_s": host_s,
        "ours_host_ms_per_step": 1000 * host_s / host.steps,
        "same_tokens_as_host": host.tokens == hyp.tokens and host.frames == hyp.frames,
    }
    if "decode_s" in reference:
        report["parakeet_mlx_decode_s"] = reference["decode_s"]
        report["parakeet_mlx_ms_per_step"] = 1000 * reference["decode_s"] / hyp.steps
        report["same_tokens"] = reference["ids"] == hyp.tokens
        report["speedup_per_step"] = reference["decode_s"] / ours_s
    else:
        report["parakeet_mlx"] = reference
    print(json.dumps(report, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decode_step.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
