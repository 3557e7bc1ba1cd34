"""The engine thread: audio from another thread, commands between updates, events out."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import CLIPS, NEMO
from demo_model import (
    MAX_WER,
    demo_audio,
    demo_text,
    load_demo_model,
    normalized_words,
    word_error_rate,
)

from asr.engine import Draft, EngineError, Finalized, Progress, Stopped, TranscriptionEngine

CONTEXT = (16, 16)


def recording() -> np.ndarray:
    return np.concatenate(
        [sf.read(NEMO / "audio" / f"{clip}.wav", dtype="float32")[0] for clip in CLIPS]
    )


class Collector:
    def __init__(self):
        self.events = []
        self.stopped = threading.Event()

    def __call__(self, event):
        self.events.append(event)
        if isinstance(event, Stopped):
            self.stopped.set()

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    def final_ids(self):
        return [t.id for e in self.of(Finalized) for t in e.tokens]


def run_engine(model, audio, block=1600, **kwargs):
    events = Collector()
    engine = TranscriptionEngine(model, events, context_size=CONTEXT, **kwargs).start()
    for i in range(0, len(audio), block):
        assert engine.feed(audio[i : i + block])
    engine.stop()
    assert events.stopped.wait(30)
    return engine, events


def test_engine_gives_the_streams_final_text(nemo_models):
    model = nemo_models["tdt"]
    audio = recording()
    _, events = run_engine(model, audio)
    with model.transcribe_stream(CONTEXT) as stream:
        for i in range(0, len(audio), 1600):
            stream.add_audio(audio[i : i + 1600])
    ids = events.final_ids()
    assert len(ids) > 10
    # updates may coalesce blocks differently, so compare with some slack
    assert abs(len(ids) - len(stream.finalized_tokens)) <= 0.2 * len(ids)
    progress = events.of(Progress)
    assert progress[-1].audio_seconds == pytest.approx(len(audio) / 16000)
    assert all(p.compute_seconds > 0 for p in progress)
    assert not events.of(EngineError)
    assert model.encoder.attention_context is None  # restored after the stream


def test_a_slow_engine_coalesces_and_a_full_backlog_drops(nemo_models):
    model = nemo_models["ctc"]
    audio = recording()
    events = Collector()
    engine = TranscriptionEngine(
        model, events, context_size=CONTEXT, max_backlog_seconds=2.0
    ).start()
    blocks = [audio[i : i + 160] for i in range(0, len(audio), 160)]
    accepted = [engine.feed(block) for block in blocks]
    engine.stop()
    assert events.stopped.wait(30)
    progress = events.of(Progress)
    # far fewer updates than blocks: queued audio was taken together
    assert len(progress) < len(accepted) / 4
    dropped = progress[-1].dropped_seconds
    lost = sum(len(b) for b, ok in zip(blocks, accepted, strict=True) if not ok)
    assert lost > 0 and dropped == pytest.approx(lost / 16000)
    assert max(p.update_audio_seconds for p in progress) > 0.1


def test_commands_apply_between_updates_without_losing_final_text(nemo_models):
    model = nemo_models["tdt"]
    audio = recording()
    events = Collector()
    engine = TranscriptionEngine(model, events, context_size=CONTEXT).start()
    half = len(audio) // 2
    for i in range(0, half, 1600):
        engine.feed(audio[i : i + 1600])
    engine.finish()
    engine.set_context((8, 4), depth=2)
    engine.pause()
    assert engine.feed(audio[:1600]) is False  # paused: not taken
    engine.resume()
    for i in range(half, len(audio), 1600):
        engine.feed(audio[i : i + 1600])
    assert engine.wait_idle()
    engine.reset()
    engine.stop()
    assert events.stopped.wait(30)
    finals = [t for e in events.of(Finalized) for t in e.tokens]
    starts = [t.start for t in finals]
    assert starts == sorted(starts) and len(finals) > 5
    assert events.of(Draft)[-1].tokens == []
    assert not events.of(EngineError)


def test_errors_become_events_and_the_engine_goes_on(nemo_models, monkeypatch):
    model = nemo_models["ctc"]
    audio = recording()
    events = Collector()
    engine = TranscriptionEngine(model, events, context_size=CONTEXT).start()
    assert engine.wait_idle(120)  # ready: on a GPU it warms up with a stream of its own
    from asr import streaming

    original = streaming.StreamingParakeet.add_audio
    calls = {"n": 0}

    def flaky(self, block):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated failure\nsecond line")
        return original(self, block)

    monkeypatch.setattr(streaming.StreamingParakeet, "add_audio", flaky)
    for i in range(0, len(audio), 8000):
        engine.feed(audio[i : i + 8000])
        time.sleep(0.05)
    engine.stop()
    assert events.stopped.wait(30)
    [error] = events.of(EngineError)
    assert error.message == "transcription failed: RuntimeError: simulated failure"
    assert events.final_ids()  # it went on after the error
    with pytest.raises(ValueError, match="audio blocks"):
        engine.feed(np.zeros((2, 2, 2)))
    assert engine.feed(audio[:100]) is False  # stopped


# -- the demo model: words, not only shapes ------------------------------------------------


def test_engine_on_the_demo_recording_hears_its_words():
    """The demo recording in blocks of 0.1 to 0.5 s, fed faster than real time from this
    thread: the final text is the recording's, drafts showed on the way, times are in order
    and within the recording."""
    model = load_demo_model()
    audio = demo_audio()
    seconds = len(audio) / 16000
    events = Collector()
    engine = TranscriptionEngine(model, events).start()  # default context and depth
    assert engine.wait_idle(120)  # ready (a GPU warms up first)
    rng = np.random.default_rng(7)
    fed = 0
    while fed < len(audio):
        block = audio[fed : fed + int(rng.uniform(0.1, 0.5) * 16000)]
        assert engine.feed(block)
        fed += len(block)
        time.sleep(len(block) / 16000 / 8)  # eight times real time: updates on the way
    engine.stop()
    assert events.stopped.wait(60)
    assert not events.of(EngineError)

    finals = [t for e in events.of(Finalized) for t in e.tokens]
    text = "".join(t.text for t in finals)
    assert word_error_rate(demo_text(), text) <= MAX_WER, text

    drafts = [e.tokens for e in events.of(Draft) if e.tokens]
    assert len(drafts) >= 3  # the text showed as drafts before it was final
    assert any(len(normalized_words("".join(t.text for t in d))) >= 2 for d in drafts)
    assert events.of(Draft)[-1].tokens == []  # stop made the last draft final

    starts = [t.start for t in finals]
    assert starts == sorted(starts)
    word_starts = [t.start for t in finals if t.text.startswith(" ")]
    assert len(word_starts) >= 0.9 * len(normalized_words(demo_text()))
    assert word_starts == sorted(set(word_starts))  # rising: one word, one time
    assert all(0 <= t.start and t.end <= seconds + 1e-6 for t in finals)
    assert word_starts[-1] > seconds - 5  # the last words are near the end, not bunched early
    progress = events.of(Progress)
    assert progress[-1].audio_seconds == pytest.approx(seconds)
    assert progress[-1].dropped_seconds == 0


def test_engine_drafts_follow_the_final_text_on_the_demo_recording():
    """One update per 0.25 s block: every draft starts where the final text has got to, and
    the final text is the recording's."""
    model = load_demo_model()
    audio = demo_audio()
    events = Collector()
    engine = TranscriptionEngine(model, events).start()
    for i in range(0, len(audio), 4000):  # 0.25 s blocks, each one update
        assert engine.feed(audio[i : i + 4000])
        assert engine.wait_idle(30)
    engine.stop()
    assert events.stopped.wait(60)
    final_end = 0.0
    checked = 0
    for event in events.events:
        if isinstance(event, Finalized) and event.tokens:
            final_end = event.tokens[-1].start
        elif isinstance(event, Draft) and event.tokens:
            assert event.tokens[0].start >= final_end
            checked += 1
    assert checked > 20
    finals = [t for e in events.of(Finalized) for t in e.tokens]
    assert word_error_rate(demo_text(), "".join(t.text for t in finals)) <= MAX_WER


def test_a_small_compute_share_gathers_audio_and_commands_never_wait():
    """The engine waits for `compute / compute_share` seconds of audio (at most 2 s) before
    updating: with a tiny share, 0.1 s blocks arriving at ten times real time go in updates
    of seconds, not one per block. A command is handled at once, however little audio is
    queued."""
    model = load_demo_model()
    audio = demo_audio()
    events = Collector()
    engine = TranscriptionEngine(model, events, compute_share=1e-6).start()
    assert engine.wait_idle(120)  # ready (a GPU warms up first)
    for i in range(0, 16000 * 8, 1600):
        assert engine.feed(audio[i : i + 1600])
        time.sleep(0.01)
    assert engine.wait_idle(60)
    progress = events.of(Progress)
    assert max(p.update_audio_seconds for p in progress) >= 1.5
    assert len(progress) <= 12  # not one per block (80 blocks)

    engine.feed(audio[16000 * 8 : 16000 * 8 + 4800])  # 0.3 s, far less than it waits for
    started = time.monotonic()
    engine.finish()
    assert engine.wait_idle(60)
    assert time.monotonic() - started < 1.0
    assert events.of(Progress)[-1].audio_seconds == pytest.approx(8.3)
    finals = [t for e in events.of(Finalized) for t in e.tokens]
    assert finals[-1].end > 7.5  # finish made the last words final
    engine.stop()
    assert events.stopped.wait(30)


def test_preparing_a_model_warms_a_gpu_up_once_per_thread(nemo_models, monkeypatch):
    """On a GPU, loading a model (tui.model_loading calls prepare_streaming) also runs the
    warm-up stream that compiles the streaming kernels: a minute the first time on a new
    machine, more audio than the engine's queue holds. Once per thread: an engine's own
    thread still warms up its own (CUDA graphs are per thread). Here the GPU's need is
    pretended; the stream itself runs on the CPU."""
    from asr import warmup
    from asr.engine import prepare_streaming
    from asr.threads import release_thread_streams

    model = nemo_models["rnnt"]
    before = model.encoder.attention_context
    settings = []
    stream = model.transcribe_stream

    def counting_stream(context_size=None, depth=1, **kwargs):
        settings.append((tuple(context_size), depth))
        return stream(context_size, depth, **kwargs)

    monkeypatch.setattr(warmup, "needs_warm_up", lambda: True)
    monkeypatch.setattr(model, "transcribe_stream", counting_stream)
    prepare_streaming(model)
    prepare_streaming(model)
    assert settings == [(model.stream_context, 1)]
    assert model.encoder.attention_context == before

    def other_thread():
        try:
            prepare_streaming(model)
        finally:
            release_thread_streams()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(120)
    assert len(settings) == 2
