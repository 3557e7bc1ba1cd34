"""How streaming's feature normalization changes its tokens: agreement of streaming tokens
with offline tokens (the same local attention, the whole recording's statistics) for three
ways of normalizing the log-mel features while the recording is still growing:

- per_block: each block's new frames by that block's own statistics (parakeet-mlx 0.6.0's
  way; emulated here in our engine, so that only the normalization differs);
- running: by the statistics of everything heard so far (our engine's default);
- recording: by the whole recording's statistics, known in advance (the exactness mode's).

On every NeMo fixture model (tests/fixtures: tiny random-init models from NeMo itself, on
their clips, concatenated) and on long audio with the demo model (held-out espeak-ng speech,
several minutes, where the word error rate against the spoken text is reported too).
Blocks of 0.5 s, depth 1, each model's streaming context.

    python bench/stream_normalization.py [--minutes 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jiwer
import mlx.core as mx
import numpy as np
import soundfile as sf

import asr
from asr.audio import feature_statistics, log_mel_spectrogram
from asr.streaming import StreamingParakeet
from asr.streaming_features import STD_FLOOR

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train/ is not installed
from train.speech_data import held_out_clips  # noqa: E402
from tui.demo import DEMO_MODEL  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
BLOCK = 8000  # 0.5 s
FIRST_SEED = 5_000_000_000


class PerBlockStream(StreamingParakeet):
    """Normalizes each update's new mel frames by their own mean and standard deviation,
    once, as a stream that sees only the current block would."""

    def reset(self) -> None:
        super().reset()
        self._per_block = np.zeros((0, self.model.preprocessor_config.features), np.float32)

    def _normalized(self, first_frame: int) -> np.ndarray:
        end = self._raw_mel_start + len(self._raw_mel)
        have = len(self._per_block)
        if end > have:
            new = self._raw_mel[have - self._raw_mel_start :]
            axis = None if self.model.preprocessor_config.normalize == "all_features" else 0
            mean = new.mean(axis=axis)
            std = new.std(axis=axis, ddof=1) if len(new) > 1 else np.zeros_like(mean)
            self._per_block = np.concatenate([self._per_block, (new - mean) / (std + STD_FLOOR)])
        return self._per_block[first_frame:]


def token_agreement(streamed: list[int], offline: list[int]) -> float:
    """1 - token edit distance / offline tokens (1.0: identical)."""
    if not offline:
        return 1.0 if not streamed else 0.0
    previous = list(range(len(streamed) + 1))
    for i, a in enumerate(offline, 1):
        current = [i]
        for j, b in enumerate(streamed, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return 1.0 - previous[-1] / len(offline)


def recording_statistics(model, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mel = log_mel_spectrogram(mx.array(audio), model.preprocessor_config)
    mean, std = feature_statistics(mel, model.preprocessor_config.normalize)
    return np.array(mean), np.array(std)


def stream_tokens(model, audio: np.ndarray, mode: str) -> tuple[list, float]:
    context = model.stream_context
    kwargs = {}
    if mode == "recording":
        kwargs["feature_stats"] = recording_statistics(model, audio)
    kind = PerBlockStream if mode == "per_block" else StreamingParakeet
    started = time.perf_counter()
    with kind(model, context, 1, **kwargs) as stream:
        for start in range(0, len(audio), BLOCK):
            stream.add_audio(audio[start : start + BLOCK])
    return stream.finalized_tokens, time.perf_counter() - started


def compare(model, audio: np.ndarray, text: str | None = None) -> dict:
    saved = model.encoder.attention_context
    model.encoder.set_attention_model("rel_pos_local_attn", model.stream_context)
    try:
        offline = model.transcribe_audio(mx.array(audio))
    finally:
        if saved is None:
            model.encoder.set_attention_model("rel_pos")
        else:
            model.encoder.set_attention_model("rel_pos_local_attn", saved)
    offline_ids = [t.id for t in offline.tokens]
    report = {
        "audio_seconds": len(audio) / 16000,
        "context": list(model.stream_context),
        "offline_tokens": len(offline_ids),
    }
    if text is not None:
        report["offline_wer"] = jiwer.wer(normalized(text), normalized(offline.text))
    for mode in ("per_block", "running", "recording"):
        tokens, seconds = stream_tokens(model, audio, mode)
        entry = {
            "token_agreement": round(token_agreement([t.id for t in tokens], offline_ids), 4),
            "tokens": len(tokens),
        }
        if text is not None:
            words = "".join(t.text for t in tokens)
            entry["wer"] = round(jiwer.wer(normalized(text), normalized(words)), 4)
        report[mode] = entry
    return report


def normalized(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalpha() or c in " '").split())


def fixture_runs() -> dict:
    runs = {}
    for group in ("nemo", "nemo_unseen"):
        clips = sorted((FIXTURES / group / "audio").glob("*.wav"))
        audio = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])
        for folder in sorted((FIXTURES / group).iterdir()):
            if not (folder / "mlx" / "config.json").exists():
                continue
            model = asr.from_pretrained(str(folder / "mlx"))
            runs[f"{group}/{folder.name}"] = compare(model, audio)
            print(folder.name, json.dumps(runs[f"{group}/{folder.name}"]), flush=True)
    return runs


def long_audio_run(minutes: float) -> dict:
    pieces, texts, seed, total = [], [], FIRST_SEED, 0
    while total < minutes * 60 * 16000:
        text, audio = held_out_clips([seed])[0]
        pieces.append(audio)
        texts.append(text)
        total += len(audio)
        seed += 1
    model = asr.from_pretrained(str(DEMO_MODEL))
    report = compare(model, np.concatenate(pieces), " ".join(texts))
    print("demo", json.dumps(report), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="long audio for the demo model")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    results = {"fixtures": fixture_runs(), "demo_long_audio": long_audio_run(args.minutes)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream_normalization.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
