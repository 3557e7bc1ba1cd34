"""Sentence and word grouping, and merging the tokens of overlapping chunks."""

from __future__ import annotations

import random

import pytest

from asr.alignment import (
    SentenceConfig,
    merge_chunks,
    sentences_to_result,
    tokens_to_sentences,
    tokens_to_words,
)
from asr.results import AlignedToken

_ids: dict[str, int] = {}


def tok(text: str, start: float, duration: float = 0.2, confidence: float = 1.0) -> AlignedToken:
    token_id = _ids.setdefault(text, len(_ids))
    return AlignedToken(token_id, text, start, duration, confidence)


def stream(pieces: str, start: float = 0.0, step: float = 0.2) -> list[AlignedToken]:
    """Tokens from '|'-separated pieces, back to back, each lasting step seconds."""
    return [tok(p, start + k * step, step) for k, p in enumerate(pieces.split("|"))]


def texts(sentences) -> list[str]:
    return [s.text for s in sentences]


def word_count(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------- words


def test_words_group_tokens_at_leading_spaces():
    words = tokens_to_words(stream(" Un|believ|able| news|."))
    assert [w.text for w in words] == ["Unbelievable", "news."]
    assert words[0].start == pytest.approx(0.0) and words[0].end == pytest.approx(0.6)
    assert words[1].start == pytest.approx(0.6) and words[1].end == pytest.approx(1.0)
    assert [len(w.tokens) for w in words] == [3, 2]


def test_first_token_without_space_still_makes_a_word():
    words = tokens_to_words(stream("ing| the| end"))
    assert [w.text for w in words] == ["ing", "the", "end"]
    assert tokens_to_words([]) == []


def test_word_confidence_is_geometric_mean():
    words = tokens_to_words([tok(" a", 0, 0.1, 0.25), tok("b", 0.1, 0.1, 1.0)])
    assert words[0].confidence == pytest.approx(0.5)


# ---------------------------------------------------------------- sentences


def test_sentences_end_at_terminal_punctuation():
    sentences = tokens_to_sentences(stream(" Hello| world|.| How| are| you|?| Fine|!| Ok"))
    assert texts(sentences) == [" Hello world.", " How are you?", " Fine!", " Ok"]
    result = sentences_to_result(sentences)
    assert result.text == "Hello world. How are you? Fine! Ok"
    assert result.tokens == [t for s in sentences for t in s.tokens]


def test_period_inside_a_word_does_not_end_the_sentence():
    sentences = tokens_to_sentences(stream(" It| costs| 3|.|5| euros|.| Next|."))
    assert texts(sentences) == [" It costs 3.5 euros.", " Next."]


def test_abbreviations_do_not_end_the_sentence():
    sentences = tokens_to_sentences(stream(" Fruit|,| e|.|g|.| apples|.| Mr|.| Smith| agrees|."))
    assert texts(sentences) == [" Fruit, e.g. apples.", " Mr. Smith agrees."]


def test_terminator_before_closing_quote_ends_the_sentence():
    sentences = tokens_to_sentences(stream(' He| said| "|no|."| Then| left|.'))
    assert texts(sentences) == [' He said "no."', " Then left."]


def test_cjk_terminators_split_without_spaces():
    sentences = tokens_to_sentences(stream("今天|很|好|。|我们|走|吧|！"))
    assert texts(sentences) == ["今天很好。", "我们走吧！"]


def random_stream(n_words: int, seed: int = 0) -> list[AlignedToken]:
    """Words of one to three tokens, sometimes with a pause before them."""
    rng = random.Random(seed)
    tokens, t = [], 0.0
    for w in range(n_words):
        t += rng.choice([0.0, 0.0, 0.0, 0.3, 1.2])
        for p in range(rng.randint(1, 3)):
            duration = rng.choice([0.08, 0.16, 0.24])
            tokens.append(tok((" w" if p == 0 else "x") + str(w % 7), t, duration))
            t += duration
    return tokens


@pytest.mark.parametrize("max_words", [1, 2, 5, 7])
def test_max_words_is_never_exceeded_and_words_stay_whole(max_words):
    tokens = random_stream(60)
    sentences = tokens_to_sentences(tokens, SentenceConfig(max_words=max_words))
    assert all(word_count(s.text) <= max_words for s in sentences)
    assert all(s.tokens[0].text.startswith(" ") for s in sentences)  # starts at a word
    assert [t for s in sentences for t in s.tokens] == tokens
    # greedy: every sentence but the last is full
    assert all(word_count(s.text) == max_words for s in sentences[:-1])


def test_max_words_splits_between_words_not_tokens():
    tokens = stream(" a| b|c|d| e|f|g")  # words: a, bcd, efg
    sentences = tokens_to_sentences(tokens, SentenceConfig(max_words=2))
    assert texts(sentences) == [" a bcd", " efg"]


def test_silence_gap_splits_only_at_long_pauses_between_words():
    tokens = [
        tok(" one", 0.0),
        tok(" two", 0.2),
        tok(" thr", 0.4),
        tok("ee", 1.4),  # long pause inside a word: never split there
        tok(" four", 2.6),  # 1.0 s after "three" ends
        tok(" five", 2.8),
    ]
    sentences = tokens_to_sentences(tokens, SentenceConfig(silence_gap=0.5))
    assert texts(sentences) == [" one two three", " four five"]
    assert texts(tokens_to_sentences(tokens, SentenceConfig(silence_gap=1.5))) == [
        " one two three four five"
    ]
    # a gap of exactly silence_gap splits
    assert len(tokens_to_sentences(tokens, SentenceConfig(silence_gap=1.0))) == 2


@pytest.mark.parametrize("max_duration", [0.5, 1.0, 3.0])
def test_max_duration_is_never_exceeded_by_several_words(max_duration):
    tokens = random_stream(60, seed=1)
    sentences = tokens_to_sentences(tokens, SentenceConfig(max_duration=max_duration))
    for sentence in sentences:
        assert sentence.tokens[0].text.startswith(" ")
        if word_count(sentence.text) > 1:
            assert sentence.duration <= max_duration + 1e-9
    assert [t for s in sentences for t in s.tokens] == tokens


def test_a_word_longer_than_max_duration_stands_alone():
    tokens = [tok(" a", 0.0, 0.2), tok(" looo", 0.2, 1.0), tok("ong", 1.2, 1.0), tok(" b", 2.2)]
    sentences = tokens_to_sentences(tokens, SentenceConfig(max_duration=1.0))
    assert texts(sentences) == [" a", " loooong", " b"]


def test_all_limits_together():
    tokens = random_stream(80, seed=2)
    config = SentenceConfig(max_words=6, silence_gap=1.0, max_duration=2.5)
    sentences = tokens_to_sentences(tokens, config)
    for sentence in sentences:
        assert word_count(sentence.text) <= 6
        assert sentence.duration <= 2.5 + 1e-9 or word_count(sentence.text) == 1
        words = tokens_to_words(sentence.tokens)
        assert all(b.start - a.end < 1.0 for a, b in zip(words, words[1:], strict=False))


def test_appending_tokens_only_changes_the_last_sentence():
    tokens = random_stream(40, seed=3) + stream(" It| is| 3|.|5|.| Done|.", start=40.0)
    config = SentenceConfig(max_words=4, silence_gap=1.0, max_duration=2.0)
    full = tokens_to_sentences(tokens, config)
    for n in range(1, len(tokens)):
        partial = tokens_to_sentences(tokens[:n], config)
        assert partial[:-1] == full[: len(partial) - 1]


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError):
        SentenceConfig(max_words=0)
    with pytest.raises(ValueError):
        SentenceConfig(max_duration=0)


def test_no_tokens_no_sentences():
    assert tokens_to_sentences([]) == []
    assert sentences_to_result([]).text == ""


# ---------------------------------------------------------------- merging chunks


def long_stream(n: int = 120, step: float = 0.24, seed: int = 4) -> list[AlignedToken]:
    """Back-to-back tokens from a small vocabulary, so ids repeat often (as 'the', ',' do)."""
    rng = random.Random(seed)
    return [tok(f" v{rng.randint(0, 5)}", k * step, step) for k in range(n)]


def chunk(tokens, start: float, end: float, shift: float = 0.0) -> list[AlignedToken]:
    """The tokens a chunk covering [start, end) would hear, optionally shifted in time."""
    return [
        AlignedToken(t.id, t.text, t.start + shift, t.duration, t.confidence)
        for t in tokens
        if start <= t.start < end
    ]


def assert_monotonic(tokens):
    for a, b in zip(tokens, tokens[1:], strict=False):
        assert b.start >= a.start
        assert b.start >= a.end - 1e-9


def test_merge_of_agreeing_chunks_reproduces_the_stream():
    tokens = long_stream()
    merged = merge_chunks(chunk(tokens, 0, 15), chunk(tokens, 10, 30), 10.0, 15.0)
    assert merged == tokens


def test_merge_over_many_chunks_reproduces_the_stream():
    tokens = long_stream(n=400)
    duration, overlap = 12.0, 4.0
    merged: list[AlignedToken] = []
    start = 0.0
    while start < tokens[-1].end:
        current = chunk(tokens, start, start + duration)
        merged = merge_chunks(merged, current, start, start + overlap)
        start += duration - overlap
    assert merged == tokens


def test_merge_tolerates_timing_jitter_without_duplicates():
    tokens = long_stream()
    for shift in (-0.16, 0.08, 0.16):
        merged = merge_chunks(chunk(tokens, 0, 15), chunk(tokens, 10, 30, shift), 10.0, 15.0)
        assert [t.id for t in merged] == [t.id for t in tokens]
        assert_monotonic(merged)


def test_merge_trusts_each_chunk_away_from_its_edge():
    tokens = long_stream()
    previous = chunk(tokens, 0, 15)
    current = chunk(tokens, 10, 30)
    # previous garbles a token near its end, current one near its start
    previous[-2] = tok(" WRONG_END", previous[-2].start, previous[-2].duration)
    current[1] = tok(" WRONG_START", current[1].start, current[1].duration)
    merged = merge_chunks(previous, current, 10.0, 15.0)
    assert [t.text for t in merged] == [t.text for t in tokens]


def test_merge_keeps_words_heard_by_one_chunk_only_on_its_reliable_side():
    tokens = long_stream()
    previous = chunk(tokens, 0, 15)
    current = chunk(tokens, 10, 30)
    # an extra word in previous's first half of the overlap is kept
    previous.insert(45, tok(" EXTRA", previous[44].end, 0.0))
    merged = merge_chunks(previous, current, 10.0, 15.0)
    assert " EXTRA" in [t.text for t in merged]
    assert len(merged) == len(tokens) + 1
    assert_monotonic(merged)


def test_merge_without_agreement_cuts_at_the_middle():
    previous = [tok(" p", 0.2 * k, 0.2) for k in range(50)]  # 0 .. 10 s
    current = [tok(" c", 8.0 + 0.2 * k, 0.2) for k in range(50)]  # 8 .. 18 s
    merged = merge_chunks(previous, current, 8.0, 10.0)
    assert all(t.text == " p" for t in merged if t.start < 9.0)
    assert all(t.text == " c" for t in merged if t.start >= 9.0)
    assert len(merged) == 45 + 45
    assert_monotonic(merged)


def test_merge_without_overlap_concatenates():
    a, b = stream(" a| b"), stream(" c| d", start=5.0)
    assert merge_chunks(a, b, 5.0, 5.0) == a + b


def test_merge_with_empty_sides():
    tokens = long_stream(20)
    assert merge_chunks([], tokens, 0.0, 2.0) == tokens
    assert merge_chunks(tokens, [], 2.0, 4.0) == tokens
    assert merge_chunks([], [], 0.0, 1.0) == []


def test_merge_does_not_modify_its_inputs():
    tokens = long_stream()
    previous, current = chunk(tokens, 0, 15), chunk(tokens, 10, 30, -0.16)
    before = (list(previous), [AlignedToken(**vars(t)) for t in current])
    merge_chunks(previous, current, 10.0, 15.0)
    assert (previous, current) == before
