"""The session on disk: appends that survive a crash, recovery, closing, export names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from asr.results import AlignedToken
from tui import session_store
from tui.session_store import (
    TOKENS,
    SessionError,
    SessionInfo,
    SessionStore,
    data_dir,
    default_export_name,
)

REPO = Path(__file__).resolve().parents[1]


def words(*texts: str, start: float = 0.0) -> list[AlignedToken]:
    tokens = []
    for i, text in enumerate(texts):
        tokens.append(AlignedToken(i, text, start + 0.5 * i, 0.4, confidence=0.9))
    return tokens


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "sessions"


def make(root: Path, name: str = "Standup") -> SessionStore:
    return SessionStore.create(name, source="mic: Built-in Mic", model="tiny", root=root)


# ------------------------------------------------------------------ data_dir


def test_data_dir_prefers_the_override_then_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAKEET_TUI_DATA_DIR", str(tmp_path / "override"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "override" and data_dir().is_dir()
    monkeypatch.delenv("PARAKEET_TUI_DATA_DIR")
    assert data_dir() == tmp_path / "xdg" / "parakeet-tui" and data_dir().is_dir()
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert data_dir() == tmp_path / "home" / ".local" / "share" / "parakeet-tui"


def test_create_defaults_to_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAKEET_TUI_DATA_DIR", str(tmp_path))
    store = SessionStore.create("x", source="file", model="m")
    assert store.path.parent == tmp_path / "sessions"
    assert [info.path for info in SessionStore.unfinished()] == [store.path]


# ------------------------------------------------------------------ the store


def test_append_and_read_back(root):
    store = make(root)
    assert store.tokens == [] and store.result().text == ""
    store.append_final(words(" Hello", " world."))
    store.append_final([])
    store.append_final(words(" How", " are", " you?", start=1.0))
    assert [t.text for t in store.tokens] == [" Hello", " world.", " How", " are", " you?"]
    result = store.result()
    assert [s.text for s in result.sentences] == [" Hello world.", " How are you?"]
    assert result.text == "Hello world. How are you?"
    assert result.sentences[1].start == 1.0
    info = store.info
    assert isinstance(info, SessionInfo)
    assert (info.name, info.source, info.model) == ("Standup", "mic: Built-in Mic", "tiny")
    assert info.token_count == 5 and info.final_seconds == pytest.approx(2.4)
    assert isinstance(info.started, datetime) and info.started.tzinfo is not None
    # what is on disk is what was appended, exactly
    reopened = SessionStore.open(store.path)
    assert reopened.tokens == store.tokens


def test_appends_never_rewrite_earlier_lines(root):
    store = make(root)
    store.append_final(words(" one", " two"))
    path = store.path / TOKENS
    before = path.read_bytes()
    store.append_final(words(" three"))
    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 3


def test_nothing_is_lost_when_the_process_is_killed(root):
    script = textwrap.dedent(
        f"""
        import os, signal
        from asr.results import AlignedToken
        from tui.session_store import SessionStore
        store = SessionStore.create("killed", source="mic", model="m", root={str(root)!r})
        print(store.path, flush=True)
        store.append_final([AlignedToken(7, " kept", 1.0, 0.5)])
        store.append_final([AlignedToken(8, " too", 1.5, 0.5)])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr
    path = Path(proc.stdout.strip())
    (info,) = SessionStore.unfinished(root)
    assert info.path == path and info.token_count == 2
    tokens = SessionStore.open(path).tokens
    assert [(t.id, t.text, t.start, t.end) for t in tokens] == [
        (7, " kept", 1.0, 1.5),
        (8, " too", 1.5, 2.0),
    ]


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(root):
    store = make(root)
    store.append_final(words(" one", " two", " three."))
    path = store.path / TOKENS
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])  # a crash in the middle of the last line
    recovered = SessionStore.open(store.path)
    assert [t.text for t in recovered.tokens] == [" one", " two"]
    assert SessionStore.unfinished(root)[0].token_count == 2
    recovered.append_final(words(" four", start=5.0))
    again = SessionStore.open(store.path)
    assert [t.text for t in again.tokens] == [" one", " two", " four"]


def test_a_corrupt_line_is_a_one_line_error(root):
    store = make(root)
    store.append_final(words(" one", " two"))
    path = store.path / TOKENS
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([lines[0], b"{not json", lines[1], b""]))
    with pytest.raises(SessionError) as info:
        SessionStore.open(store.path)
    assert str(info.value) == f"{path}: corrupt at line 2"
    assert SessionStore.unfinished(root) == []  # not offered: it cannot be recovered


@pytest.mark.parametrize(
    "content", ["", "{", "[]", '{"version": 1, "name": "x"}', '{"version": 1, "name": 3}']
)
def test_a_corrupt_session_file_is_a_one_line_error(root, content):
    store = make(root)
    (store.path / "session.json").write_text(content)
    with pytest.raises(SessionError) as info:
        SessionStore.open(store.path)
    assert "corrupt" in str(info.value) and "\n" not in str(info.value)


def test_open_something_that_is_not_a_session(tmp_path):
    with pytest.raises(SessionError, match="no such session"):
        SessionStore.open(tmp_path / "nothing")
    with pytest.raises(SessionError, match="not a parakeet-tui session"):
        SessionStore.open(tmp_path)


def test_unfinished_lists_open_sessions_newest_first_and_close_removes(root):
    first = make(root, "first")
    second = make(root, "second")
    second_meta = second.path / "session.json"
    meta = json.loads(second_meta.read_text())
    meta["started"] = "2999-01-01T00:00:00+00:00"  # make the order certain
    second_meta.write_text(json.dumps(meta))
    (root / "stray-folder").mkdir()
    (root / "stray-file.txt").write_text("x")
    assert [i.name for i in SessionStore.unfinished(root)] == ["second", "first"]
    first.append_final(words(" a"))
    first.close()
    first.close()  # idempotent
    assert first.closed
    assert [i.name for i in SessionStore.unfinished(root)] == ["second"]
    with pytest.raises(SessionError, match="closed"):
        first.append_final(words(" b"))
    # a closed session still opens, for reading
    assert [t.text for t in SessionStore.open(first.path).tokens] == [" a"]
    assert SessionStore.open(first.path).info.closed


def test_discard_deletes(root):
    store = make(root)
    store.append_final(words(" a"))
    store.discard()
    assert not store.path.exists()
    assert SessionStore.unfinished(root) == []
    with pytest.raises(SessionError, match="discarded"):
        store.append_final(words(" b"))


def test_same_name_same_second_gets_its_own_folder(root):
    a, b = make(root, "dup"), make(root, "dup")
    assert a.path != b.path
    a.append_final(words(" a"))
    assert SessionStore.open(b.path).tokens == []


def test_unsafe_names_stay_inside_the_root(root):
    store = make(root, "../../etc/passwd: a/b")
    assert store.path.parent == root
    assert store.name == "../../etc/passwd: a/b"


def test_tokens_with_non_finite_times_are_refused(root):
    store = make(root)
    with pytest.raises(ValueError, match="not finite"):
        store.append_final([AlignedToken(1, " x", float("nan"), 0.1)])
    assert store.tokens == []


def test_unfinished_of_a_missing_root_is_empty(tmp_path):
    assert SessionStore.unfinished(tmp_path / "never-made") == []


def test_cannot_create_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SessionError) as info:
        SessionStore.create("x", source="s", model="m", root=blocker / "sessions")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ export names


def test_default_export_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_export_name("Standup", "srt") == tmp_path / "Standup.srt"
    assert default_export_name("Standup", ".SRT", Path("/x")) == Path("/x/Standup.srt")
    assert default_export_name('a/b\\c:d*e?"f<g>h|i', "txt").name == "a_b_c_d_e__f_g_h_i.txt"
    assert default_export_name("  ..hidden.. ", "vtt").name == "hidden.vtt"
    assert default_export_name("", "json").name == "session.json"
    assert default_export_name("CON", "txt").name == "CON_.txt"
    assert default_export_name("line\nbreak\ttab", "txt").name == "line_break_tab.txt"
    long = default_export_name("é" * 300, "srt").name
    assert len(long.encode()) <= 255 and long.endswith(".srt")
    with pytest.raises(ValueError):
        default_export_name("x", "s/rt")
    with pytest.raises(ValueError):
        default_export_name("x", "")


def test_safe_file_name_is_used_for_folders():
    assert session_store.safe_file_name("Team sync 10:30") == "Team sync 10_30"
    assert os.sep not in session_store.safe_file_name(f"a{os.sep}b")
