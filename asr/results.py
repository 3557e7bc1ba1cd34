"""Result types, named and shaped as parakeet-mlx's so its users can switch by an import."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class AlignedToken:
    id: int
    text: str
    start: float
    duration: float
    confidence: float = 1.0
    end: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.end = self.start + self.duration


@dataclass
class AlignedSentence:
    text: str
    tokens: list[AlignedToken]
    start: float = 0.0
    end: float = 0.0
    duration: float = 0.0
    confidence: float = 1.0

    def __post_init__(self) -> None:
        self.tokens = sorted(self.tokens, key=lambda t: t.start)
        if self.tokens:
            self.start = self.tokens[0].start
            self.end = self.tokens[-1].end
            self.duration = self.end - self.start
            # geometric mean of the tokens' confidences
            logs = [math.log(max(t.confidence, 1e-10)) for t in self.tokens]
            self.confidence = math.exp(sum(logs) / len(logs))


@dataclass
class AlignedResult:
    text: str
    sentences: list[AlignedSentence]

    def __post_init__(self) -> None:
        self.text = self.text.strip()

    @property
    def tokens(self) -> list[AlignedToken]:
        return [token for sentence in self.sentences for token in sentence.tokens]
