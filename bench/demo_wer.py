"""Word error rates of the demo model (tui/demo) on held-out espeak-ng speech: offline with
its local attention and with full attention, and streaming at several contexts.

    python bench/demo_wer.py [--clips 100] [--contexts 64,64 256,16 256,32]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jiwer
import mlx.core as mx

import asr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # train/ is not installed
from train.speech_data import held_out_clips  # noqa: E402
from tui.demo import DEMO_MODEL  # noqa: E402

FIRST_SEED = 4_000_000_000  # apart from training's seeds and the tests'


def normalized(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalpha() or c in " '").split())


def offline(model, clips) -> list[str]:
    return [normalized(model.transcribe_audio(mx.array(a)).text) for _, a in clips]


def streamed(model, clips, context, block: int = 8000) -> list[str]:
    out = []
    for _, audio in clips:
        with model.transcribe_stream(context) as stream:
            for start in range(0, len(audio), block):
                stream.add_audio(audio[start : start + block])
            stream.finish_audio()
            out.append(normalized(stream.result.text))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--contexts", nargs="*", default=["64,64", "256,16", "256,32"])
    args = parser.parse_args()
    clips = held_out_clips(range(FIRST_SEED, FIRST_SEED + args.clips))
    refs = [normalized(t) for t, _ in clips]
    seconds = sum(len(a) for _, a in clips) / 16000
    model = asr.from_pretrained(str(DEMO_MODEL))
    figures: dict[str, object] = {"clips": len(clips), "audio_seconds": round(seconds, 1)}
    local_context = model.encoder.attention_context
    for name, setting in (("offline_local", local_context), ("offline_full", None)):
        if setting is None:
            model.encoder.set_attention_model("rel_pos")
        else:
            model.encoder.set_attention_model("rel_pos_local_attn", setting)
        started = time.perf_counter()
        figures[name] = round(jiwer.wer(refs, offline(model, clips)), 4)
        figures[f"{name}_seconds"] = round(time.perf_counter() - started, 2)
        print(name, figures[name], flush=True)
    model.encoder.set_attention_model("rel_pos_local_attn", local_context)
    figures["stream_default_context"] = list(model.stream_context)
    for text in args.contexts:
        context = tuple(int(c) for c in text.split(","))
        started = time.perf_counter()
        wer = jiwer.wer(refs, streamed(model, clips, context))
        figures[f"streaming_{context[0]}_{context[1]}"] = round(wer, 4)
        figures[f"streaming_{context[0]}_{context[1]}_seconds"] = round(
            time.perf_counter() - started, 2
        )
        print("streaming", context, round(wer, 4), flush=True)
    out = Path(__file__).parent / "results" / "demo_wer.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
