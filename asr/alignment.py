"""Tokens to words and sentences, and merging the tokens of overlapping chunks.

Token text is SentencePiece text with '▁' decoded to ' ', so a token whose text starts with a
space begins a new word. Every split made here falls between words, never inside one.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .results import AlignedResult, AlignedSentence, AlignedToken

# Half-width terminators need the next token to start a new word ("3.5" stays whole); CJK
# text has no spaces, so its terminators end a word (and a sentence) by themselves.
SENTENCE_END = (".", "!", "?")
CJK_SENTENCE_END = ("。", "？", "！")
# Closing marks that may follow a terminator: 'He said "no." Then' ends after '."'.
_CLOSING = "\"')]}»”’」』"
# Words ending in '.' that rarely end a sentence (compared lower-cased).
ABBREVIATIONS = frozenset({"e.g.", "i.e.", "mr.", "mrs.", "ms.", "dr.", "prof.", "vs.", "cf."})

_EPS = 1e-9  # float slack for comparisons of times that are sums of frame durations


@dataclass
class SentenceConfig:
    max_words: int | None = None
    silence_gap: float | None = None
    max_duration: float | None = None

    def __post_init__(self) -> None:
        if self.max_words is not None and self.max_words < 1:
            raise ValueError(f"max_words must be at least 1, got {self.max_words}")
        if self.silence_gap is not None and self.silence_gap < 0:
            raise ValueError(f"silence_gap must be >= 0, got {self.silence_gap}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError(f"max_duration must be > 0, got {self.max_duration}")


@dataclass
class AlignedWord:
    """One word: its tokens, and its text without the leading space."""

    text: str
    tokens: list[AlignedToken]
    start: float = 0.0
    end: float = 0.0
    duration: float = 0.0
    confidence: float = 1.0
    prefix: str = field(default="", repr=False)  # whitespace before the word in the stream

    def __post_init__(self) -> None:
        if self.tokens:
            self.start = self.tokens[0].start
            self.end = max(t.end for t in self.tokens)
            self.duration = self.end - self.start
            self.confidence = _geometric_mean(t.confidence for t in self.tokens)


def _geometric_mean(values) -> float:
    logs = [math.log(max(v, 1e-10)) for v in values]
    return math.exp(sum(logs) / len(logs)) if logs else 1.0


def _starts_word(token: AlignedToken, previous: AlignedToken | None) -> bool:
    if previous is None or token.text.startswith(" "):
        return True
    return previous.text.rstrip(_CLOSING).endswith(CJK_SENTENCE_END)


def _make_word(tokens: list[AlignedToken]) -> AlignedWord:
    raw = "".join(t.text for t in tokens)
    text = raw.lstrip()
    return AlignedWord(text=text.rstrip(), tokens=tokens, prefix=raw[: len(raw) - len(text)])


def tokens_to_words(tokens: Sequence[AlignedToken]) -> list[AlignedWord]:
    """Groups tokens into words: a word starts at a token whose text starts with a space."""
    words: list[AlignedWord] = []
    current: list[AlignedToken] = []
    previous: AlignedToken | None = None
    for token in tokens:
        if current and _starts_word(token, previous):
            words.append(_make_word(current))
            current = []
        current.append(token)
        previous = token
    if current:
        words.append(_make_word(current))
    return words


def _ends_sentence(word: AlignedWord) -> bool:
    text = word.text.rstrip(_CLOSING)
    if text.endswith(CJK_SENTENCE_END):
        return True
    return text.endswith(SENTENCE_END) and text.lower() not in ABBREVIATIONS


def _breaks_before(sentence: list[AlignedWord], word: AlignedWord, config: SentenceConfig) -> bool:
    last = sentence[-1]
    if _ends_sentence(last):
        return True
    if config.max_words is not None and len(sentence) >= config.max_words:
        return True
    if config.silence_gap is not None and word.start - last.end >= config.silence_gap - _EPS:
        return True
    # A single word longer than max_duration still makes a sentence of its own.
    return (
        config.max_duration is not None
        and word.end - sentence[0].start > config.max_duration + _EPS
    )


def _make_sentence(words: list[AlignedWord]) -> AlignedSentence:
    tokens = [t for w in words for t in w.tokens]
    return AlignedSentence(text="".join(t.text for t in tokens), tokens=tokens)


def tokens_to_sentences(
    tokens: Sequence[AlignedToken], config: SentenceConfig | None = None
) -> list[AlignedSentence]:
    """Splits tokens into sentences at sentence punctuation and, for subtitles, by config.

    Each split decision looks only at the words before it and the word after it, so appending
    tokens never changes any sentence but the last one (what a live view needs).
    """
    config = config or SentenceConfig()
    sentences: list[AlignedSentence] = []
    current: list[AlignedWord] = []
    for word in tokens_to_words(tokens):
        if current and _breaks_before(current, word, config):
            sentences.append(_make_sentence(current))
            current = []
        current.append(word)
    if current:
        sentences.append(_make_sentence(current))
    return sentences


def sentences_to_result(sentences: list[AlignedSentence]) -> AlignedResult:
    return AlignedResult(text="".join(s.text for s in sentences), sentences=sentences)


def _center(token: AlignedToken) -> float:
    return token.start + token.duration / 2


def _align(
    a: Sequence[AlignedToken], b: Sequence[AlignedToken], tolerance: float
) -> list[tuple[int, int]]:
    """Longest common subsequence of a and b, where tokens match on id and start time.

    Among equally long alignments it prefers the one whose pairs are closest in time.
    """

    def matches(x: AlignedToken, y: AlignedToken) -> bool:
        return x.id == y.id and abs(x.start - y.start) <= tolerance + _EPS

    # score[i][j] = (pairs, -total time difference) for a[i:] and b[j:]
    n, m = len(a), len(b)
    score = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = score[i], score[i + 1]
        for j in range(m - 1, -1, -1):
            best = max(below[j], row[j + 1])
            if matches(a[i], b[j]):
                pairs, cost = below[j + 1]
                best = max(best, (pairs + 1, cost - abs(a[i].start - b[j].start)))
            row[j] = best
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n and j < m:
        if matches(a[i], b[j]):
            pairs_after, cost_after = score[i + 1][j + 1]
            if score[i][j] == (pairs_after + 1, cost_after - abs(a[i].start - b[j].start)):
                pairs.append((i, j))
                i += 1
                j += 1
                continue
        if score[i][j] == score[i + 1][j]:
            i += 1
        else:
            j += 1
    return pairs


def _clamp_after(tokens: list[AlignedToken], seam: int) -> list[AlignedToken]:
    """Makes tokens[seam:] start no earlier than the token before them ends.

    The two chunks may place the same sound a frame or two apart, so the seam can overlap.
    """
    for k in range(max(seam, 1), len(tokens)):
        previous_end = tokens[k - 1].end
        token = tokens[k]
        if token.start >= previous_end - _EPS:
            break
        tokens[k] = replace(token, start=previous_end, duration=max(0.0, token.end - previous_end))
    return tokens


def merge_chunks(
    previous: Sequence[AlignedToken],
    current: Sequence[AlignedToken],
    overlap_start: float,
    overlap_end: float,
    *,
    time_tolerance: float = 0.5,
) -> list[AlignedToken]:
    """Joins the tokens of two chunks whose audio overlaps in [overlap_start, overlap_end].

    Times are absolute. previous may be everything merged so far (sorted by start). The two
    token sequences are aligned inside the overlap and joined at the aligned pair nearest the
    overlap's middle: previous supplies what comes before it, current what comes after, since
    each chunk is least reliable near its own edges. When nothing aligns, the join is a cut at
    the overlap's middle by token center. An empty side yields the other side unchanged.
    """
    if not previous or not current:
        return list(previous or current)
    middle = (overlap_start + overlap_end) / 2
    tolerance = min(time_tolerance, max(overlap_end - overlap_start, 0.0) / 2)

    tail_from = bisect.bisect_right([t.end for t in previous], overlap_start)
    head_to = bisect.bisect_left([t.start for t in current], overlap_end)
    tail, head = previous[tail_from:], current[:head_to]

    pairs = _align(tail, head, tolerance)
    if pairs:
        i, j = min(pairs, key=lambda p: abs((tail[p[0]].start + head[p[1]].start) / 2 - middle))
        kept = list(previous[: tail_from + i + 1])
        return _clamp_after(kept + list(current[j + 1 :]), len(kept))

    kept = list(previous[:tail_from]) + [t for t in tail if _center(t) < middle]
    rest = [t for t in current if _center(t) >= middle]
    return _clamp_after(kept + rest, len(kept))
