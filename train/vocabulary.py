"""The demo model's tokens: letters, with SentencePiece's '▁' marking a word's first letter.

Capitals only start sentences; '.', ',' and '?' follow a word without a space. Text in
this form decodes with the engine's tokenizer unchanged ("▁T h e ▁c a t ." -> " The cat.").
"""

from __future__ import annotations

import string

WORD_START = "\u2581"
PUNCTUATION = (".", ",", "?")

VOCABULARY: list[str] = (
    ["<unk>"]
    + [WORD_START + c for c in string.ascii_lowercase]
    + [WORD_START + c for c in string.ascii_uppercase]
    + list(string.ascii_lowercase)
    + ["'", *PUNCTUATION]
)
_INDEX = {piece: i for i, piece in enumerate(VOCABULARY)}


def encode(text: str) -> list[int]:
    """Token ids of `text` (words of a-z and apostrophes, capitals and punctuation as above)."""
    ids: list[int] = []
    for word in text.split():
        ids.append(_INDEX[WORD_START + word[0]])
        ids.extend(_INDEX[c] for c in word[1:])
    return ids


def decode(ids: list[int]) -> str:
    return "".join(VOCABULARY[i] for i in ids).replace(WORD_START, " ").strip()
