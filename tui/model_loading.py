"""Loading a model for the app: from a folder, huggingface-hub's cache, or the hub with
download progress; every failure an `asr.ModelError` with a one-line message.

A hub id not in the cache is downloaded file by file through `hf_hub_download`, whose
`tqdm_class` hook reports each file's bytes. Offline (HF_HUB_OFFLINE, or the hub's host
unreachable) a missing model fails at once instead of retrying for half a minute.
"""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

# Through asr, never directly: asr loads the fast BLAS, which must precede MLX's first import.
from asr import BaseParakeet, ModelError, from_pretrained
from asr.backend import backend_name
from asr.engine import prepare_streaming
from asr.hub import FILES

if TYPE_CHECKING:
    import mlx.core as mx

__all__ = ["DEFAULT_MODEL", "DownloadProgress", "backend_name", "load_model", "model_label"]

DEFAULT_MODEL = "mlx-community/parakeet-tdt-0.6b-v3"  # as tui.transcribe_options
PROGRESS_INTERVAL = 0.1  # seconds between progress reports for one file (its end always)
PROBE_TIMEOUT = 3.0  # seconds to wait for the hub's host to answer before calling it offline

_TRUE = frozenset({"1", "on", "yes", "true"})
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass
class DownloadProgress:
    filename: str
    downloaded: int  # bytes
    total: int | None  # bytes; None while unknown


ProgressCallback = Callable[[DownloadProgress], None]


def load_model(
    model_id: str,
    *,
    on_progress: ProgressCallback | None = None,
    dtype: mx.Dtype | None = None,
    cache_dir: str | Path | None = None,
) -> BaseParakeet:
    """A Parakeet model from a local folder or a Hugging Face repo id. Slow (seconds to
    minutes): call it off the UI thread; `on_progress` runs on the calling thread (or
    huggingface-hub's) while files download."""
    model_id = str(model_id).strip()
    if not model_id:
        raise ModelError("no model given")
    path = Path(model_id).expanduser()
    if path.is_dir():
        folder = path
    elif path.exists() or not _HUB_ID.match(model_id) or ".." in model_id:
        raise ModelError(f"model {model_id!r}: no such folder, and not a Hugging Face repo id")
    else:
        folder = _hub_folder(model_id, cache_dir, on_progress)
    try:
        model = from_pretrained(str(folder), dtype=dtype)
        prepare_streaming(model)
        return model
    except ModelError as e:
        raise ModelError(_one_line(e)) from None
    except Exception as e:  # MLX or file system trouble: still one line for the user
        raise ModelError(f"cannot load model {model_id!r}: {_one_line(e)}") from None


def _hub_folder(
    model_id: str, cache_dir: str | Path | None, on_progress: ProgressCallback | None
) -> Path:
    from huggingface_hub import hf_hub_download

    paths = []
    missing = []
    for name in FILES:  # the cache first: no network for a model already downloaded
        try:
            paths.append(
                hf_hub_download(model_id, name, cache_dir=cache_dir, local_files_only=True)
            )
        except Exception:
            missing.append(name)
    if not missing:
        return Path(paths[0]).parent
    how = f"on a connected machine run `hf download {model_id}`, or pass a local folder"
    if _offline():
        raise ModelError(f"model {model_id!r} is not in the Hugging Face cache (offline); {how}")
    unreachable = _hub_unreachable()
    if unreachable:
        raise ModelError(
            f"model {model_id!r} is not in the Hugging Face cache and {unreachable}; {how}"
        )
    for name in FILES:
        try:
            path = hf_hub_download(
                model_id, name, cache_dir=cache_dir, tqdm_class=_progress_class(name, on_progress)
            )
        except Exception as e:
            raise ModelError(
                f"model {model_id!r}: cannot download {name} ({_download_error(e)}); {how}"
            ) from None
    return Path(path).parent


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:
        return False


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except Exception:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _hub_unreachable(timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the hub cannot be reached (one phrase), or None when it can or when a proxy
    decides. A DNS lookup and a TCP connection, bounded by `timeout`: huggingface-hub itself
    retries an unreachable host for about half a minute."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(_endpoint())
    host = url.hostname
    if not host:
        return None
    port = url.port or (80 if url.scheme == "http" else 443)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            outcome.append(f"{host} cannot be reached ({reason})")

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)  # a DNS lookup ignores the socket's timeout
    if not outcome:
        return f"{host} cannot be reached (no answer in {timeout:g} s)"
    return outcome[0]


def _download_error(error: BaseException) -> str:
    kind = type(error).__name__
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return "no such repository, or it needs a login"
    if kind in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
        return "the repository has no such file"
    if kind == "RevisionNotFoundError":
        return "no such revision"
    return f"{kind}: {_one_line(error)}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0].strip() if text else "") or type(error).__name__


class _NullWriter(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _progress_class(filename: str, on_progress: ProgressCallback | None) -> type:
    """A tqdm class for `hf_hub_download(tqdm_class=...)` that draws nothing and reports one
    file's bytes to on_progress. Only the first bar made for the file reports: a retry reuses
    it, and a Xet download's second bar counts network bytes rather than the file's."""
    from tqdm import tqdm

    reporter: list[Any] = []

    class ProgressBar(tqdm):
        monitor_interval = 0  # no monitor thread

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)  # huggingface-hub's own tqdm takes it; plain tqdm does not
            kwargs["disable"] = False  # counting must run even without a terminal
            kwargs["file"] = _NullWriter()
            super().__init__(*args, **kwargs)
            self._reports = not reporter
            reporter.append(self)
            self._last_report = 0.0

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if on_progress is not None and self._reports:
                now = time.monotonic()
                total = int(self.total) if self.total else None
                done = total is not None and self.n >= total
                if done or now - self._last_report >= PROGRESS_INTERVAL:
                    self._last_report = now
                    on_progress(DownloadProgress(filename, int(self.n), total))
            return shown

    return ProgressBar


_SNAPSHOT = re.compile(r"^models--(.+?)--(.+)$")
_GENERIC = frozenset({"mlx", "model", "models", "weights", "checkpoint", "main"})


def model_label(model_id: str) -> str:
    """A short name for the status bar: a hub id's repository name; for a folder, its name
    (with its parent's when the name alone says little, as in `tdt/mlx`)."""
    text = str(model_id).strip().rstrip("/\\")
    if not text:
        return "no model"
    path = Path(text).expanduser()
    if not path.exists() and _HUB_ID.match(text):
        return text.split("/", 1)[1]
    parts = path.resolve().parts if path.exists() else path.parts
    # huggingface-hub's cache: .../models--org--name/snapshots/<commit>
    for part in reversed(parts):
        match = _SNAPSHOT.match(part)
        if match:
            return match.group(2)
    name = parts[-1] if parts else text
    if name.lower() in _GENERIC and len(parts) > 1:
        return f"{parts[-2]}/{name}"
    return name
