"""Beam search: the Beam setting, beam of one = greedy, never a worse model score than
greedy (fixtures, long inputs, every ranking setting), CTC's sequence probability, batches."""

from __future__ import annotations

import itertools
import math

import mlx.core as mx
import numpy as np
import pytest
from conftest import CLIPS, NEMO, NEMO_MODELS

import asr
from asr.decoding.beam import _path_hypothesis, _TransducerSearch, beam_ctc, ctc_sequence_log_prob
from asr.decoding.greedy import greedy_transducer

GREEDY = asr.DecodingConfig()
UNSEEN = NEMO.parent / "nemo_unseen"
UNSEEN_MODELS = ("tdt-128", "rnnt-local-asym", "ctc-allfeat")  # all NeMo's greedy_batch
UNSEEN_CLIPS = ("harbor", "budget", "museum", "library_44k_stereo")


def beam_config(**kwargs) -> asr.DecodingConfig:
    return asr.DecodingConfig(decoding=asr.Beam(**kwargs))


def encoder_output(family: str, clip: str) -> mx.array:
    return mx.array(np.load(NEMO / family / "reference" / f"{clip}.enc.npy"))[None]


def long_encoder_output(family: str, repeats: int) -> mx.array:
    """The three clips' encoder outputs end to end, `repeats` times (52 frames = 4 s each)."""
    clips = [np.load(NEMO / family / "reference" / f"{c}.enc.npy") for c in CLIPS]
    return mx.array(np.concatenate(clips * repeats))[None]


@pytest.fixture(scope="module")
def unseen_models():
    return {name: asr.from_pretrained(str(UNSEEN / name / "mlx")) for name in UNSEEN_MODELS}


def unseen_encoder_output(name: str, clip: str) -> mx.array:
    with np.load(UNSEEN / name / "reference" / f"{clip}.npz") as data:
        return mx.array(data["enc"])[None]


def ctc_log_probs(model, features: mx.array) -> np.ndarray:
    return np.array(model.decoder(features.astype(mx.float32)))[0]


def comparable_scores(model, features, beam_hyp, greedy_hyp) -> tuple[float, float]:
    """Transducers: the path log-probabilities both report. CTC: sequence log-probabilities
    (greedy's path is the best single alignment; beam maximizes the sequence's)."""
    if isinstance(model, asr.ParakeetCTC):
        log_probs = ctc_log_probs(model, features)
        return beam_hyp.score, ctc_sequence_log_prob(log_probs, greedy_hyp.tokens, model.blank)
    return beam_hyp.score, greedy_hyp.score


# -- the setting ---------------------------------------------------------------------------


def test_beam_defaults_are_parakeet_mlx_ones():
    parakeet_mlx = pytest.importorskip("parakeet_mlx")
    theirs, ours = parakeet_mlx.Beam(), asr.Beam()
    for name in ("beam_size", "length_penalty", "patience", "duration_reward"):
        assert getattr(ours, name) == getattr(theirs, name)
    assert asr.DecodingConfig(decoding=ours).decoding is ours


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beam_size": 0}, "beam_size must be at least 1"),
        ({"beam_size": 2.5}, "beam_size must be a whole number"),
        ({"beam_size": True}, "beam_size must be a whole number"),
        ({"patience": 0.5}, "patience must be at least 1"),
        ({"length_penalty": -0.1}, "length_penalty must be at least 0"),
        ({"length_penalty": math.nan}, "length_penalty must be a number"),
        ({"duration_reward": 1.5}, "duration_reward must be between 0 and 1"),
        ({"duration_reward": "0.5"}, "duration_reward must be a number"),
        ({"expansion_gamma": -1.0}, "expansion_gamma must be at least 0"),
        ({"patience": math.inf}, "patience must be finite"),
    ],
)
def test_beam_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        asr.Beam(**kwargs)


def test_beam_accepts_limits():
    asr.Beam(beam_size=1, length_penalty=0.0, patience=1.0, duration_reward=0.0)
    asr.Beam(duration_reward=1.0, expansion_gamma=math.inf)


# -- beam of one is greedy -------------------------------------------------------------------


@pytest.mark.parametrize("family", NEMO_MODELS)
@pytest.mark.parametrize("clip", CLIPS)
def test_beam_of_one_gives_greedy_tokens(nemo_models, family, clip):
    model = nemo_models[family]
    features = encoder_output(family, clip)
    greedy = model.decode(features, None, GREEDY)[0]
    beam = model.decode(features, None, beam_config(beam_size=1))[0]
    assert beam.tokens == greedy.tokens
    assert beam.frames == greedy.frames
    assert beam.durations == greedy.durations


@pytest.mark.parametrize("name", UNSEEN_MODELS)
@pytest.mark.parametrize("clip", UNSEEN_CLIPS)
def test_beam_of_one_gives_greedy_tokens_on_unseen_models(unseen_models, name, clip):
    model = unseen_models[name]
    features = unseen_encoder_output(name, clip)
    greedy = model.decode(features, None, GREEDY)[0]
    beam = model.decode(features, None, beam_config(beam_size=1))[0]
    assert (beam.tokens, beam.frames) == (greedy.tokens, greedy.frames)


def _search_of_one_follows_greedy_path(model, features):
    stepper = model.stepper
    enc = stepper.project_encoder(features[0])
    rules = {"max_symbols": model.max_symbols, "label_looping": model.label_looping}
    greedy = greedy_transducer(stepper, enc, durations=model.durations, **rules)
    search = _TransducerSearch(
        stepper,
        enc,
        model.durations,
        model.max_symbols,
        asr.Beam(beam_size=1),
        [],
        None,
        model.label_looping,
    )
    (path,) = search.run(stepper.initial_state(), None, 0)
    found = _path_hypothesis(path, 0)
    assert (found.tokens, found.frames, found.durations) == (
        greedy.tokens,
        greedy.frames,
        greedy.durations,
    )
    assert found.score == pytest.approx(greedy.score, rel=1e-6)


@pytest.mark.parametrize("family", ["tdt", "tdt-local", "rnnt"])
@pytest.mark.parametrize("clip", CLIPS)
def test_search_of_one_follows_greedy_path(nemo_models, family, clip):
    """The search itself, without greedy's result to fall back on, finds greedy's path."""
    _search_of_one_follows_greedy_path(nemo_models[family], encoder_output(family, clip))


@pytest.mark.parametrize("name", ["tdt-128", "rnnt-local-asym"])
@pytest.mark.parametrize("clip", UNSEEN_CLIPS)
def test_search_of_one_follows_greedy_path_with_label_looping(unseen_models, name, clip):
    model = unseen_models[name]
    assert model.label_looping
    _search_of_one_follows_greedy_path(model, unseen_encoder_output(name, clip))


# -- never below greedy ------------------------------------------------------------------------


@pytest.mark.parametrize("family", NEMO_MODELS)
@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("beam_size", [2, 4, 8])
def test_beam_score_is_never_below_greedy(nemo_models, family, clip, beam_size):
    model = nemo_models[family]
    features = encoder_output(family, clip)
    greedy = model.decode(features, None, GREEDY)[0]
    beam = model.decode(features, None, beam_config(beam_size=beam_size))[0]
    ours, theirs = comparable_scores(model, features, beam, greedy)
    assert ours >= theirs


@pytest.mark.parametrize("name", UNSEEN_MODELS)
@pytest.mark.parametrize("clip", UNSEEN_CLIPS)
@pytest.mark.parametrize("beam_size", [2, 5])
def test_beam_score_is_never_below_greedy_on_unseen_models(unseen_models, name, clip, beam_size):
    model = unseen_models[name]
    features = unseen_encoder_output(name, clip)
    greedy = model.decode(features, None, GREEDY)[0]
    beam = model.decode(features, None, beam_config(beam_size=beam_size))[0]
    ours, theirs = comparable_scores(model, features, beam, greedy)
    assert ours >= theirs


@pytest.mark.parametrize("family", NEMO_MODELS)
def test_beam_finds_better_scores_than_greedy(nemo_models, family):
    """Not a requirement on every clip, but a search that never beats greedy is broken."""
    model = nemo_models[family]
    gains = []
    for clip in CLIPS:
        features = encoder_output(family, clip)
        greedy = model.decode(features, None, GREEDY)[0]
        beam = model.decode(features, None, beam_config(beam_size=4))[0]
        ours, theirs = comparable_scores(model, features, beam, greedy)
        gains.append(ours - theirs)
    assert max(gains) > 0


@pytest.mark.parametrize("family", NEMO_MODELS)
def test_beam_score_is_never_below_greedy_on_long_input(nemo_models, family):
    model = nemo_models[family]
    features = long_encoder_output(family, repeats=10)  # 1520 frames: two minutes
    greedy = model.decode(features, None, GREEDY)[0]
    beam = model.decode(features, None, beam_config(beam_size=4))[0]
    ours, theirs = comparable_scores(model, features, beam, greedy)
    assert ours >= theirs
    assert beam.frames == sorted(beam.frames)


@pytest.mark.parametrize("family", ["tdt", "rnnt", "ctc"])
@pytest.mark.parametrize(
    "setting",
    [
        {"duration_reward": 0.0},
        {"duration_reward": 1.0},
        {"length_penalty": 0.0},
        {"length_penalty": 3.0, "patience": 3.5},
        {"expansion_gamma": math.inf},
        {"expansion_gamma": 0.0},
    ],
)
def test_no_ranking_setting_returns_a_worse_score(nemo_models, family, setting):
    """Rankings that are not the model score (duration reward, length penalty) still never
    return less than greedy's score."""
    model = nemo_models[family]
    for clip in CLIPS:
        features = encoder_output(family, clip)
        greedy = model.decode(features, None, GREEDY)[0]
        beam = model.decode(features, None, beam_config(beam_size=3, **setting))[0]
        ours, theirs = comparable_scores(model, features, beam, greedy)
        assert ours >= theirs


# -- what a hypothesis holds ---------------------------------------------------------------------


@pytest.mark.parametrize("family", NEMO_MODELS)
def test_beam_timestamps_and_confidences(nemo_models, family):
    model = nemo_models[family]
    features = encoder_output(family, "speech0")
    frames = features.shape[1]
    hyp = model.decode(features, None, beam_config(beam_size=4))[0]
    assert len(hyp.tokens) == len(hyp.frames) == len(hyp.durations) == len(hyp.confidences)
    assert hyp.frames == sorted(hyp.frames)
    assert all(0 <= f < frames for f in hyp.frames)
    assert all(d >= 0 for d in hyp.durations)
    assert all(0.0 <= c <= 1.0 for c in hyp.confidences)
    assert all(0 <= t < model.blank for t in hyp.tokens)
    if hyp.tokens and not isinstance(model, asr.ParakeetCTC):
        assert hyp.last_token == hyp.tokens[-1]
        assert hyp.next_frame >= frames


@pytest.mark.parametrize("family", NEMO_MODELS)
def test_beam_decodes_batches_item_by_item(nemo_models, family):
    model = nemo_models[family]
    a = np.load(NEMO / family / "reference" / "speech0.enc.npy")
    b = np.load(NEMO / family / "reference" / "speech1.enc.npy")
    batch = np.zeros((2, max(len(a), len(b)), a.shape[1]), np.float32)
    batch[0, : len(a)], batch[1, : len(b)] = a, b
    config = beam_config(beam_size=3)
    together = model.decode(mx.array(batch), mx.array([len(a), len(b)]), config)
    for hyp, single in zip(together, (a, b), strict=True):
        alone = model.decode(mx.array(single)[None], None, config)[0]
        assert hyp.tokens == alone.tokens
        assert hyp.frames == alone.frames


def test_transcribe_with_beam(nemo_models):
    result = nemo_models["tdt"].transcribe(
        NEMO / "audio" / "speech0.wav", decoding_config=beam_config(beam_size=4)
    )
    assert result.tokens
    assert all(t.start >= 0 for t in result.tokens)


# -- CTC ------------------------------------------------------------------------------------------


def _collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    out, previous = [], blank
    for label in path:
        if label != blank and label != previous:
            out.append(label)
        previous = label
    return tuple(out)


def test_ctc_sequence_log_prob_sums_every_alignment():
    rng = np.random.default_rng(0)
    for _ in range(20):
        frames, classes = int(rng.integers(1, 6)), int(rng.integers(2, 4))
        x = rng.normal(size=(frames, classes)) * 2
        log_probs = (x - np.log(np.exp(x).sum(1, keepdims=True))).astype(np.float32)
        blank = classes - 1
        totals: dict[tuple[int, ...], float] = {}
        for path in itertools.product(range(classes), repeat=frames):
            tokens = _collapse(path, blank)
            value = float(sum(log_probs[t, c] for t, c in enumerate(path)))
            totals[tokens] = np.logaddexp(totals.get(tokens, -np.inf), value)
        for tokens, total in totals.items():
            assert ctc_sequence_log_prob(log_probs, list(tokens), blank) == pytest.approx(
                total, abs=1e-5
            )
        assert ctc_sequence_log_prob(log_probs, [0] * (frames + 1), blank) == -math.inf


def _log_probs(rows: list[list[float]]) -> np.ndarray:
    p = np.array(rows, dtype=np.float64)
    return np.log(p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def test_ctc_beam_finds_the_more_probable_sequence():
    # each frame: 'a' 0.4, blank 0.6. Greedy reads "" (0.36); "a" has 0.64 over alignments.
    log_probs = _log_probs([[0.4, 0.6], [0.4, 0.6]])
    hyp = beam_ctc(log_probs, 1, asr.Beam(beam_size=2))
    assert hyp.tokens == [0]
    assert hyp.score == pytest.approx(math.log(0.64), abs=1e-6)
    assert hyp.frames == [0] and hyp.durations == [1]
    assert beam_ctc(log_probs, 1, asr.Beam(beam_size=1)).tokens == []


def test_ctc_beam_keeps_nemo_repeat_rule():
    peaked = {"a": [0.98, 0.01, 0.01], "b": [0.01, 0.98, 0.01], "_": [0.01, 0.01, 0.98]}
    across_blank = _log_probs([peaked[c] for c in "a_a"])
    assert beam_ctc(across_blank, 2, asr.Beam(beam_size=4)).tokens == [0, 0]
    repeated = _log_probs([peaked[c] for c in "aab"])
    hyp = beam_ctc(repeated, 2, asr.Beam(beam_size=4))
    assert hyp.tokens == [0, 1]
    assert hyp.frames == [0, 2] and hyp.durations == [2, 1]
