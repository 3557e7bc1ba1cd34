"""The session on disk, kept as it grows, so that a crash or a closed terminal loses nothing
that was already final.

A session is a folder under `data_dir()/sessions`:

    session.json   name, source, model, start time; "closed" once the session ended normally
    tokens.jsonl   one final token per line, appended and fsynced, never rewritten

A line counts once its newline is on disk: a last line torn by a crash is ignored when the
session is opened again (and cut off before the next append). Sessions never closed are
offered for recovery by `SessionStore.unfinished()`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from asr.alignment import SentenceConfig, sentences_to_result, tokens_to_sentences
from asr.results import AlignedResult, AlignedToken

APP = "parakeet-tui"
SESSIONS = "sessions"
META = "session.json"
TOKENS = "tokens.jsonl"
VERSION = 1
_MAX_NAME_BYTES = 180  # file names are limited to 255 bytes; leave room for suffixes


class SessionError(RuntimeError):
    """A session that cannot be read or written; the message is one line for the user."""


def data_dir() -> Path:
    """Where the app keeps its data, created on demand: $PARAKEET_TUI_DATA_DIR, else
    $XDG_DATA_HOME/parakeet-tui, else ~/Library/Application Support/parakeet-tui on macOS and
    ~/.local/share/parakeet-tui elsewhere."""
    override = os.environ.get("PARAKEET_TUI_DATA_DIR")
    xdg = os.environ.get("XDG_DATA_HOME")
    if override:
        path = Path(override).expanduser()
    elif xdg and Path(xdg).is_absolute():  # the XDG spec: relative paths are ignored
        path = Path(xdg) / APP
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Application Support" / APP
    else:
        path = Path.home() / ".local" / "share" / APP
    _make_dir(path)
    return path


def sessions_dir() -> Path:
    path = data_dir() / SESSIONS
    _make_dir(path)
    return path


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SessionError(f"cannot create {path}: {e.strerror or e}") from None


@dataclass
class SessionInfo:
    path: Path
    name: str
    source: str
    model: str
    started: datetime
    final_seconds: float  # where the last final token ends
    token_count: int
    closed: bool = False


# ------------------------------------------------------------------------ file names


_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)


def safe_file_name(name: str, fallback: str = "session") -> str:
    """`name` made safe as a file name on Linux, macOS and Windows: no separators, reserved
    characters or control characters, no leading or trailing dots and spaces, not too long."""
    text = _UNSAFE.sub("_", name)
    text = " ".join(text.split()).strip(" .")
    if _WINDOWS_RESERVED.match(text):
        text = f"{text}_"
    encoded = text.encode("utf-8")
    if len(encoded) > _MAX_NAME_BYTES:
        text = encoded[:_MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip(" .")
    return text or fallback


def default_export_name(session_name: str, fmt: str, directory: Path | None = None) -> Path:
    """`<session name>.<fmt>` in `directory` (the working directory by default), the name
    made safe for file systems."""
    suffix = fmt.strip().lstrip(".").lower()
    if not re.fullmatch(r"[a-z0-9]+", suffix):
        raise ValueError(f"not a file format: {fmt!r}")
    folder = Path.cwd() if directory is None else Path(directory)
    return folder / f"{safe_file_name(session_name)}.{suffix}"


# ------------------------------------------------------------------------ encoding


def _token_line(token: AlignedToken) -> str:
    values = (token.start, token.duration, token.confidence)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"token {token.text!r} has a time or confidence that is not finite")
    record = {
        "id": int(token.id),
        "text": str(token.text),
        "start": float(token.start),
        "duration": float(token.duration),
        "confidence": float(token.confidence),
    }
    return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


def _token_from_line(line: str) -> AlignedToken:
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    numbers = [record["start"], record["duration"], record.get("confidence", 1.0)]
    if not isinstance(record["id"], int) or not isinstance(record["text"], str):
        raise ValueError("bad id or text")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
        raise ValueError("bad time or confidence")
    start, duration, confidence = (float(v) for v in numbers)
    return AlignedToken(record["id"], record["text"], start, duration, confidence)


def _read_tokens(path: Path) -> tuple[list[AlignedToken], int]:
    """The tokens of complete lines, and the byte length they take (what follows, if
    anything, is a line torn by a crash)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as e:
        raise SessionError(f"cannot read {path}: {e.strerror or e}") from None
    complete = data.rfind(b"\n") + 1
    tokens = []
    for number, raw in enumerate(data[:complete].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            tokens.append(_token_from_line(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise SessionError(f"{path}: corrupt at line {number}") from None
    return tokens, complete


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SessionError(f"{folder}: not a parakeet-tui session (no {META})") from None
    except OSError as e:
        raise SessionError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError):
        raise SessionError(f"{path}: corrupt (not JSON)") from None
    try:
        if not isinstance(meta, dict) or not isinstance(meta.get("version"), int):
            raise ValueError
        for key in ("name", "source", "model", "started"):
            if not isinstance(meta[key], str):
                raise ValueError
        meta["started_at"] = datetime.fromisoformat(meta["started"])
    except (KeyError, ValueError, TypeError):
        raise SessionError(f"{path}: corrupt (missing or malformed fields)") from None
    if meta["version"] > VERSION:
        raise SessionError(f"{path}: written by a newer parakeet-tui (format {meta['version']})")
    return meta


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Replaces session.json atomically: the old file or the new, never half of one."""
    data = {k: v for k, v in meta.items() if k != "started_at"}
    content = (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    temp = folder / f".{META}.{secrets.token_hex(4)}.tmp"
    try:
        with open(temp, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, folder / META)
    except OSError as e:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise SessionError(f"cannot write {folder / META}: {e.strerror or e}") from None
    _fsync_dir(folder)


# ------------------------------------------------------------------------ the store


class SessionStore:
    """One session on disk. Safe to use from several threads."""

    def __init__(self, folder: Path, meta: dict[str, Any], tokens: list[AlignedToken], size: int):
        # use create() or open()
        self._folder = folder
        self._meta = meta
        self._tokens = tokens
        self._valid_size = size  # bytes of tokens.jsonl that hold complete lines
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._discarded = False

    # -- making and finding sessions -------------------------------------------------
    @classmethod
    def create(
        cls, name: str, *, source: str, model: str, root: Path | None = None
    ) -> SessionStore:
        """A new session folder under `root` (default: data_dir()/sessions)."""
        parent = Path(root) if root is not None else sessions_dir()
        _make_dir(parent)
        started = datetime.now().astimezone()
        stem = f"{started:%Y-%m-%d_%H-%M-%S}_{safe_file_name(name)}"
        for attempt in range(1, 1000):
            folder = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
            try:
                folder.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise SessionError(f"cannot create {folder}: {e.strerror or e}") from None
        else:
            raise SessionError(f"cannot create a session folder in {parent}: too many named {stem}")
        meta = {
            "version": VERSION,
            "name": name,
            "source": source,
            "model": model,
            "started": started.isoformat(),
            "closed": None,
            "started_at": started,
        }
        try:
            (folder / TOKENS).touch()
            _write_meta(folder, meta)
        except (OSError, SessionError):
            shutil.rmtree(folder, ignore_errors=True)
            raise
        _fsync_dir(parent)
        return cls(folder, meta, [], 0)

    @classmethod
    def open(cls, path: Path | str) -> SessionStore:
        """An existing session (its folder, or a file in it), for recovery. A last line torn
        by a crash is ignored; anything else unreadable is a SessionError."""
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        if not folder.is_dir():
            raise SessionError(f"{path}: no such session")
        meta = _read_meta(folder)
        tokens, size = _read_tokens(folder / TOKENS)
        return cls(folder, meta, tokens, size)

    @classmethod
    def unfinished(cls, root: Path | None = None) -> list[SessionInfo]:
        """Sessions never closed, newest first. Folders that are not readable sessions are
        left out (open() one to see why)."""
        parent = Path(root) if root is not None else sessions_dir()
        try:
            folders = [p for p in parent.iterdir() if p.is_dir()]
        except OSError:
            return []
        found = []
        for folder in folders:
            try:
                meta = _read_meta(folder)
                if meta.get("closed"):
                    continue
                tokens, _ = _read_tokens(folder / TOKENS)
            except SessionError:
                continue
            found.append(_info(folder, meta, tokens))
        return sorted(found, key=lambda info: info.started, reverse=True)

    # -- the session -------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._folder

    @property
    def name(self) -> str:
        return self._meta["name"]

    @property
    def closed(self) -> bool:
        return bool(self._meta.get("closed"))

    @property
    def tokens(self) -> list[AlignedToken]:
        with self._lock:
            return list(self._tokens)

    @property
    def info(self) -> SessionInfo:
        with self._lock:
            return _info(self._folder, self._meta, self._tokens)

    def result(self, config: SentenceConfig | None = None) -> AlignedResult:
        return sentences_to_result(tokens_to_sentences(self.tokens, config))

    def append_final(self, tokens: Iterable[AlignedToken]) -> None:
        """Appends final tokens: on disk (written, flushed, fsynced) when this returns."""
        tokens = list(tokens)
        if not tokens:
            return
        data = "".join(_token_line(t) for t in tokens).encode("utf-8")
        with self._lock:
            self._check_writable()
            fd = self._open_for_append()
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError as e:
                raise SessionError(
                    f"cannot write {self._folder / TOKENS}: {e.strerror or e}"
                ) from None
            self._valid_size += len(data)
            self._tokens.extend(tokens)

    def close(self) -> None:
        """Marks the session complete (no longer offered for recovery). Idempotent."""
        with self._lock:
            if self._discarded:
                return
            self._close_fd()
            if not self._meta.get("closed"):
                meta = dict(self._meta, closed=datetime.now().astimezone().isoformat())
                _write_meta(self._folder, meta)
                self._meta = meta

    def discard(self) -> None:
        """Deletes the session from disk."""
        with self._lock:
            self._close_fd()
            self._discarded = True
            try:
                shutil.rmtree(self._folder)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise SessionError(f"cannot delete {self._folder}: {e.strerror or e}") from None

    # -- internals (lock held) -----------------------------------------------------------
    def _check_writable(self) -> None:
        if self._discarded:
            raise SessionError(f"session {self.name!r} was discarded")
        if self._meta.get("closed"):
            raise SessionError(f"session {self.name!r} is closed")

    def _open_for_append(self) -> int:
        if self._fd is None:
            path = self._folder / TOKENS
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
            except OSError as e:
                raise SessionError(f"cannot open {path}: {e.strerror or e}") from None
            try:
                if os.fstat(fd).st_size != self._valid_size:  # a torn line from a crash
                    os.ftruncate(fd, self._valid_size)
            except OSError as e:
                os.close(fd)
                raise SessionError(f"cannot repair {path}: {e.strerror or e}") from None
            self._fd = fd
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self._close_fd()


def _info(folder: Path, meta: dict[str, Any], tokens: list[AlignedToken]) -> SessionInfo:
    return SessionInfo(
        path=folder,
        name=meta["name"],
        source=meta["source"],
        model=meta["model"],
        started=meta["started_at"],
        final_seconds=max((t.end for t in tokens), default=0.0),
        token_count=len(tokens),
        closed=bool(meta.get("closed")),
    )
