"""The app driven by Textual's pilot: the fixture model, a recording standing in for the
microphone, silent playback, sessions in a temporary data directory."""

from __future__ import annotations

import difflib
import re
import threading
import time
from dataclasses import replace

import mlx.core as mx
import pytest
from app_fixtures import (
    AUDIO,
    long_recording,
    make_app,
    make_demo_app,
    sample_tokens,
    wait_for,
)
from demo_model import (
    DEMO_RECORDING,
    MAX_WER,
    demo_audio,
    demo_seconds,
    demo_text,
    load_demo_model,
    normalized_words,
    word_alignment,
    word_error_rate,
)
from textual.widgets import Button, Input, Label, RadioButton, Static

from tui.app import ParakeetApp, main
from tui.app_options import parse_app_args
from tui.live_transcript import LiveTranscript
from tui.screens.export_dialog import ExportDialog
from tui.screens.model_loading import ModelLoadingScreen
from tui.screens.recover_session import RecoverSessionDialog
from tui.session_store import SessionStore
from tui.widgets.sliders import Slider
from tui.widgets.transcript import Transcript

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Sessions in a fresh data directory, exports in a fresh working directory, and no
    input devices (as on machines without a microphone)."""
    monkeypatch.setenv("PARAKEET_TUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tui.widgets.mic.mic_pane.list_input_devices", lambda: [])


def shown_text(pane) -> str:
    return " ".join(row.text for row in pane.query_one(Transcript).rows)


# -- the pure transcript -------------------------------------------------------------------


def test_live_transcript_settles_rows_and_replaces_drafts():
    tokens = sample_tokens()
    live = LiveTranscript()
    assert live.add_final(tokens[:3]) == 0
    assert live.set_draft(tokens[3:7]) == 0
    rows = live.rows
    assert [r.final_text for r in rows] == ["Welcome to the", ""]
    assert rows[0].draft_text == " weekly meeting."
    assert rows[1].draft_text == "First, the"
    first = live.add_final(tokens[3:8])
    live.set_draft([])
    assert first == 0
    assert [r.text for r in live.rows] == ["Welcome to the weekly meeting.", "First, the budget"]
    settled = live.rows[0]
    live.add_final(tokens[8:])
    assert live.rows[0] is settled  # a settled sentence is never rebuilt
    assert len(live.rows) == 3
    assert live.row_at_time(0.0) is None  # before the first word
    assert live.row_at_time(0.5) == 0
    assert live.row_at_time(3.5) == 1
    assert live.row_at_time(100) == 2
    assert live.result().text.startswith("Welcome to the weekly meeting.")


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--depth", "0"], "--depth"),
        (["--context", "8"], "--context"),
        (["--context", "0", "4"], "--context"),
        (["missing.wav"], "no such file"),
        (["--mic-from", "missing.wav"], "no such file"),
        (["--mic-speed", "fast"], "--mic-speed"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, words, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err
    assert err.count("\n") == 1


# -- the Mic pane --------------------------------------------------------------------------


async def test_no_input_device_says_so_and_the_rest_works():
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        notice = app.query_one("#mic-notice", Static)
        assert notice.display
        assert "No audio input device" in str(notice.render())
        assert app.query_one("#mic-record", Button).disabled
        await pilot.press("r")  # refused politely
        assert app.mic_pane.state == "idle"
        await pilot.press("f")
        assert app.active_pane is app.file_pane


async def test_mic_text_appears_and_drafts_turn_final_on_pause_and_stop(tmp_path):
    app = make_app(mic_from=long_recording(tmp_path), mic_speed=2.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        assert not app.query_one("#mic-notice", Static).display
        await pilot.press("r")
        mic = app.mic_pane
        await wait_for(pilot, lambda: mic.live.has_draft)
        assert mic.state == "recording"
        assert app.query_one(Transcript).rows  # shown as it is heard
        await pilot.press("p")
        assert mic.state == "paused"
        await wait_for(pilot, lambda: not mic.live.has_draft)  # pausing makes drafts final
        paused_tokens = len(mic.live.final_tokens)
        await pilot.press("r")
        assert mic.state == "recording"
        await wait_for(
            pilot, lambda: len(mic.live.final_tokens) + len(mic.live.draft_tokens) > paused_tokens
        )
        await pilot.press("s")
        await wait_for(pilot, lambda: mic.state == "idle")
        assert not mic.live.has_draft
        assert all(not row.draft_text for row in mic.live.rows)
        assert str(app.query_one("#mic-elapsed", Label).render()) != "00:00"
        session = SessionStore.open(mic.store.path)
        assert session.closed
        assert [t.id for t in session.tokens] == [t.id for t in mic.live.final_tokens]


async def test_a_source_that_runs_out_ends_the_session():
    app = make_app(mic_from=AUDIO / "speech1.wav", mic_speed=0)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        mic = app.mic_pane
        await pilot.press("r")
        await wait_for(pilot, lambda: mic.state == "idle" and mic.store is not None)
        assert mic.live.final_tokens and not mic.live.has_draft
        assert SessionStore.open(mic.store.path).closed


async def test_sliders_move_with_keys_and_clicks():
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        left = app.query_one("#left-context", Slider)
        left.focus()
        await pilot.press("plus", "plus", "minus")
        assert left.value == 272
        await pilot.press("home")
        assert left.value == 1
        depth = app.query_one("#depth", Slider)
        assert depth.maximum == 2  # the fixture model's layers
        await pilot.click(depth, offset=(depth.size.width - 4, 0))  # the track's far end
        assert depth.value == 2
        assert depth.has_focus
        await pilot.click(depth, offset=(len("Depth "), 0))  # its near end
        assert depth.value == 1


async def test_slider_changes_reach_the_running_stream(tmp_path):
    calls = []
    applied = threading.Event()

    app = make_app(mic_from=long_recording(tmp_path), mic_speed=2.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.mic_pane.state == "recording")
        engine = app.mic_pane.bridge.engine
        set_context = engine.set_context

        def spy(context, depth=None):
            calls.append((tuple(context), depth))
            set_context(context, depth)
            threading.Thread(target=lambda: engine.wait_idle(10) and applied.set()).start()

        engine.set_context = spy
        left = app.query_one("#left-context", Slider)
        for _ in range(2):
            left.action_increase()  # as fast as a held key: announced once, settled
        app.query_one("#depth", Slider).value = 2
        await wait_for(pilot, applied.is_set)
        assert calls == [((288, 16), 2)]
        assert engine._stream.context_size == (288, 16)
        assert engine._stream.depth == 2
        await pilot.press("s")
        await wait_for(pilot, lambda: app.mic_pane.state == "idle")


# -- the File pane -------------------------------------------------------------------------


async def test_file_pane_fills_in_and_enter_on_a_sentence_seeks(tmp_path):
    recording = long_recording(tmp_path)
    app = make_app(recording=recording)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.file_pane
        assert app.active_pane is pane
        await wait_for(pilot, lambda: pane.player is not None)
        await wait_for(pilot, lambda: pane.bridge is not None and pane.bridge.stopped)
        await pilot.pause(0.2)
        rows = pane.live.rows
        assert len(rows) >= 2
        assert "transcribed" in str(app.query_one("#file-state", Label).render())
        assert rows == list(app.query_one("#file-transcript", Transcript).rows)
        app.query_one("#file-transcript", Transcript).focus()
        await pilot.press("down", "down", "enter")
        assert pane.player.position == pytest.approx(rows[1].start, abs=0.05)
        assert not pane.player.playing
        await pilot.press("right")
        assert pane.player.position == pytest.approx(rows[1].start + 5, abs=0.05)
        await pilot.press("left", "left")
        assert pane.player.position == pytest.approx(max(0.0, rows[1].start - 5), abs=0.05)
        await pilot.press("space")
        assert pane.player.playing
        transcript = app.query_one("#file-transcript", Transcript)
        await wait_for(pilot, lambda: transcript.playing is not None, 5)
        assert transcript.playing == pane.live.row_at_time(pane.player.position)
        await pilot.press("space")
        assert not pane.player.playing
        session = SessionStore.open(pane.store.path)
        assert session.closed and session.name == "meeting"


async def test_clicking_a_sentence_seeks(tmp_path):
    app = make_app(recording=long_recording(tmp_path))
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.file_pane
        await wait_for(pilot, lambda: pane.bridge is not None and pane.bridge.stopped)
        await pilot.pause(0.2)
        transcript = app.query_one("#file-transcript", Transcript)
        lines_of_first_row = len(transcript._row_strips[0])
        await pilot.click(transcript, offset=(12, 1 + lines_of_first_row))  # below the border
        assert transcript.cursor == 1
        assert pane.player.position == pytest.approx(pane.live.rows[1].start, abs=0.05)


# -- export --------------------------------------------------------------------------------


async def test_export_writes_srt_at_the_chosen_path(tmp_path):
    app = make_app(max_sentence_seconds=None)  # sentences end at their full stops
    async with app.run_test(size=(120, 36)) as pilot:
        app.mic_pane.show_tokens(sample_tokens())
        await pilot.press("ctrl+s")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        path_input = dialog.query_one("#export-path", Input)
        assert path_input.value == "microphone.srt"
        buttons = {button.name: button for button in dialog.query(RadioButton)}
        assert list(buttons) == ["srt", "vtt", "json", "txt"]
        await pilot.click(buttons["vtt"])  # the name follows the format
        assert path_input.value == "microphone.vtt"
        await pilot.click(buttons["srt"])
        path_input.value = str(tmp_path / "nowhere" / "x.srt")
        await pilot.click("#export-save")
        await wait_for(pilot, lambda: dialog.query_one("#export-error").display)
        assert "nowhere" in str(dialog.query_one("#export-error", Label).render())
        target = tmp_path / "minutes.srt"
        path_input.value = str(target)
        path_input.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ExportDialog))
    text = target.read_text()
    blocks = text.strip().split("\n\n")
    assert blocks[0].splitlines()[:2] == ["1", "00:00:00,400 --> 00:00:02,200"]
    assert blocks[0].splitlines()[2] == "Welcome to the weekly meeting."
    assert len(blocks) == 3
    assert not list(tmp_path.glob(".*.tmp"))


async def test_export_with_nothing_to_export_says_so():
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, ExportDialog)


# -- sessions ------------------------------------------------------------------------------


def _crashed_session(name: str, source: str = "microphone") -> SessionStore:
    store = SessionStore.create(name, source=source, model="tdt")
    store.append_final(sample_tokens())
    return store  # never closed: as after a crash


async def test_recovery_is_offered_and_loads_the_text():
    _crashed_session("standup")
    app = make_app(offer_recovery=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RecoverSessionDialog))
        await pilot.click("#recover-session")
        await wait_for(pilot, lambda: not isinstance(app.screen, RecoverSessionDialog))
        assert shown_text(app.mic_pane).startswith("Welcome to the weekly meeting. First")
        assert app.sub_title == "standup"
        await pilot.press("ctrl+q")
    assert SessionStore.unfinished() == []  # closed on quit


async def test_recovering_a_recording_goes_on_transcribing(tmp_path):
    recording = long_recording(tmp_path)
    store = SessionStore.create("meeting", source=str(recording), model="tdt")
    store.append_final([t for t in sample_tokens() if t.start < 3])
    app = make_app(offer_recovery=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RecoverSessionDialog))
        await pilot.press("enter")
        pane = app.file_pane
        await wait_for(pilot, lambda: pane.bridge is not None and pane.bridge.stopped)
        tokens = SessionStore.open(store.path).tokens
        assert tokens[0].text == " Welcome"
        assert len(tokens) > 5
        assert min(t.start for t in tokens[5:]) >= 2.0  # went on from the recovered end
        assert shown_text(pane).startswith("Welcome to the weekly meeting.")


async def test_discarding_an_unfinished_session():
    store = _crashed_session("old")
    app = make_app(offer_recovery=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RecoverSessionDialog))
        await pilot.press("d")
        await wait_for(pilot, lambda: not isinstance(app.screen, RecoverSessionDialog))
    assert not store.path.exists()


# -- model loading -------------------------------------------------------------------------


async def test_model_loads_in_the_app(monkeypatch):
    app = make_app()
    app.model = None  # loads options.model: the fixture folder
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.model is not None)
        await wait_for(pilot, lambda: not isinstance(app.screen, ModelLoadingScreen))
        assert app.query_one("#depth", Slider).maximum == 2


async def test_a_model_that_cannot_load_is_an_error_in_the_app(tmp_path, monkeypatch):
    app = make_app(model=str(tmp_path / "no-model-here"))
    app.model = None
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelLoadingScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.failed)
        error = str(screen.query_one("#model-loading-error", Label).render())
        assert "no-model-here" in error and "\n" not in error
        await pilot.click("#without-model")
        assert app.model is None
        assert app.query_one("#mic-record", Button).disabled


# -- the demo model: the app hears the recording's words -----------------------------------


def rendered_text(transcript: Transcript) -> str:
    """What the transcript draws, row by row (times and wrapping included)."""
    return " ".join(strip.text for strips in transcript._row_strips for strip in strips)


def srt_text(path) -> tuple[list[float], str]:
    """An SRT file's cue start times and its text, checked for well-formed cues."""
    starts, lines = [], []
    for block in path.read_text().strip().split("\n\n"):
        number, times, *text = block.splitlines()
        assert number.isdigit()
        start, end = (
            int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
            for h, m, s, ms in re.findall(r"(\d\d):(\d\d):(\d\d),(\d\d\d)", times)
        )
        assert 0 <= start <= end
        starts.append(start)
        lines += text
    return starts, " ".join(lines)


async def test_demo_opens_the_file_pane_on_the_recording_and_hears_its_words():
    """`parakeet-tui --demo`: the demo model (loaded by the app from its folder), the File
    pane on the bundled recording, and a transcript of the recording's words."""
    options = replace(parse_app_args(["--demo"]), audio_output=False)
    assert options.recording == DEMO_RECORDING
    app = ParakeetApp(options, offer_recovery=False)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.file_pane
        assert app.active_pane is pane
        assert str(app.query_one("#file-name", Label).render()) == "recording.flac"
        await wait_for(pilot, lambda: pane.bridge is not None and pane.bridge.stopped, 60)
        await pilot.pause(0.2)
        transcript = app.query_one("#file-transcript", Transcript)
        assert not pane.live.has_draft
        shown = " ".join(row.text for row in transcript.rows)
        assert word_error_rate(demo_text(), shown) <= MAX_WER, shown
        drawn = rendered_text(transcript)
        assert word_error_rate(demo_text(), drawn) <= MAX_WER, drawn
        assert "Welcome to the demo" in drawn
        assert "transcribed" in str(app.query_one("#file-state", Label).render())
        tokens = SessionStore.open(pane.store.path).tokens
        assert word_error_rate(demo_text(), "".join(t.text for t in tokens)) <= MAX_WER


async def test_enter_on_a_demo_sentence_seeks_to_where_it_is_said():
    """The sentences' start times come from the model: after Enter on the second sentence,
    the audio from the playhead on says that sentence's words."""
    app = make_demo_app(recording=DEMO_RECORDING)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.file_pane
        await wait_for(pilot, lambda: pane.bridge is not None and pane.bridge.stopped, 60)
        await pilot.pause(0.2)
        rows = pane.live.rows
        assert len(rows) >= 3  # sentences end at full stops or after 12 s
        transcript = app.query_one("#file-transcript", Transcript)
        transcript.focus()
        for index in (1, 2):
            await pilot.press("home", *["down"] * index, "enter")
            assert transcript.cursor == index
            position = pane.player.position
            assert position == pytest.approx(rows[index].start, abs=0.05)
            assert rows[index - 1].start < position < demo_seconds()
            said = words_said_from(position)[:6]
            written = normalized_words(rows[index].text)[:6]
            # the first word may be cut, and a word may be heard differently offline
            matcher = difflib.SequenceMatcher(a=written, b=said, autojunk=False)
            matching = sum(block.size for block in matcher.get_matching_blocks())
            assert matching >= 3, (written, said)
        assert not pane.player.playing


def words_said_from(seconds: float, length: float = 4.0) -> list[str]:
    """The demo model's words for the recording from `seconds` on (offline)."""
    audio = demo_audio()[int(seconds * 16000) : int((seconds + length) * 16000)]
    return normalized_words(load_demo_model().transcribe_audio(mx.array(audio)).text)


async def test_mic_from_the_demo_recording_then_export_srt(tmp_path):
    """The recording standing in for the microphone at eight times real time: its words are
    final text once it ends, the session on disk holds them, and the SRT export too."""
    app = make_demo_app(mic_from=DEMO_RECORDING, mic_speed=8.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        mic = app.mic_pane
        await pilot.press("r")
        await wait_for(pilot, lambda: mic.state == "recording")
        await wait_for(pilot, lambda: len(normalized_words(shown_text(mic))) >= 5, 60)
        await wait_for(pilot, lambda: mic.state == "idle", 60)  # the recording ended
        assert not mic.live.has_draft
        final = "".join(t.text for t in mic.live.final_tokens)
        assert word_error_rate(demo_text(), final) <= MAX_WER, final
        assert word_error_rate(demo_text(), shown_text(mic)) <= MAX_WER
        session = SessionStore.open(mic.store.path)
        assert session.closed
        assert "".join(t.text for t in session.tokens) == final
        await pilot.press("ctrl+s")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        target = tmp_path / "demo.srt"
        path_input = dialog.query_one("#export-path", Input)
        path_input.value = str(target)
        path_input.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ExportDialog))
    starts, text = srt_text(target)
    assert word_error_rate(demo_text(), text) <= MAX_WER, text
    assert starts == sorted(starts) and starts[-1] < demo_seconds()
    assert len(starts) >= 3  # the app's sentences are at most 12 s long


async def test_stopping_the_demo_mic_keeps_what_was_said_so_far():
    """Stop in the middle: the drafts turn final, and the final text is the beginning of
    the recording, no more and no less than what was heard."""
    app = make_demo_app(mic_from=DEMO_RECORDING, mic_speed=2.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        mic = app.mic_pane
        await pilot.press("r")
        await wait_for(pilot, lambda: len(normalized_words(shown_text(mic))) >= 12, 60)
        await pilot.press("s")
        await wait_for(pilot, lambda: mic.state == "idle", 60)
        assert not mic.live.has_draft
        heard = normalized_words("".join(t.text for t in mic.live.final_tokens))
        reference = normalized_words(demo_text())
        assert 12 <= len(heard) < len(reference)
        # the last word may be cut where the stop fell
        prefix = reference[: len(heard)]
        assert word_error_rate(" ".join(prefix), " ".join(heard)) <= MAX_WER, heard
        assert mic.live.final_tokens[-1].end < demo_seconds()


async def test_the_session_a_pane_just_started_is_not_offered_for_recovery(monkeypatch):
    """A recording that loads before the model starts its session as the model arrives;
    that session is running, not crashed: only the crashed one is offered."""
    _crashed_session("standup")
    app = ParakeetApp(replace(parse_app_args(["--demo"]), audio_output=False), offer_recovery=True)

    def load_after_the_recording(model_id, on_progress=None):
        deadline = time.monotonic() + 20
        while app.file_pane.audio is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return load_demo_model()

    monkeypatch.setattr("tui.screens.model_loading.load_model", load_after_the_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RecoverSessionDialog))
        assert app.file_pane.store is not None  # the recording's session had started
        assert [info.name for info in app.screen.sessions] == ["standup"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, RecoverSessionDialog))
        pane = app.file_pane
        await wait_for(pilot, lambda: pane.bridge is not None and pane.bridge.stopped, 60)
        assert word_error_rate(demo_text(), shown_text(pane)) <= MAX_WER


async def test_demo_words_survive_a_slider_change_while_recording():
    """Moving the context and depth sliders in the middle of the demo recording: the
    stream takes the new settings, and the final text is still the recording's words, none
    lost or doubled where the change fell."""
    app = make_demo_app(mic_from=DEMO_RECORDING, mic_speed=4.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        mic = app.mic_pane
        await pilot.press("r")
        await wait_for(pilot, lambda: len(mic.live.final_tokens) >= 40, 60)
        left = app.query_one("#left-context", Slider)
        for _ in range(4):
            left.action_increase()
        app.query_one("#depth", Slider).value = 3
        await wait_for(pilot, lambda: mic.state == "idle", 60)
        assert left.value > 64
        assert (mic.bridge.context[0], mic.bridge.depth) == (left.value, 3)  # reached it
        final = "".join(t.text for t in mic.live.final_tokens)
    assert word_error_rate(demo_text(), final) <= MAX_WER, final
    alignment = word_alignment(demo_text(), final)
    assert alignment.insertions + alignment.deletions <= 2, final
