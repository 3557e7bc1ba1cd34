"""Vocabulary entries that are markers, not words: they never reach a transcript."""

from __future__ import annotations

import re

from asr.alignment import sentences_to_result
from asr.results import AlignedResult, AlignedSentence, AlignedToken

# <unk>, <pad>, and <|...|> markers such as <|endoftext|> or <|en|>
CONTROL_TOKEN = re.compile(r"<unk>|<pad>|<\|[^|>]*\|>")


def is_control(token: AlignedToken) -> bool:
    return CONTROL_TOKEN.fullmatch(token.text.strip()) is not None


def drop_control_tokens(result: AlignedResult) -> AlignedResult:
    """result without control tokens, and without sentences that held nothing else.

    The tokens are removed rather than blanked (as parakeet-mlx does), so that cue times
    and the JSON's token lists cover only text that is shown."""
    if not any(is_control(t) for t in result.tokens):
        return result
    sentences = []
    for sentence in result.sentences:
        tokens = [t for t in sentence.tokens if not is_control(t)]
        if tokens:
            sentences.append(AlignedSentence(text="".join(t.text for t in tokens), tokens=tokens))
    return sentences_to_result(sentences)
