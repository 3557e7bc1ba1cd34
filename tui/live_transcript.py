"""A growing transcript as rows of sentences: final tokens appended, draft tokens replaced.

Appending tokens never changes a sentence but the last (tokens_to_sentences decides each
split from the words around it), so every sentence before the last final one is settled
and only the tail is recomputed on each update: an update costs the same after an hour
as after a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

from asr.alignment import SentenceConfig, sentences_to_result, tokens_to_sentences
from asr.results import AlignedResult, AlignedToken


@dataclass(frozen=True)
class TranscriptRow:
    """One sentence: when it starts, its final text, then the draft text that follows."""

    start: float
    final_text: str
    draft_text: str = ""

    @property
    def text(self) -> str:
        return self.final_text + self.draft_text


class LiveTranscript:
    def __init__(self, sentence_config: SentenceConfig | None = None) -> None:
        self.sentence_config = sentence_config or SentenceConfig()
        self._final: list[AlignedToken] = []
        self._settled_rows: list[TranscriptRow] = []
        self._open_from = 0  # index in _final of the first token of the last final sentence
        self._draft: list[AlignedToken] = []
        self._tail_rows: list[TranscriptRow] = []

    @property
    def rows(self) -> list[TranscriptRow]:
        return self._settled_rows + self._tail_rows

    def rows_from(self, index: int) -> list[TranscriptRow]:
        settled = self._settled_rows
        if index >= len(settled):
            return self._tail_rows[index - len(settled) :]
        return settled[index:] + self._tail_rows

    def row(self, index: int) -> TranscriptRow:
        settled = self._settled_rows
        return settled[index] if index < len(settled) else self._tail_rows[index - len(settled)]

    @property
    def row_count(self) -> int:
        return len(self._settled_rows) + len(self._tail_rows)

    @property
    def final_tokens(self) -> list[AlignedToken]:
        return list(self._final)

    @property
    def draft_tokens(self) -> list[AlignedToken]:
        return list(self._draft)

    @property
    def has_draft(self) -> bool:
        return bool(self._draft)

    def clear(self) -> None:
        self.__init__(self.sentence_config)

    def add_final(self, tokens: list[AlignedToken]) -> int:
        """Appends final tokens; returns the index of the first row that changed."""
        self._final.extend(tokens)
        open_tokens = self._final[self._open_from :]
        sentences = tokens_to_sentences(open_tokens, self.sentence_config)
        first_changed = len(self._settled_rows)
        for sentence in sentences[:-1]:
            self._settled_rows.append(_row(sentence.tokens, len(sentence.tokens)))
            self._open_from += len(sentence.tokens)
        self._rebuild_tail()
        return first_changed

    def set_draft(self, tokens: list[AlignedToken]) -> int:
        """Replaces the draft; returns the index of the first row that changed."""
        self._draft = list(tokens)
        self._rebuild_tail()
        return len(self._settled_rows)

    def _rebuild_tail(self) -> None:
        open_tokens = self._final[self._open_from :]
        final_count = len(open_tokens)
        rows = []
        for sentence in tokens_to_sentences(open_tokens + self._draft, self.sentence_config):
            count = len(sentence.tokens)
            rows.append(_row(sentence.tokens, max(0, min(count, final_count))))
            final_count -= count
        self._tail_rows = rows

    def result(self, *, include_draft: bool = True) -> AlignedResult:
        tokens = self._final + (self._draft if include_draft else [])
        return sentences_to_result(tokens_to_sentences(tokens, self.sentence_config))

    def row_at_time(self, seconds: float) -> int | None:
        """The row being spoken at `seconds`: the last that starts at or before it."""
        low, high = 0, self.row_count
        while low < high:
            middle = (low + high) // 2
            if self.row(middle).start <= seconds:
                low = middle + 1
            else:
                high = middle
        return low - 1 if low > 0 else None


def _row(tokens: list[AlignedToken], final_count: int) -> TranscriptRow:
    final_text = "".join(t.text for t in tokens[:final_count])
    draft_text = "".join(t.text for t in tokens[final_count:])
    if final_text:
        final_text = final_text.lstrip()
    else:
        draft_text = draft_text.lstrip()
    return TranscriptRow(tokens[0].start, final_text, draft_text)
