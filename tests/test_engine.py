"""The engine thread: audio from another thread, commands between updates, events out."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import CLIPS, NEMO

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
