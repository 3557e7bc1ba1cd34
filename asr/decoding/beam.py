"""Beam search for TDT, RNNT and CTC.

Transducers (TDT, RNNT): a position-synchronous search. Hypotheses are grouped by the
encoder frame they have reached and compared only with others at the same frame: at frame t
the best `beam_size` are expanded with the top tokens (blank included) and, for TDT, the top
durations; an expansion that moves on lands in the group of its new frame, one that stays
(a token of duration 0; any RNNT token) is expanded again on t, as greedy does, up to
max_symbols. Hypotheses that reach the same frame with the same tokens are merged (their
ranking scores added in probability, NeMo's and parakeet-mlx's rule), and hypotheses that
share a token prefix share one prediction-network evaluation.

Scores. Each hypothesis carries two:
- `score`, its model log-probability as greedy defines it: the sum along its path of
  log p(token) (+ log p(duration) for TDT), so beam and greedy results compare directly;
- a ranking score that the search sorts on: for TDT parakeet-mlx's
  (1 - r) * log p(token) + r * log p(duration) per step with r = duration_reward
  (NeMo's token + duration is r = 0.5 up to a factor of two); for RNNT log p(token).
The final choice maximizes rank / max(1, tokens)**length_penalty among the finished
hypotheses whose `score` is at least greedy's. Greedy's own path is followed alongside the
search (sharing its evaluations) and is always a candidate, so the result's score is never
below greedy's, and a beam of one, which only expands the arg-max, is greedy.

CTC: prefix beam search over total (all-alignment) probabilities with NeMo's collapsing
rule ("a _ a" is two tokens). Greedy's path is the exact best single alignment, so no beam
can beat it on greedy's path score; CTC's `score` is therefore the sequence log-probability
log P(tokens) summed over alignments (`ctc_sequence_log_prob`), computed exactly for each
candidate and for greedy's tokens, and the result is never below greedy's on it.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from .config import Beam
from .greedy import Hypothesis, greedy_ctc
from .stepper import DecoderState, TransducerStepper, entropy_confidence, log_softmax

_NO_LIMIT = 1 << 30
_Trail = tuple  # (token, frame, duration, confidence, previous trail) or None


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


def _normalized(rank: float, length: int, penalty: float) -> float:
    return rank / max(1, length) ** penalty


def _unroll(trail: _Trail | None) -> list[tuple[int, int, int, float]]:
    steps = []
    while trail is not None:
        steps.append(trail[:4])
        trail = trail[4]
    return steps[::-1]


# -- transducers -------------------------------------------------------------------------


class _Prefix:
    """A node of the token-prefix trie: the prediction network's output after the prefix,
    computed once for all hypotheses that share it, and the joint's output at the last frame
    it was asked for. Nodes keep no parent, so finished branches are freed."""

    __slots__ = ("token", "in_state", "pred", "state", "children", "frame", "step")

    def __init__(self, token: int | None, in_state: DecoderState):
        self.token = token
        self.in_state = in_state  # the state before `token` was fed
        self.pred: np.ndarray | None = None
        self.state: DecoderState | None = None
        self.children: dict[int, _Prefix] = {}
        self.frame = -1
        self.step: _Step | None = None

    def child(self, token: int) -> _Prefix:
        node = self.children.get(token)
        if node is None:
            node = self.children[token] = _Prefix(token, self.state)
        return node


class _Step:
    """The joint's output for one (prefix, frame), and the expansions worth trying."""

    __slots__ = ("logp", "dur_logp", "tokens", "token_rank", "durs", "dur_rank", "pair", "_conf")

    def __init__(self, logp: np.ndarray, dur_logp: np.ndarray | None, beam_size: int, w: float):
        self.logp = logp
        self.dur_logp = dur_logp
        blank = len(logp) - 1
        if beam_size == 1:
            tokens = np.array([np.argmax(logp)])
        else:
            k = min(beam_size, len(logp))
            tokens = np.argpartition(logp, -k)[-k:]
            if blank not in tokens:
                tokens = np.append(tokens, blank)
            tokens = tokens[np.argsort(-logp[tokens], kind="stable")]
        token_lp = logp[tokens]
        if dur_logp is None:  # RNNT: one implicit "duration" with log-prob 0
            durs = np.zeros(1, dtype=np.intp)
            pair = token_lp[:, None]
            self.dur_rank = [0.0]
        else:
            if beam_size == 1:
                durs = np.array([np.argmax(dur_logp)])
            else:
                durs = np.argsort(-dur_logp, kind="stable")[: min(beam_size, len(dur_logp))]
            # float32 sums, as greedy adds them, so equal paths get bit-equal scores
            pair = token_lp[:, None] + dur_logp[durs][None, :]
            self.dur_rank = (w * dur_logp[durs].astype(np.float64)).tolist()
        self.tokens = tokens.tolist()
        self.token_rank = ((1.0 - w) * token_lp.astype(np.float64)).tolist()
        self.durs = durs.tolist()
        self.pair = pair.tolist()
        self._conf: float | None = None

    @property
    def confidence(self) -> float:
        if self._conf is None:
            self._conf = entropy_confidence(self.logp)
        return self._conf


class _Path:
    __slots__ = ("node", "frame", "symbols", "rank", "score", "trail", "length")

    def __init__(self, node, frame, symbols, rank, score, trail, length):
        self.node: _Prefix = node
        self.frame: int = frame
        self.symbols: int = symbols  # steps taken on this frame so far
        self.rank: float = rank
        self.score: float = score
        self.trail: _Trail | None = trail
        self.length: int = length


def _merge(group: dict[_Prefix, _Path], path: _Path) -> None:
    other = group.get(path.node)
    if other is None:
        group[path.node] = path
        return
    rank = _logaddexp(other.rank, path.rank)
    if path.rank > other.rank:
        group[path.node] = other = path
    other.rank = rank


def _best(paths, n: int) -> list[_Path]:
    return heapq.nlargest(n, paths, key=lambda p: p.rank)


class _TransducerSearch:
    def __init__(
        self,
        stepper: TransducerStepper,
        enc: np.ndarray,
        durations: list[int] | None,
        max_symbols: int | None,
        beam: Beam,
    ):
        self.stepper = stepper
        self.enc = enc
        self.durations = durations
        self.tdt = durations is not None
        self.limit = max_symbols if max_symbols is not None else _NO_LIMIT
        self.beam = beam
        self.w = beam.duration_reward if self.tdt else 0.0
        self.blank = stepper.blank
        self.evaluations = 0

    def evaluate(self, node: _Prefix, frame: int) -> _Step:
        if node.frame == frame:
            return node.step
        if node.pred is None:
            node.pred, node.state = self.stepper.predict(node.token, node.in_state)
        logits = self.stepper.logits(self.enc[frame], node.pred)
        n_tok = self.stepper.num_tokens
        logp = log_softmax(logits[:n_tok])
        dur_logp = log_softmax(logits[n_tok:]) if self.tdt else None
        self.evaluations += 1
        node.frame, node.step = frame, _Step(logp, dur_logp, self.beam.beam_size, self.w)
        return node.step

    def advance(self, frame: int, symbols: int, blank: bool, skip: int) -> tuple[int, int]:
        """Greedy's rules: where a step lands and how many steps it has made on that frame."""
        if blank and skip == 0:  # TDT blank of duration 0: greedy moves one frame
            return frame + 1, 0
        symbols += 1
        if symbols >= self.limit:
            return frame + skip + (1 if self.tdt or not blank else 0), 0
        if skip > 0:
            return frame + skip, 0
        return frame, symbols

    def extend(self, path: _Path, k: int, skip: int, rank: float, score: float, conf) -> _Path:
        frame, symbols = self.advance(path.frame, path.symbols, k == self.blank, skip)
        if k == self.blank:
            return _Path(path.node, frame, symbols, rank, score, path.trail, path.length)
        trail = (k, path.frame, skip if self.tdt else 1, conf(), path.trail)
        node = path.node.child(k)
        return _Path(node, frame, symbols, rank, score, trail, path.length + 1)

    def expand(self, path: _Path, same: dict, pending: dict, finished: dict, left: list) -> None:
        step = self.evaluate(path.node, path.frame)
        cut = step.pair[0][0] - self.beam.expansion_gamma
        conf = lambda: step.confidence  # noqa: E731
        for i, k in enumerate(step.tokens):
            row = step.pair[i]
            if row[0] < cut:
                break
            for j, lp in enumerate(row):
                if lp < cut:
                    break
                skip = self.durations[step.durs[j]] if self.tdt else int(k == self.blank)
                rank = path.rank + step.token_rank[i] + step.dur_rank[j]
                new = self.extend(path, k, skip, rank, path.score + lp, conf)
                if new.frame == path.frame:
                    _merge(same, new)
                    continue
                left.append(rank)
                if new.frame >= len(self.enc):
                    _merge(finished, new)
                else:
                    _merge(pending.setdefault(new.frame, {}), new)

    def greedy_step(self, path: _Path) -> _Path:
        """One step of greedy's path, exactly as greedy_transducer takes it."""
        step = self.evaluate(path.node, path.frame)
        k = int(np.argmax(step.logp))
        if self.tdt:
            d = int(np.argmax(step.dur_logp))
            skip = self.durations[d]
            lp = float(step.logp[k] + step.dur_logp[d])
            rank = (1.0 - self.w) * float(step.logp[k]) + self.w * float(step.dur_logp[d])
        else:
            skip = 1 if k == self.blank else 0
            lp = rank = float(step.logp[k])
        return self.extend(
            path, k, skip, path.rank + rank, path.score + lp, lambda: step.confidence
        )

    def run(self, state: DecoderState, last_token: int | None, start_frame: int) -> Hypothesis:
        beam_size = self.beam.beam_size
        length = len(self.enc)
        root = _Prefix(last_token, state)
        start = _Path(root, start_frame, 0, 0.0, 0.0, None, 0)
        pending: dict[int, dict[_Prefix, _Path]] = {start_frame: {root: start}}
        greedy = _Path(root, start_frame, 0, 0.0, 0.0, None, 0)
        finished: dict[_Prefix, _Path] = {}
        for t in range(start_frame, length):
            group = pending.pop(t, None)
            if group is None and greedy.frame != t:
                continue
            paths = _best((group or {}).values(), beam_size)
            left: list[float] = []  # ranks of the expansions that left frame t
            symbols = 0
            while paths or greedy.frame == t:
                same: dict[_Prefix, _Path] = {}
                for path in paths:
                    self.expand(path, same, pending, finished, left)
                if greedy.frame == t and greedy.symbols == symbols:
                    greedy = self.greedy_step(greedy)
                # NeMo's rule: stop extending on this frame once beam_size hypotheses that
                # moved on rank above everything still here (scores only fall).
                floor = heapq.nlargest(beam_size, left)[-1] if len(left) >= beam_size else None
                paths = _best(
                    (p for p in same.values() if floor is None or p.rank > floor), beam_size
                )
                symbols += 1
        pool = _best(finished.values(), max(1, round(beam_size * self.beam.patience)))
        eligible = [p for p in pool if p.score >= greedy.score] + [greedy]
        penalty = self.beam.length_penalty
        best = max(eligible, key=lambda p: _normalized(p.rank, p.length, penalty))
        return self.hypothesis(best)

    def hypothesis(self, path: _Path) -> Hypothesis:
        steps = _unroll(path.trail)
        return Hypothesis(
            tokens=[s[0] for s in steps],
            frames=[s[1] for s in steps],
            durations=[s[2] for s in steps],
            confidences=[s[3] for s in steps],
            score=path.score,
            steps=self.evaluations,
            state=path.node.in_state,
            last_token=path.node.token,
            next_frame=path.frame,
        )


def beam_transducer(
    stepper: TransducerStepper,
    enc: np.ndarray,
    *,
    durations: list[int] | None,
    max_symbols: int | None,
    beam: Beam,
    state: DecoderState | None = None,
    last_token: int | None = None,
    start_frame: int = 0,
) -> Hypothesis:
    """TDT when `durations` is given, RNNT otherwise; enc: (T, joint_hidden) projected
    frames. Arguments as greedy_transducer's; `steps` counts the joint evaluations made."""
    search = _TransducerSearch(stepper, enc, durations, max_symbols, beam)
    return search.run(state or stepper.initial_state(), last_token, start_frame)


# -- CTC -----------------------------------------------------------------------------------


class _CtcPrefix:
    __slots__ = ("token", "parent")

    def __init__(self, token: int | None, parent: _CtcPrefix | None):
        self.token = token
        self.parent = parent

    def tokens(self) -> list[int]:
        out, node = [], self
        while node.token is not None:
            out.append(node.token)
            node = node.parent
        return out[::-1]


def _add(group: dict[_CtcPrefix, list[float]], node: _CtcPrefix, slot: int, value: float):
    entry = group.get(node)
    if entry is None:
        entry = group[node] = [-math.inf, -math.inf]
    entry[slot] = _logaddexp(entry[slot], value)


def _ctc_prefix_search(log_probs: np.ndarray, blank: int, beam: Beam) -> list[list[int]]:
    """Token sequences of the final beam, best first. Each prefix keeps the log-probability
    of its alignments ending in blank and ending in its last token."""
    n = beam.beam_size
    k = min(n, log_probs.shape[1] - 1)
    nonblank = np.delete(np.arange(log_probs.shape[1]), blank)
    beams: dict[_CtcPrefix, list[float]] = {_CtcPrefix(None, None): [0.0, -math.inf]}
    for t in range(len(log_probs)):
        row = log_probs[t]
        lp_blank = float(row[blank])
        scores = row[nonblank]
        top = nonblank[np.argpartition(scores, -k)[-k:]]
        cut = float(row.max()) - beam.expansion_gamma
        extensions = [
            (c, lp) for c, lp in zip(top.tolist(), row[top].tolist(), strict=True) if lp >= cut
        ]
        nxt: dict[_CtcPrefix, list[float]] = {}
        # an extension p + c may be a prefix already in the beam: find it by (p, c)
        known = {(node.parent, node.token): node for node in beams}
        for node, (pb, pnb) in beams.items():
            total = _logaddexp(pb, pnb)
            _add(nxt, node, 0, total + lp_blank)
            if node.token is not None:
                _add(nxt, node, 1, pnb + float(row[node.token]))
            for c, lp in extensions:
                child = known.get((node, c)) or _CtcPrefix(c, node)
                _add(nxt, child, 1, (pb if c == node.token else total) + lp)
        keep = n if t < len(log_probs) - 1 else max(1, round(n * beam.patience))
        ranked = heapq.nlargest(keep, nxt.items(), key=lambda e: _logaddexp(*e[1]))
        beams = dict(ranked)
    return [node.tokens() for node in beams]


def _ctc_lattice(log_probs: np.ndarray, tokens: list[int], blank: int):
    """Per-frame log-probs of the states blank, y1, blank, y2, ..., blank, and which states
    may be entered from two back (a token that differs from the token before it)."""
    states = np.full(2 * len(tokens) + 1, blank, dtype=np.intp)
    states[1::2] = tokens
    emit = log_probs[:, states].astype(np.float64)
    skip = np.zeros(len(states), dtype=bool)
    skip[3::2] = states[3::2] != states[1:-2:2]
    return emit, skip


def _shifted(alpha: np.ndarray, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    one = np.concatenate(([-np.inf], alpha[:-1]))
    two = np.where(skip, np.concatenate(([-np.inf, -np.inf], alpha[:-2])), -np.inf)
    return one, two


def ctc_sequence_log_prob(log_probs: np.ndarray, tokens: list[int], blank: int) -> float:
    """log P(tokens) under CTC: the log-sum over every alignment that collapses to them."""
    if len(log_probs) == 0:
        return 0.0 if not tokens else -math.inf
    emit, skip = _ctc_lattice(log_probs, tokens, blank)
    alpha = np.full(emit.shape[1], -np.inf)
    alpha[:2] = emit[0, :2]
    for t in range(1, len(emit)):
        one, two = _shifted(alpha, skip)
        alpha = np.logaddexp(np.logaddexp(alpha, one), two) + emit[t]
    return float(np.logaddexp.reduce(alpha[-2:]))


def _ctc_best_alignment(log_probs: np.ndarray, tokens: list[int], blank: int) -> list[int]:
    """Per-frame labels of the most probable alignment of `tokens` (Viterbi)."""
    emit, skip = _ctc_lattice(log_probs, tokens, blank)
    n = emit.shape[1]
    alpha = np.full(n, -np.inf)
    alpha[:2] = emit[0, :2]
    back = np.zeros((len(emit), n), dtype=np.int8)
    for t in range(1, len(emit)):
        one, two = _shifted(alpha, skip)
        choices = np.stack([alpha, one, two])
        back[t] = choices.argmax(axis=0)
        alpha = choices.max(axis=0) + emit[t]
    state = n - 1 if n == 1 or alpha[-1] >= alpha[-2] else n - 2
    labels = []
    for t in range(len(emit) - 1, -1, -1):
        labels.append(blank if state % 2 == 0 else tokens[state // 2])
        state -= int(back[t, state])
    return labels[::-1]


def _ctc_hypothesis(log_probs: np.ndarray, tokens: list[int], blank: int) -> Hypothesis:
    """Timestamps and confidences as greedy_ctc gives them, along the best alignment."""
    hyp = Hypothesis(next_frame=len(log_probs))
    if not tokens:
        return hyp
    labels = _ctc_best_alignment(log_probs, tokens, blank)
    previous = blank
    for t, label in enumerate(labels):
        if label != blank and label != previous:
            hyp.tokens.append(label)
            hyp.frames.append(t)
            hyp.durations.append(1)
            hyp.confidences.append(entropy_confidence(log_probs[t]))
        elif label != blank:
            hyp.durations[-1] += 1
        previous = label
    return hyp


def beam_ctc(log_probs: np.ndarray, blank: int, beam: Beam) -> Hypothesis:
    """log_probs: (T, classes). `score` is the sequence log-probability (see the module's
    docstring); a beam of one is greedy's per-frame arg-max."""
    greedy = greedy_ctc(log_probs, blank)
    greedy.score = ctc_sequence_log_prob(log_probs, greedy.tokens, blank)
    if beam.beam_size == 1 or len(log_probs) == 0:
        return greedy
    penalty = beam.length_penalty
    best, best_score = greedy.tokens, greedy.score
    for tokens in _ctc_prefix_search(log_probs, blank, beam):
        score = ctc_sequence_log_prob(log_probs, tokens, blank)
        if score >= greedy.score and _normalized(score, len(tokens), penalty) > _normalized(
            best_score, len(best), penalty
        ):
            best, best_score = tokens, score
    if best == greedy.tokens:
        return greedy
    hyp = _ctc_hypothesis(log_probs, best, blank)
    hyp.score = best_score
    return hyp
