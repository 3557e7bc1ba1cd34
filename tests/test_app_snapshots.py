"""Snapshots of the app's main screens (pytest-textual-snapshot). Whatever varies from run to
run (timings, the clock, the MLX backend, toasts) is fixed or cleared before the picture.

After an intended change of the screens: pytest tests/test_app_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest
from app_fixtures import SIZE, long_recording, make_app, sample_tokens, wait_for

from tui.widgets.status_bar import StatusBar


@pytest.fixture(autouse=True)
def steady(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAKEET_TUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tui.widgets.mic.mic_pane.list_input_devices", lambda: [])
    monkeypatch.setattr("tui.app.backend_name", lambda: "CPU")


async def _settle(pilot) -> None:
    app = pilot.app
    await app.workers.wait_for_complete()
    app.query_one(StatusBar).reset_figures()
    app.clear_notifications()
    await pilot.pause()


def test_mic_pane_idle_without_a_device(snap_compare):
    async def run_before(pilot):
        await _settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_file_pane_with_a_transcript(snap_compare, tmp_path):
    app = make_app(recording=long_recording(tmp_path), max_sentence_seconds=None)

    async def run_before(pilot):
        pane = app.file_pane
        await wait_for(pilot, lambda: pane.bridge is not None and pane.bridge.stopped)
        pane.show_tokens(sample_tokens())  # readable text, the same every run
        pane.seek(3.2)  # the second sentence is under the playhead
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_export_dialog(snap_compare):
    app = make_app(max_sentence_seconds=None)

    async def run_before(pilot):
        app.mic_pane.show_tokens(sample_tokens())
        await _settle(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
