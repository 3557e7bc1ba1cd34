"""Runs NeMo itself on audio files and saves its log-mel, encoder output and greedy tokens.

Run in a venv with nemo-toolkit[asr] (see README.md):
    python reference.py MODEL.nemo OUTDIR AUDIO...

Audio that is not 16 kHz mono is brought there by NeMo's own loader
(`AudioSegment.from_file(..., target_sr=16000, channel_selector="average")`: the channel
mean, then librosa's default resampler, soxr HQ), which is what `transcribe` does.

Writes, per clip NAME (the file's stem): NAME.npz (compressed) holding `mel` (frames x
features, the preprocessor's output over its valid frames) and `enc` (frames x d_model,
the encoder's output), and, in reference.json, the greedy token ids, text, frame indices
and frame counts. For CTC the token ids are NeMo's per-frame argmax (before its collapse
of repeats and blanks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from nemo.collections.asr.models import ASRModel
from nemo.collections.asr.parts.preprocessing.segment import AudioSegment


def load_16k(path: str) -> tuple[np.ndarray, str]:
    info = sf.info(path)
    if info.samplerate == 16000 and info.channels == 1:
        audio, _ = sf.read(path, dtype="float32")
        return audio, "soundfile"
    segment = AudioSegment.from_file(path, target_sr=16000, channel_selector="average")
    how = f"NeMo AudioSegment from {info.samplerate} Hz x {info.channels}"
    return segment.samples.astype(np.float32), how


def main() -> None:
    model_path, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    model = ASRModel.restore_from(model_path, map_location="cpu")
    model.eval()
    assert not model.preprocessor.featurizer.training  # dither only applies in training
    ctc = not hasattr(model, "joint")
    results = {}
    with torch.no_grad():
        for path in sys.argv[3:]:
            name = Path(path).stem
            audio, how = load_16k(path)
            x = torch.tensor(audio)[None]
            n = torch.tensor([x.shape[1]])
            mel, mel_len = model.preprocessor(input_signal=x, length=n)
            enc, enc_len = model.encoder(audio_signal=mel, length=mel_len)
            if ctc:
                logp = model.decoder(encoder_output=enc)
                hyp = model.decoding.ctc_decoder_predictions_tensor(
                    logp, decoder_lengths=enc_len, return_hypotheses=True
                )
            else:
                hyp = model.decoding.rnnt_decoder_predictions_tensor(
                    encoder_output=enc, encoded_lengths=enc_len, return_hypotheses=True
                )
            h = hyp[0][0] if isinstance(hyp, tuple) else hyp[0]
            h = h[0] if isinstance(h, list) else h
            seq = h.y_sequence
            ids = [int(t) for t in (seq.tolist() if torch.is_tensor(seq) else seq)]
            steps = h.timestamp
            steps = steps.tolist() if torch.is_tensor(steps) else steps
            steps = steps if isinstance(steps, list) else []
            mel_frames, enc_frames = int(mel_len[0]), int(enc_len[0])
            np.savez_compressed(
                out / f"{name}.npz",
                mel=mel[0, :, :mel_frames].T.numpy(),
                enc=enc[0, :, :enc_frames].T.numpy(),
            )
            results[name] = {
                "tokens": ids,
                "text": h.text,
                "frames": [int(s) for s in steps],
                "mel_frames": mel_frames,
                "enc_frames": enc_frames,
                "samples_16k": len(audio),
                "loaded_by": how,
            }
    (out / "reference.json").write_text(json.dumps(results, indent=1) + "\n")
    for name, r in results.items():
        print(name, r["mel_frames"], r["enc_frames"], len(r["tokens"]), len(set(r["tokens"])),
              repr(r["text"][:60]))  # fmt: skip


if __name__ == "__main__":
    main()
