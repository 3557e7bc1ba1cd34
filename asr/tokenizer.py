"""SentencePiece pieces to text: '▁' marks the start of a word."""

from __future__ import annotations

from collections.abc import Sequence

WORD_START = "\u2581"


def decode(ids: Sequence[int], vocabulary: Sequence[str]) -> str:
    return "".join(vocabulary[i] for i in ids).replace(WORD_START, " ")
