"""Streaming against offline on a model that really recognizes speech (the demo model, on
held-out espeak-ng speech): word error rates of our engine and of parakeet-mlx 0.6.0 side by
side, with the same checkpoint, clips, context and 0.5 s blocks.

parakeet-mlx's local attention needs Metal, so both run with the checkpoint's attention
replaced by full attention offline and `keep_original_attention=True` while streaming.
parakeet-mlx normalizes each block's features by that block's own statistics; ours follows
the statistics of everything heard so far.

    python bench/streaming_accuracy.py [--clips 40] [--context 256 16]
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

import asr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # train/ is not installed
from train.speech_data import held_out_clips  # noqa: E402
from tui.demo import DEMO_MODEL  # noqa: E402

FIRST_SEED = 4_000_000_000
BLOCK = 8000  # 0.5 s


def normalized(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalpha() or c in " '").split())


def ours(clips, context) -> dict[str, list[str]]:
    model = asr.from_pretrained(str(DEMO_MODEL))
    model.encoder.set_attention_model("rel_pos")
    offline = [normalized(model.transcribe_audio(mx.array(a)).text) for _, a in clips]
    streamed = []
    for _, audio in clips:
        with model.transcribe_stream(context, keep_original_attention=True) as stream:
            for start in range(0, len(audio), BLOCK):
                stream.add_audio(audio[start : start + BLOCK])
            stream.finish_audio()
            streamed.append(normalized(stream.result.text))
    return {"offline": offline, "streaming": streamed}


def parakeet_mlx(clips, context) -> dict[str, list[str]]:
    from parakeet_mlx import from_pretrained
    from parakeet_mlx.audio import get_logmel

    model = from_pretrained(str(DEMO_MODEL))
    model.encoder.set_attention_model("rel_pos")
    offline = [
        normalized(model.generate(get_logmel(mx.array(a), model.preprocessor_config))[0].text)
        for _, a in clips
    ]
    streamed = []
    for _, audio in clips:
        with model.transcribe_stream(context_size=context, keep_original_attention=True) as s:
            for start in range(0, len(audio), BLOCK):
                block = audio[start : start + BLOCK]
                # its STFT fails on a block shorter than a window: pad the tail with silence
                s.add_audio(mx.array(np.pad(block, (0, BLOCK - len(block)))))
            streamed.append(normalized(s.result.text))
    return {"offline": offline, "streaming": streamed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--context", type=int, nargs=2, default=(256, 16))
    args = parser.parse_args()
    context = tuple(args.context)
    clips = held_out_clips(range(FIRST_SEED, FIRST_SEED + args.clips))
    refs = [normalized(t) for t, _ in clips]
    figures: dict[str, object] = {"clips": len(clips), "context": list(context)}
    for name, run in (("ours", ours), ("parakeet_mlx", parakeet_mlx)):
        started = time.perf_counter()
        hypotheses = run(clips, context)
        for mode, texts in hypotheses.items():
            figures[f"{name}_{mode}_wer"] = round(jiwer.wer(refs, texts), 4)
        figures[f"{name}_seconds"] = round(time.perf_counter() - started, 1)
        print(name, {k: v for k, v in figures.items() if k.startswith(name)}, flush=True)
    out = Path(__file__).parent / "results" / "streaming_accuracy.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
