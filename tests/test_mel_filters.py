"""Our mel filterbank against librosa's (NeMo builds its filters with librosa)."""

from __future__ import annotations

import numpy as np
import pytest

from asr.mel_filters import mel_filterbank

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize(
    "sample_rate, n_fft, n_mels, fmin, fmax, norm",
    [
        (16000, 512, 80, 0.0, None, "slaney"),
        (16000, 512, 128, 0.0, None, "slaney"),
        (8000, 256, 64, 20.0, 3800.0, "slaney"),
        (44100, 2048, 128, 0.0, None, "slaney"),
        (16000, 400, 80, 0.0, 8000.0, None),
        (16000, 401, 80, 0.0, None, "slaney"),
    ],
)
def test_filters_match_librosa(sample_rate, n_fft, n_mels, fmin, fmax, norm):
    ours = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, norm)
    theirs = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, norm=norm
    )
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-6 * np.abs(theirs).max() + 1e-9
