"""Log-mel frames of a stream, exactly as the whole recording would give them, and the
normalization statistics to use while the recording is still growing.

Frame t is the window of samples t*hop - n_fft/2 .. t*hop + n_fft/2 (after preemphasis, which
reads one sample before). A frame is computed once all of its samples have arrived; at the
end of the stream the last frames see zeros beyond the end, as offline.
"""

from __future__ import annotations

import math

import numpy as np

from .audio import _log_mel_numpy, _n_fft
from .config import PreprocessArgs

STD_FLOOR = 1e-5  # NeMo adds it to the standard deviation


class RunningStatistics:
    """Per-feature mean and standard deviation (Bessel's correction) of all frames so far."""

    def __init__(self, features: int):
        self.count = 0
        self.total = np.zeros(features, np.float64)
        self.squares = np.zeros(features, np.float64)

    def add(self, frames: np.ndarray) -> None:
        self.count += len(frames)
        self.total += frames.sum(axis=0, dtype=np.float64)
        self.squares += np.square(frames, dtype=np.float64).sum(axis=0)

    def mean_std(self, normalize: str = "per_feature") -> tuple[np.ndarray, np.ndarray]:
        """Per feature, or one pair over every value ("all_features")."""
        n, total, squares = max(self.count, 1), self.total, self.squares
        if normalize == "all_features":
            n, total, squares = n * len(total), total.sum(), squares.sum()
        mean = total / n
        variance = (squares - n * mean * mean) / max(n - 1, 1)
        std = np.sqrt(np.maximum(variance, 0.0))
        return np.asarray(mean, np.float32), np.asarray(std, np.float32)


class StreamingFeatures:
    """Accepts audio blocks of any size and yields the raw log-mel frames they complete."""

    def __init__(self, args: PreprocessArgs):
        self.args = args
        self.hop = args.hop_length
        half = _n_fft(args) // 2
        # frames of audio to keep before the first frame not yet computed: its window and
        # the one sample preemphasis reads before it
        self.history = math.ceil((half + 1) / self.hop)
        self.reach = half  # samples a frame needs after its centre
        self.audio = np.zeros(0, np.float32)
        self.audio_start = 0  # sample index of self.audio[0]
        self.next_frame = 0
        self.samples = 0

    def push(self, block: np.ndarray) -> None:
        self.audio = np.concatenate([self.audio, block.astype(np.float32, copy=False)])
        self.samples += len(block)

    def frames(self, final: bool = False) -> np.ndarray:
        """Raw log-mel of the frames completed since the last call; `final` also gives the
        last frames (len // hop of them in all, as offline), zero-padded at the end."""
        end = self.samples // self.hop
        if not final:
            end = min(end, max(0, (self.samples - self.reach) // self.hop + 1))
        if end <= self.next_frame:
            return np.zeros((0, self.args.features), np.float32)
        # Start `history` frames early so the first new frame's window (and the sample
        # before it, for preemphasis) is real audio; at the stream's start, zeros are right.
        lead = min(self.history, self.next_frame)
        first_sample = (self.next_frame - lead) * self.hop
        segment = self.audio[first_sample - self.audio_start :]
        if not final:  # only the samples the frames up to `end` read
            segment = segment[: (end - 1) * self.hop + self.reach - first_sample]
        mel = _log_mel_numpy(segment, self.args)[lead : lead + end - self.next_frame]
        self.next_frame = end
        keep_from = max(0, (end - self.history) * self.hop)
        self.audio = self.audio[keep_from - self.audio_start :]
        self.audio_start = keep_from
        return mel
