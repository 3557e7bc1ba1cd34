"""Results to TXT, SRT, VTT and JSON, written atomically; JSON read back for session recovery."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .alignment import AlignedWord, tokens_to_words
from .results import AlignedResult, AlignedSentence, AlignedToken

FORMATS = ("txt", "srt", "vtt", "json")

# A word's leading and trailing punctuation stays outside the underline: "<u>world</u>."
_WORD_CORE = re.compile(r"^(\W*)(\w(?:.*\w)?)(\W*)$", re.DOTALL)


def format_timestamp(seconds: float, decimal_marker: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or, with decimal_marker='.', HH:MM:SS.mmm (VTT)."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _escape_vtt(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cues(
    result: AlignedResult, highlight_words: bool, escape: Callable[[str], str]
) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue: one per sentence, or one per word when highlighting."""
    cues: list[tuple[float, float, str]] = []
    for sentence in result.sentences:
        if not sentence.text.strip():
            continue  # an empty cue is invalid in SRT and VTT
        if not highlight_words:
            cues.append((sentence.start, sentence.end, escape(sentence.text.strip())))
            continue
        words = [w for w in tokens_to_words(sentence.tokens) if w.text]
        for k, word in enumerate(words):
            # until the next word starts, so the highlight never blinks off between words
            end = words[k + 1].start if k + 1 < len(words) else word.end
            cues.append((word.start, max(end, word.start), _highlighted(words, k, escape)))
    return cues


def _highlighted(words: list[AlignedWord], index: int, escape: Callable[[str], str]) -> str:
    parts = []
    for k, word in enumerate(words):
        text = word.text
        if k == index:
            match = _WORD_CORE.match(text)
            lead, core, trail = match.groups() if match else ("", text, "")
            text = f"{escape(lead)}<u>{escape(core)}</u>{escape(trail)}"
        else:
            text = escape(text)
        parts.append(word.prefix + text)
    return "".join(parts).strip()


def to_txt(result: AlignedResult) -> str:
    return result.text.strip() + "\n"


def to_srt(result: AlignedResult, highlight_words: bool = False) -> str:
    blocks = [
        f"{n}\n{format_timestamp(start)} --> {format_timestamp(end)}\n{text}\n"
        for n, (start, end, text) in enumerate(_cues(result, highlight_words, str), 1)
    ]
    return "\n".join(blocks)


def to_vtt(result: AlignedResult, highlight_words: bool = False) -> str:
    blocks = ["WEBVTT\n"] + [
        f"{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{text}\n"
        for start, end, text in _cues(result, highlight_words, _escape_vtt)
    ]
    return "\n".join(blocks)


def _token_dict(token: AlignedToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "text": token.text,
        "start": round(token.start, 3),
        "end": round(token.end, 3),
        "duration": round(token.duration, 3),
        "confidence": round(token.confidence, 3),
    }


def _sentence_dict(sentence: AlignedSentence) -> dict[str, Any]:
    return {
        "text": sentence.text,
        "start": round(sentence.start, 3),
        "end": round(sentence.end, 3),
        "duration": round(sentence.duration, 3),
        "confidence": round(sentence.confidence, 3),
        "tokens": [_token_dict(t) for t in sentence.tokens],
    }


def to_json(result: AlignedResult) -> str:
    """parakeet-mlx's JSON layout, plus each token's id so that result_from_json can restore it."""
    data = {"text": result.text, "sentences": [_sentence_dict(s) for s in result.sentences]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _token_from_dict(data: dict[str, Any]) -> AlignedToken:
    start = float(data["start"])
    duration = float(data["duration"]) if "duration" in data else float(data["end"]) - start
    return AlignedToken(
        id=int(data.get("id", -1)),
        text=str(data["text"]),
        start=start,
        duration=duration,
        confidence=float(data.get("confidence", 1.0)),
    )


def _sentence_from_dict(data: dict[str, Any]) -> AlignedSentence:
    tokens = [_token_from_dict(t) for t in data.get("tokens", [])]
    # start/end/... only count for a sentence without tokens; otherwise tokens decide
    return AlignedSentence(
        text=str(data["text"]),
        tokens=tokens,
        start=float(data.get("start", 0.0)),
        end=float(data.get("end", 0.0)),
        duration=float(data.get("duration", 0.0)),
        confidence=float(data.get("confidence", 1.0)),
    )


def result_from_json(text: str) -> AlignedResult:
    """Reads what to_json wrote (or parakeet-mlx's JSON, whose tokens get id -1)."""
    try:
        data = json.loads(text)
        sentences = [_sentence_from_dict(s) for s in data["sentences"]]
        return AlignedResult(text=str(data["text"]), sentences=sentences)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"not a transcript in parakeet JSON format: {error!r}") from error


def render(result: AlignedResult, fmt: str, highlight_words: bool = False) -> str:
    """The text of result in one of FORMATS (highlight_words applies to srt and vtt)."""
    if fmt == "txt":
        return to_txt(result)
    if fmt == "srt":
        return to_srt(result, highlight_words)
    if fmt == "vtt":
        return to_vtt(result, highlight_words)
    if fmt == "json":
        return to_json(result)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _create_temp(path: Path) -> tuple[int, Path]:
    # os.open with O_EXCL rather than mkstemp: the file gets the usual umask-based mode
    # instead of 0600, and replaces the target with it.
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def write_result(
    result: AlignedResult, path: str | os.PathLike[str], fmt: str, highlight_words: bool = False
) -> Path:
    """Writes result to path in fmt atomically: the file is complete or untouched.

    The text goes to a temporary file in the same folder, which then replaces path. On any
    error the temporary file is removed and an existing file at path is left as it was.
    """
    path = Path(path)
    content = render(result, fmt, highlight_words).encode("utf-8")
    temp: Path | None = None
    try:
        fd, temp = _create_temp(path)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as error:
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            message = f"cannot write {path}: {error.strerror or error}"
            if error.errno is None:
                raise OSError(message) from error
            raise OSError(error.errno, message) from error
        raise
    return path
