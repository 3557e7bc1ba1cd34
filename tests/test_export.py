"""TXT/SRT/VTT/JSON output, JSON read-back, and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asr import export
from asr.alignment import sentences_to_result, tokens_to_sentences
from asr.export import (
    FORMATS,
    format_timestamp,
    result_from_json,
    to_json,
    to_srt,
    to_txt,
    to_vtt,
    write_result,
)
from asr.results import AlignedResult, AlignedToken


def small_result() -> AlignedResult:
    tokens = [
        AlignedToken(1, " Hello", 0.0, 0.4, 0.5),
        AlignedToken(2, " world", 0.4, 0.4, 1.0),
        AlignedToken(3, ".", 0.8, 0.1, 0.875),
        AlignedToken(4, " By", 1.5, 0.25, 1.0),
        AlignedToken(5, "e", 1.75, 0.25, 1.0),
        AlignedToken(3, ".", 2.0, 0.1, 1.0),
    ]
    return sentences_to_result(tokens_to_sentences(tokens))


def test_timestamps():
    assert format_timestamp(0) == "00:00:00,000"
    assert format_timestamp(3723.4567) == "01:02:03,457"
    assert format_timestamp(59.9996, ".") == "00:01:00.000"
    assert format_timestamp(-0.01) == "00:00:00,000"


def test_txt():
    assert to_txt(small_result()) == "Hello world. Bye.\n"


def test_srt():
    assert to_srt(small_result()) == (
        "1\n00:00:00,000 --> 00:00:00,900\nHello world.\n\n2\n00:00:01,500 --> 00:00:02,100\nBye.\n"
    )


def test_vtt():
    assert to_vtt(small_result()) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:00.900\nHello world.\n\n"
        "00:00:01.500 --> 00:00:02.100\nBye.\n"
    )


def test_srt_highlights_one_word_per_cue():
    assert to_srt(small_result(), highlight_words=True) == (
        "1\n00:00:00,000 --> 00:00:00,400\n<u>Hello</u> world.\n\n"
        "2\n00:00:00,400 --> 00:00:00,900\nHello <u>world</u>.\n\n"
        "3\n00:00:01,500 --> 00:00:02,100\n<u>Bye</u>.\n"
    )


def test_vtt_highlights_and_escapes():
    tokens = [AlignedToken(1, " R&D", 0.0, 0.5), AlignedToken(2, " <3", 1.0, 0.5)]
    result = sentences_to_result(tokens_to_sentences(tokens))
    assert to_vtt(result) == "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nR&amp;D &lt;3\n"
    assert to_vtt(result, highlight_words=True) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.000\n<u>R&amp;D</u> &lt;3\n\n"
        "00:00:01.000 --> 00:00:01.500\nR&amp;D &lt;<u>3</u>\n"
    )


def test_empty_result():
    empty = AlignedResult("", [])
    assert to_srt(empty) == ""
    assert to_vtt(empty) == "WEBVTT\n"
    assert result_from_json(to_json(empty)) == empty


def test_json_round_trip():
    result = small_result()
    restored = result_from_json(to_json(result))
    assert restored == result
    assert [t.id for t in restored.tokens] == [1, 2, 3, 4, 5, 3]


def test_json_layout():
    import json

    data = json.loads(to_json(small_result()))
    assert data["text"] == "Hello world. Bye."
    first = data["sentences"][0]
    assert first["start"] == 0.0 and first["end"] == 0.9 and first["duration"] == 0.9
    assert first["confidence"] == 0.759  # (0.5 * 1 * 0.875) ** (1/3)
    assert first["tokens"][0] == {
        "id": 1,
        "text": " Hello",
        "start": 0.0,
        "end": 0.4,
        "duration": 0.4,
        "confidence": 0.5,
    }


def test_malformed_json_is_a_value_error():
    for text in ("not json", "[]", '{"text": "x"}', '{"text": "", "sentences": [{"x": 1}]}'):
        with pytest.raises(ValueError):
            result_from_json(text)


def test_matches_parakeet_mlx_output():
    cli = pytest.importorskip("parakeet_mlx.cli")
    result = small_result()
    assert to_srt(result) == cli.to_srt(result)
    assert to_vtt(result) == cli.to_vtt(result)
    restored = result_from_json(cli.to_json(result))  # theirs has no token ids
    assert [t.text for t in restored.tokens] == [t.text for t in result.tokens]
    assert restored.sentences[1].start == 1.5


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_result_writes_and_replaces(tmp_path, fmt):
    target = tmp_path / f"out.{fmt}"
    target.write_text("old")
    assert write_result(small_result(), target, fmt) == target
    assert target.read_text(encoding="utf-8") == export.render(small_result(), fmt)
    assert os.listdir(tmp_path) == [target.name]


def test_written_file_has_normal_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_result(small_result(), tmp_path / "a.srt", "srt")
    assert (tmp_path / "a.srt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_unwritable_location_raises_clear_oserror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    target = blocker / "out.srt"  # its folder is a file
    with pytest.raises(OSError, match="cannot write .*out.srt"):
        write_result(small_result(), target, "srt")
    with pytest.raises(FileNotFoundError, match="cannot write"):
        write_result(small_result(), tmp_path / "missing" / "out.srt", "srt")
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_folder_raises_permission_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cannot write"):
            write_result(small_result(), folder / "out.srt", "srt")
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch, failing):
    target = tmp_path / "out.vtt"
    target.write_text("previous export")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.os, failing, fail)
    with pytest.raises(OSError, match="cannot write .*out.vtt: No space left on device"):
        write_result(small_result(), target, "vtt")
    assert target.read_text() == "previous export"
    assert os.listdir(tmp_path) == ["out.vtt"]


def test_interrupted_write_removes_the_temp(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_result(small_result(), tmp_path / "out.txt", "txt")
    assert os.listdir(tmp_path) == []


def test_unknown_format_writes_nothing(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown format"):
        write_result(small_result(), tmp_path / "out.doc", "doc")
    assert os.listdir(tmp_path) == []
