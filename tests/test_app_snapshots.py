"""Snapshots of the app's main screens (pytest-textual-snapshot). Whatever varies from run to
run (timings, the clock, the MLX backend, toasts) is fixed or cleared before the picture.

After an intended change of the screens: pytest tests/test_app_snapshots.py --snapshot-update
"""

from __future__ import annotations

import functools

import pytest
from app_fixtures import SIZE, long_recording, make_app, make_demo_app, sample_tokens, wait_for
from demo_model import DEMO_RECORDING, MAX_WER, demo_text, word_error_rate

from tui.engine_bridge import FileFeeder
from tui.model_loading import backend_name
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


# The demo's text comes from the engine, so the picture holds only where the text is the
# same every run: one engine update per second of audio (the feeder waits for each), on the
# backend the picture was taken with (another backend's sums may change a letter).
DEMO_TEXT = (
    "Welcome to the demo everything you here is turned into text on your own computer,"
    " while it plays this small model learned to listen from a computer voice, so it knows"
    " that kind of speech very well press space to pause, and the arrow keys to skip back"
    " or forward click on any sentence to jump their when you are done, press control and"
    " save to keep the whole session as. A file try the live page next, with a real model"
    " and watch the words appear as people speak."
)


@pytest.mark.skipif(backend_name() != "CPU", reason="the demo's text was pinned on the CPU")
def test_file_pane_with_the_demo_transcribed(snap_compare, monkeypatch):
    one_update_per_block = functools.partial(FileFeeder, block_seconds=1.0, max_ahead_seconds=0.5)
    monkeypatch.setattr("tui.widgets.file.file_pane.FileFeeder", one_update_per_block)
    app = make_demo_app(recording=DEMO_RECORDING)

    async def run_before(pilot):
        pane = app.file_pane
        await wait_for(pilot, lambda: pane.bridge is not None and pane.bridge.stopped, 60)
        text = " ".join(row.text for row in pane.live.rows)
        assert word_error_rate(demo_text(), text) <= MAX_WER
        assert text == DEMO_TEXT  # the picture below shows it
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
