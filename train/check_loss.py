"""Checks train/tdt_loss.py against a brute-force sum over every alignment of small random
inputs, value and gradient finiteness (PyTorch needed, as for training).

    python -m train.check_loss
"""

from __future__ import annotations

import functools
import math
import sys

import torch

from train.tdt_loss import tdt_loss

DURATIONS = (0, 1, 2, 3, 4)


def brute_force(logits: torch.Tensor, tokens: list[int], frames: int) -> float:
    """-log of the summed probability of every path, by recursion over (frame, tokens)."""
    vocab = logits.shape[-1] - len(DURATIONS)
    token_lp = torch.log_softmax(logits[..., :vocab], -1)
    duration_lp = torch.log_softmax(logits[..., vocab:], -1)
    blank, count = vocab - 1, len(tokens)

    @functools.lru_cache(None)
    def paths(t: int, u: int) -> float:
        total = 0.0
        for k, d in enumerate(DURATIONS):
            step = math.exp(duration_lp[t, u, k])
            if u < count and t + d < frames:
                total += math.exp(token_lp[t, u, tokens[u]]) * step * paths(t + d, u + 1)
            if d >= 1 and u == count and t + d == frames:
                total += math.exp(token_lp[t, u, blank]) * step
            elif d >= 1 and t + d < frames:
                total += math.exp(token_lp[t, u, blank]) * step * paths(t + d, u)
        return total

    return -math.log(paths(0, 0))


def main() -> int:
    torch.manual_seed(0)
    batch, frames, labels, vocab = 3, 6, 3, 5
    logits = torch.randn(batch, frames, labels + 1, vocab + 1 + len(DURATIONS), dtype=torch.float64)
    logits.requires_grad_(True)
    tokens = torch.randint(0, vocab, (batch, labels))
    frame_lengths, token_lengths = torch.tensor([6, 4, 5]), torch.tensor([3, 2, 0])
    loss = tdt_loss(logits, tokens, frame_lengths, token_lengths, DURATIONS)
    loss.sum().backward()
    worst = 0.0
    for i in range(batch):
        expected = brute_force(
            logits[i].detach(), tokens[i, : token_lengths[i]].tolist(), int(frame_lengths[i])
        )
        worst = max(worst, abs(expected - loss[i].item()))
    finite = bool(torch.isfinite(logits.grad).all())
    print(f"largest difference from brute force {worst:.2e}; finite gradient: {finite}")
    return 0 if worst < 1e-5 and finite else 1


if __name__ == "__main__":
    sys.exit(main())
