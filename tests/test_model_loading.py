"""Loading models for the app: folders, the hub's cache, download progress, offline errors."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import huggingface_hub
import mlx.core as mx
import pytest
from conftest import NEMO

import asr
from tui import model_loading
from tui.model_loading import (
    DEFAULT_MODEL,
    DownloadProgress,
    backend_name,
    load_model,
    model_label,
)
from tui.transcribe_options import DEFAULT_MODEL as CLI_DEFAULT_MODEL

FIXTURE = NEMO / "tdt" / "mlx"
REPO_ID = "someone/tiny-parakeet"


def one_line_model_error(excinfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def test_default_model_is_the_clis():
    assert DEFAULT_MODEL == CLI_DEFAULT_MODEL


def test_loads_a_local_folder():
    model = load_model(str(FIXTURE), dtype=mx.float32)
    assert isinstance(model, asr.ParakeetTDT)
    result = model.transcribe(str(NEMO / "audio" / "speech0.wav"))
    assert isinstance(result, asr.AlignedResult)


@pytest.mark.parametrize("model_id", ["/no/such/folder", "./no-such-folder", "a/b/c", "", "../x"])
def test_missing_folders_and_bad_ids_are_one_line_errors(model_id):
    with pytest.raises(asr.ModelError) as info:
        load_model(model_id)
    message = one_line_model_error(info)
    assert "no such folder" in message or "no model" in message


def test_a_file_is_not_a_model(tmp_path):
    file = tmp_path / "model.bin"
    file.write_bytes(b"x")
    with pytest.raises(asr.ModelError) as info:
        load_model(str(file))
    assert "no such folder" in one_line_model_error(info)


def test_a_broken_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(asr.ModelError) as info:
        load_model(str(tmp_path))
    assert "config.json" in one_line_model_error(info)
    shutil.copy(FIXTURE / "config.json", tmp_path / "config.json")
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(asr.ModelError) as info:
        load_model(str(tmp_path))
    assert "model.safetensors" in one_line_model_error(info)


def no_network(*args, **kwargs):
    raise AssertionError("the network was used")


def test_offline_hub_id_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_loading, "_hub_unreachable", no_network)
    with pytest.raises(asr.ModelError) as info:
        load_model("nobody-here/no-such-model", cache_dir=tmp_path)
    message = one_line_model_error(info)
    assert "not in the Hugging Face cache (offline)" in message
    assert "nobody-here/no-such-model" in message


def test_unreachable_hub_fails_without_downloading(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        model_loading, "_hub_unreachable", lambda: "huggingface.co cannot be reached (no DNS)"
    )
    real = huggingface_hub.hf_hub_download

    def cache_only(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            raise AssertionError("a download was attempted")
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_only)
    with pytest.raises(asr.ModelError) as info:
        load_model("nobody-here/no-such-model", cache_dir=tmp_path)
    assert "cannot be reached (no DNS)" in one_line_model_error(info)


def fill_cache(cache: Path, repo_id: str) -> Path:
    """huggingface-hub's cache layout, holding the fixture model."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(FIXTURE / name, snapshot / name)
    return snapshot


def test_a_cached_hub_model_loads_offline(tmp_path, monkeypatch):
    snapshot = fill_cache(tmp_path, REPO_ID)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_loading, "_hub_unreachable", no_network)
    seen = []
    model = load_model(REPO_ID, cache_dir=tmp_path, on_progress=seen.append)
    assert isinstance(model, asr.ParakeetTDT) and seen == []
    assert model_label(str(snapshot)) == "tiny-parakeet"


class FakeHub:
    """hf_hub_download as a download from an empty cache: it drives tqdm_class as
    huggingface-hub does (with its `name` keyword, which plain tqdm refuses)."""

    def __init__(self, root: Path, chunk: int = 100_000, xet: bool = False, error=None):
        self.snapshot = root / "snapshot"
        self.snapshot.mkdir(parents=True)
        self.chunk, self.xet, self.error = chunk, xet, error

    def __call__(self, repo_id, filename, *, cache_dir=None, local_files_only=False, **kwargs):
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        if self.error is not None:
            raise self.error
        data = (FIXTURE / filename).read_bytes()
        bar = kwargs["tqdm_class"](
            unit="B", unit_scale=True, total=len(data), initial=0, desc=filename,
            name="huggingface_hub.http_get",
        )  # fmt: skip
        second = kwargs["tqdm_class"](total=None, desc="network bytes") if self.xet else None
        with bar:
            for i in range(0, len(data), self.chunk):
                n = min(self.chunk, len(data) - i)
                bar.update(n)
                if second is not None:
                    second.update(7)
        if second is not None:
            second.close()
        target = self.snapshot / filename
        target.write_bytes(data)
        return str(target)


@pytest.mark.parametrize("xet", [False, True])
def test_download_reports_progress_per_file(tmp_path, monkeypatch, xet):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(model_loading, "_hub_unreachable", lambda: None)
    monkeypatch.setattr(model_loading, "PROGRESS_INTERVAL", 0.0)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(tmp_path, xet=xet))
    seen: list[DownloadProgress] = []
    model = load_model(REPO_ID, on_progress=seen.append)
    assert isinstance(model, asr.ParakeetTDT)
    sizes = {n: (FIXTURE / n).stat().st_size for n in ("config.json", "model.safetensors")}
    assert [p.filename for p in seen][0] == "config.json"
    assert {p.filename for p in seen} == set(sizes)
    for name, size in sizes.items():
        reports = [p for p in seen if p.filename == name]
        assert all(p.total == size for p in reports)
        assert [p.downloaded for p in reports] == sorted(p.downloaded for p in reports)
        assert reports[-1].downloaded == size
    assert len([p for p in seen if p.filename == "model.safetensors"]) >= 10


def test_progress_reports_are_throttled_but_the_end_always_comes(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(model_loading, "_hub_unreachable", lambda: None)
    monkeypatch.setattr(model_loading, "PROGRESS_INTERVAL", 3600.0)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(tmp_path, chunk=1000))
    seen: list[DownloadProgress] = []
    load_model(REPO_ID, on_progress=seen.append)
    weights = [p for p in seen if p.filename == "model.safetensors"]
    size = (FIXTURE / "model.safetensors").stat().st_size
    assert [p.downloaded for p in weights] == [1000, size]  # the first, then the end


def test_download_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(model_loading, "_hub_unreachable", lambda: None)

    class RepositoryNotFoundError(Exception):
        pass

    error = RepositoryNotFoundError("404 Client Error.\n\nRepository Not Found for url: ...")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(tmp_path, error=error))
    with pytest.raises(asr.ModelError) as info:
        load_model("nobody-here/no-such-model")
    message = one_line_model_error(info)
    assert "cannot download config.json (no such repository, or it needs a login)" in message


def test_probe_reports_a_refused_connection_and_accepts_a_listener(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(model_loading, "_endpoint", lambda: f"http://127.0.0.1:{port}")
    assert model_loading._hub_unreachable(timeout=5) is None
    listener.close()
    reason = model_loading._hub_unreachable(timeout=5)
    assert reason is not None and reason.startswith("127.0.0.1 cannot be reached")


def test_backend_name():
    name = backend_name()
    assert name in ("Metal", "CUDA", "CPU", "GPU")
    if mx.default_device() == mx.cpu:
        assert name == "CPU"


def test_model_label():
    assert model_label("mlx-community/parakeet-tdt-0.6b-v3") == "parakeet-tdt-0.6b-v3"
    assert model_label(str(FIXTURE)) == "tdt/mlx"
    assert model_label(str(NEMO / "tdt")) == "tdt"
    assert model_label("/nowhere/models/my-finetune/") == "my-finetune"
    assert model_label("") == "no model"
