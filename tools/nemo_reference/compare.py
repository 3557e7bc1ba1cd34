"""Prints, per model and clip of tests/fixtures/nemo_unseen, how far the engine is from
NeMo at each stage (run with the project's Python, from the repository root):
    python tools/nemo_reference/compare.py

mel: max |engine - NeMo| of the normalized log-mel, from the audio file;
enc|mel: the encoder's output given NeMo's mel; enc: the same from the engine's own mel;
dec|enc: greedy tokens (and frames) given NeMo's encoder output; e2e: the same from audio.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# isort: off
import asr  # (loads the fast BLAS before anything imports MLX)
import mlx.core as mx
import numpy as np

from asr.audio import get_logmel, load_audio

# isort: on

ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "nemo_unseen"
CLIPS = {
    "harbor": "harbor.wav",
    "budget": "budget.wav",
    "museum": "museum.wav",
    "library_44k_stereo": "library_44k_stereo.flac",
}


def collapse(labels: list[int], blank: int) -> list[int]:
    out, previous = [], blank
    for label in labels:
        if label != blank and label != previous:
            out.append(label)
        previous = label
    return out


def main() -> None:
    names = sys.argv[1:] or sorted(p.parent.name for p in ROOT.glob("*/mlx"))
    print(f"{'model':16s} {'clip':19s} {'mel':>9s} {'enc|mel':>9s} {'enc':>9s} dec|enc e2e")
    for name in names:
        model = asr.from_pretrained(str(ROOT / name / "mlx"), dtype=mx.float32)
        references = json.loads((ROOT / name / "reference" / "reference.json").read_text())
        ctc = isinstance(model, asr.ParakeetCTC)
        for clip, ref in references.items():
            with np.load(ROOT / name / "reference" / f"{clip}.npz") as data:
                nemo_mel, nemo_enc = data["mel"], data["enc"]
            tokens = collapse(ref["tokens"], model.blank) if ctc else ref["tokens"]
            expected = (tokens, None if ctc else ref["frames"])

            def same(hyp, expected=expected, ctc=ctc):
                return (hyp.tokens, None if ctc else hyp.frames) == expected

            audio = load_audio(ROOT / "audio" / CLIPS[clip], model.preprocessor_config.sample_rate)
            mel = get_logmel(audio, model.preprocessor_config)
            mel_err = (
                float(np.abs(np.array(mel[0]) - nemo_mel).max())
                if mel.shape[1:] == nemo_mel.shape
                else float("nan")
            )
            enc_given, _ = model.encoder(mx.array(nemo_mel)[None])
            enc_own, lengths = model.encoder(mel)
            enc_given_err = float(np.abs(np.array(enc_given[0]) - nemo_enc).max())
            enc_own_err = (
                float(np.abs(np.array(enc_own[0]) - nemo_enc).max())
                if enc_own.shape[1] == len(nemo_enc)
                else float("nan")
            )
            dec = same(model.decode(mx.array(nemo_enc)[None])[0])
            e2e = same(model.decode(enc_own, lengths)[0])
            print(
                f"{name:16s} {clip:19s} {mel_err:9.2e} {enc_given_err:9.2e} {enc_own_err:9.2e} "
                f"{'same' if dec else 'DIFF':7s} {'same' if e2e else 'DIFF'}"
            )


if __name__ == "__main__":
    main()
