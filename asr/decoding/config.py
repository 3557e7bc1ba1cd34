"""How to decode: the strategy and how tokens become sentences (parakeet-mlx's names)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..alignment import SentenceConfig


@dataclass
class Greedy:
    pass


@dataclass
class DecodingConfig:
    decoding: Greedy = field(default_factory=Greedy)
    sentence: SentenceConfig = field(default_factory=SentenceConfig)
