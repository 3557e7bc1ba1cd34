"""How to decode: the strategy and how tokens become sentences (parakeet-mlx's names)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real

from ..alignment import SentenceConfig


@dataclass
class Greedy:
    pass


@dataclass
class Beam:
    """Beam search; the first four fields are parakeet-mlx's, with its defaults.

    beam_size: hypotheses kept at each position of the search (1 gives greedy's result).
    length_penalty: the final choice ranks score / tokens**length_penalty (0: raw score).
    patience: round(beam_size * patience) finished hypotheses compete in the final choice.
    duration_reward: TDT only, the weight of duration log-probs in the ranking score,
        (1 - r) * log p(token) + r * log p(duration); above 0.5 favours durations.
    expansion_gamma: an expansion whose log-probability is more than this below the best
        expansion of the same hypothesis is not considered (NeMo's mAES prune-by-value,
        same default); math.inf considers all of the top beam_size tokens and durations.
    """

    beam_size: int = 5
    length_penalty: float = 1.0
    patience: float = 1.0
    duration_reward: float = 0.7
    expansion_gamma: float = 2.3

    def __post_init__(self) -> None:
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, Integral):
            raise ValueError(f"beam_size must be a whole number, got {self.beam_size!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        self.beam_size = int(self.beam_size)
        _check_real("length_penalty", self.length_penalty, 0.0, math.inf)
        _check_real("patience", self.patience, 1.0, math.inf)
        _check_real("duration_reward", self.duration_reward, 0.0, 1.0)
        _check_real("expansion_gamma", self.expansion_gamma, 0.0, math.inf, allow_inf=True)


def _check_real(name: str, value: object, low: float, high: float, allow_inf: bool = False):
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if math.isinf(value) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {value}")
    if not low <= value <= high:
        bounds = f"at least {low:g}" if math.isinf(high) else f"between {low:g} and {high:g}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


@dataclass
class DecodingConfig:
    decoding: Greedy | Beam = field(default_factory=Greedy)
    sentence: SentenceConfig = field(default_factory=SentenceConfig)
