"""Greedy decoding with NeMo's rules for TDT, RNNT and CTC.

Each returns a `Hypothesis`: token ids with the encoder frame each was emitted at, its
duration in frames, a confidence, and the hypothesis' model score (log-probability).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .stepper import DecoderState, TransducerStepper, entropy_confidence, log_softmax

MAX_LOOKAHEAD = 16


@dataclass
class Hypothesis:
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    score: float = 0.0
    steps: int = 0  # joint evaluations made
    # where a transducer stopped: its state and last token, to continue a stream
    state: DecoderState | None = None
    last_token: int | None = None
    next_frame: int = 0


def greedy_transducer(
    stepper: TransducerStepper,
    enc: np.ndarray,
    *,
    durations: list[int] | None,
    max_symbols: int | None,
    state: DecoderState | None = None,
    last_token: int | None = None,
    start_frame: int = 0,
    stop_frame: int | None = None,
    label_looping: bool = False,
) -> Hypothesis:
    """TDT when `durations` is given, RNNT otherwise. enc: (T, joint_hidden) projected frames.

    RNNT: at each frame emit tokens until blank (at most max_symbols), then next frame.
    TDT: each step also predicts how many frames to advance; a token with duration 0 stays
    on the frame. After max_symbols steps on one frame, NeMo's plain greedy decoder moves one
    frame further even when the last step advanced on its own; its label-looping decoder
    (`label_looping`, the 'greedy_batch' strategy) only when the last step stayed. A blank of
    duration 0 would make NeMo repeat that same step until max_symbols and then move one
    frame: done at once here.
    """
    blank = stepper.blank
    n_tok = stepper.num_tokens
    state = state or stepper.initial_state()
    pred_out, next_state = stepper.predict(last_token, state)
    hyp = Hypothesis(state=state, last_token=last_token)
    limit = max_symbols if max_symbols is not None else 1 << 30
    t = start_frame
    length = len(enc) if stop_frame is None else min(stop_frame, len(enc))
    # Joint outputs of the frames ahead, computed at once for the current prediction: one
    # pass over the joint's weights serves several blank steps (the loop is bound by memory
    # traffic, not arithmetic), and is dropped when a token changes the prediction. The
    # look-ahead doubles while blanks run on and falls back to one frame after a token.
    ahead_from, ahead = 0, np.empty((0, 0), np.float32)
    lookahead = 1
    while t < length:
        symbols = 0
        while True:
            if not ahead_from <= t < ahead_from + len(ahead):
                if len(ahead):
                    lookahead = min(2 * lookahead, MAX_LOOKAHEAD)
                ahead_from, ahead = t, stepper.logits(enc[t : t + lookahead], pred_out)
            logits = ahead[t - ahead_from]
            logp = log_softmax(logits[:n_tok])
            k = int(np.argmax(logp))
            symbols += 1
            hyp.steps += 1
            if durations is not None:
                dur_logp = log_softmax(logits[n_tok:])
                d = int(np.argmax(dur_logp))
                skip = durations[d]
                hyp.score += float(logp[k] + dur_logp[d])
            else:
                skip = 1 if k == blank else 0
                hyp.score += float(logp[k])
            if k == blank and skip == 0:
                t += 1
                break
            if k != blank:
                hyp.tokens.append(k)
                hyp.frames.append(t)
                hyp.durations.append(skip if durations is not None else 1)
                hyp.confidences.append(entropy_confidence(logp))
                hyp.state, hyp.last_token = next_state, k
                pred_out, next_state = stepper.predict(k, next_state)
                ahead, lookahead = ahead[:0], 1
            t += skip
            if symbols >= limit:
                stayed = skip == 0
                if stayed or (durations is not None and not label_looping):
                    t += 1
                break
            if skip > 0:
                break
    hyp.next_frame = t
    return hyp


def greedy_ctc(
    log_probs: np.ndarray, blank: int, start_frame: int = 0, stop_frame: int | None = None
) -> Hypothesis:
    """log_probs: (T, classes). NeMo's rule: a label is emitted where it differs from the
    previous frame's label and is not blank, so 'a _ a' gives two tokens. The duration is
    how many consecutive frames the label holds. Decodes frames [start_frame, stop_frame),
    with the label of the frame before start_frame as the previous one."""
    best = log_probs.argmax(axis=1)
    stop = len(best) if stop_frame is None else min(stop_frame, len(best))
    span = np.arange(start_frame, stop)
    hyp = Hypothesis(score=float(log_probs[span, best[span]].sum()))
    previous = int(best[start_frame - 1]) if start_frame > 0 else blank
    for t in span.tolist():
        label = int(best[t])
        if label != blank and label != previous:
            hyp.tokens.append(label)
            hyp.frames.append(t)
            hyp.durations.append(1)
            hyp.confidences.append(entropy_confidence(log_probs[t]))
        elif label != blank and label == previous and hyp.durations:
            hyp.durations[-1] += 1
        previous = label
    hyp.next_frame = stop
    return hyp
