"""Beam search for TDT, RNNT and CTC.

Transducers (TDT, RNNT): a position-synchronous search. Hypotheses are grouped by the
encoder frame they have reached and compared only with others at the same frame: at frame t
the best `beam_size` are expanded, as NeMo's TDT beam does, with blank at each of the top
durations and the best `beam_size` (token, duration) pairs; an expansion that moves on lands
in the group of its new frame, one that stays (a token of duration 0; any RNNT token) is
expanded again on t, up to max_symbols with greedy's rules (label_looping included), until
beam_size hypotheses that moved on rank above all that stay (NeMo's rule). Hypotheses that
reach the same frame with the same tokens are merged (their ranking scores added in
probability, NeMo's and parakeet-mlx's rule), and hypotheses that share a token prefix share
one prediction-network evaluation; the joint is evaluated for all of a round's new prefixes
at once, several frames ahead.

Scores. Each hypothesis carries two:
- `score`, its model log-probability as greedy defines it: the sum along its path of
  log p(token) (+ log p(duration) for TDT), so beam and greedy results compare directly;
- a ranking score that the search sorts on: for TDT parakeet-mlx's
  (1 - r) * log p(token) + r * log p(duration) per step with r = duration_reward
  (NeMo's token + duration is r = 0.5 up to a factor of two); for RNNT log p(token).
The final choice maximizes rank / max(1, tokens)**length_penalty among the finished
hypotheses whose `score` is at least greedy's, and is greedy's own result when there is none.
A search can lose greedy's path (pruning, or a ranking that is not the score), so
greedy_transducer runs first, through a trace that keeps its prediction-network and joint
outputs for the search's hypotheses on its path; the result's score is never below greedy's,
and a beam of one, which only expands the arg-max, finds greedy's path.

Expansions are also pruned as NeMo's mAES does: a (token, duration) step more than
`expansion_gamma` below the best step of the same hypothesis is not tried, so where the
model is confident a frame has a single candidate and costs little more than greedy's step.

CTC: prefix beam search over total (all-alignment) probabilities with NeMo's collapsing
rule ("a _ a" is two tokens). Greedy's path is the exact best single alignment, so no beam
can beat it on greedy's path score; CTC's `score` is therefore the sequence log-probability
log P(tokens) summed over alignments (`ctc_sequence_log_prob`), computed exactly for each
candidate and for greedy's tokens, and the result is never below greedy's on it.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from .config import Beam
from .greedy import Hypothesis, greedy_ctc, greedy_transducer
from .stepper import DecoderState, TransducerStepper, entropy_confidence

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

# Frames of joint output computed at once for one prefix, as greedy does: one pass over the
# joint's weights serves the blank steps that follow. A new prefix starts with one frame (many
# are dropped after it) and each further pass doubles, up to MAX_LOOKAHEAD.
MAX_LOOKAHEAD = 16
# how many frames behind the search's current frame greedy's outputs are kept for reuse
KEEP_GREEDY = 64


class _GreedyTrace:
    """The stepper as greedy sees it: passes greedy's calls on and keeps what they computed,
    the prediction-network output for each prefix of greedy's tokens and the joint outputs
    greedy asked for, so that the search's hypotheses on greedy's path reuse them."""

    def __init__(self, stepper: TransducerStepper, enc: np.ndarray):
        self._stepper = stepper
        self._enc = enc
        self.outputs: dict[int, tuple[np.ndarray, DecoderState]] = {}  # by tokens fed
        self.blocks: dict[int, list[tuple[int, np.ndarray]]] = {}  # by tokens fed
        self._expiry: deque[tuple[int, int]] = deque()  # (stop frame, tokens fed)
        self.calls = 0

    def __getattr__(self, name: str):
        return getattr(self._stepper, name)

    def predict(self, token: int | None, state: DecoderState):
        out = self._stepper.predict(token, state)
        self.outputs[self.calls] = out
        self.calls += 1
        return out

    def logits(self, rows: np.ndarray, pred: np.ndarray) -> np.ndarray:
        out = self._stepper.logits(rows, pred)
        fed = self.calls - 1
        start = self._frame_of(rows)
        if start is not None and fed in self.outputs and self.outputs[fed][0] is pred:
            block = out if out.ndim == 2 else out[None]
            if fed not in self.blocks and fed - 1 in self.blocks:
                # greedy left the previous prefix by `start`: keep only the rows it used
                before, last = self.blocks[fed - 1][-1]
                if start - before + 1 < len(last):
                    self.blocks[fed - 1][-1] = (before, last[: max(1, start - before + 1)].copy())
            self.blocks.setdefault(fed, []).append((start, block))
            self._expiry.append((start + len(block), fed))
        return out

    def _frame_of(self, rows: np.ndarray) -> int | None:
        """The frame `rows` starts at, if it is a slice of the encoder output."""
        enc = self._enc
        if not np.may_share_memory(rows, enc) or rows.strides[-1:] != enc.strides[-1:]:
            return None
        offset = rows.__array_interface__["data"][0] - enc.__array_interface__["data"][0]
        frame, rest = divmod(offset, enc.strides[0])
        return frame if rest == 0 and 0 <= frame < len(enc) else None

    def block_at(self, fed: int, frame: int) -> tuple[int, np.ndarray] | None:
        for start, block in self.blocks.get(fed, ()):
            if start <= frame < start + len(block):
                return start, block
        return None

    def forget_before(self, frame: int) -> None:
        """Drops what ends before `frame`: a hypothesis that far behind recomputes it."""
        while self._expiry and self._expiry[0][0] < frame:
            _, fed = self._expiry.popleft()
            blocks = self.blocks[fed]
            blocks.pop(0)
            if not blocks:
                del self.blocks[fed]
                self.outputs.pop(fed, None)


class _Prefix:
    """A node of the token-prefix trie: the prediction network's output after the prefix,
    computed once for all hypotheses that share it, and its joint outputs for the frames
    last asked for. Nodes keep no parent, so abandoned branches are freed."""

    __slots__ = (
        "token",
        "in_state",
        "pred",
        "state",
        "children",
        "greedy_fed",
        "block",
        "lookahead",
    )

    def __init__(self, token: int | None, in_state: DecoderState, greedy_fed: int):
        self.token = token
        self.in_state = in_state  # the state before `token` was fed
        self.pred: np.ndarray | None = None
        self.state: DecoderState | None = None
        self.children: dict[int, _Prefix] = {}
        self.greedy_fed = greedy_fed  # greedy's tokens it holds (-1: off greedy's path)
        self.block: _Block | None = None
        self.lookahead = 1


def _log_softmax_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


class _Block:
    """One prefix's joint outputs for frames start..stop-1, row by row: token log-probs, the
    best token and its log-prob, blank's log-prob, the top non-blank tokens and their
    log-probs, duration log-probs; and each row's expansions once asked for."""

    __slots__ = (
        "start",
        "stop",
        "logp",
        "best",
        "top",
        "blank",
        "tokens",
        "values",
        "dur",
        "rows",
    )

    def __init__(self, start: int, logp: np.ndarray, best, top, blank, tokens, values, dur):
        self.start, self.stop = start, start + len(logp)
        self.logp = logp
        self.best: list[int] = best
        self.top: list[float] = top
        self.blank: list[float] = blank
        self.tokens: list[list[int]] | None = tokens
        self.values: list[list[float]] | None = values
        self.dur: list[list[float]] | None = dur
        self.rows: list[list[tuple[int, int, float, float]] | None] = [None] * len(logp)


def _blocks(
    logits: np.ndarray, starts: list[int], sizes: list[int], n_tok: int, tdt: bool, k: int
) -> list[_Block]:
    """Blocks for consecutive runs of rows of `logits`, all reduced in one pass; `k` top
    non-blank tokens per row (none for a beam of one, which takes the best)."""
    logp = _log_softmax_rows(logits[:, :n_tok])
    dur = _log_softmax_rows(logits[:, n_tok:]).tolist() if tdt else None
    rows = np.arange(len(logp))
    best = logp.argmax(axis=1)
    top, blank = logp[rows, best].tolist(), logp[:, -1].tolist()
    best = best.tolist()
    tokens = values = None
    k = min(k, n_tok - 1)
    if k > 1:
        top_k = np.argpartition(logp[:, :-1], -k, axis=1)[:, -k:]
        tokens, values = top_k.tolist(), logp[rows[:, None], top_k].tolist()
    out, i = [], 0
    for start, size in zip(starts, sizes, strict=True):
        at = slice(i, i + size)
        out.append(
            _Block(
                start,
                logp[at],
                best[at],
                top[at],
                blank[at],
                tokens[at] if tokens else None,
                values[at] if values else None,
                dur[at] if dur else None,
            )
        )
        i += size
    return out


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


def _best(paths: list[_Path], n: int) -> list[_Path]:
    return paths if len(paths) <= n else heapq.nlargest(n, paths, key=lambda p: p.rank)


class _TransducerSearch:
    def __init__(
        self,
        stepper: TransducerStepper,
        enc: np.ndarray,
        durations: list[int] | None,
        max_symbols: int | None,
        beam: Beam,
        greedy_tokens: list[int],
        trace: _GreedyTrace | None,
        label_looping: bool = False,
    ):
        self.stepper = stepper
        self.enc = enc
        self.durations = durations
        self.tdt = durations is not None
        self.limit = max_symbols if max_symbols is not None else _NO_LIMIT
        self.label_looping = label_looping
        self.beam = beam
        self.w = beam.duration_reward if self.tdt else 0.0
        self.gamma = beam.expansion_gamma
        self.block_args = (stepper.num_tokens, self.tdt, beam.beam_size)
        self.blank = stepper.blank
        self.greedy_tokens = greedy_tokens
        self.trace = trace
        self.evaluations = 0

    def prepare(self, paths: list[_Path]) -> None:
        """Makes sure every path's prefix has joint outputs for its frame: greedy's where it
        computed them, else one joint evaluation for all the prefixes that need them."""
        needed: list[tuple[_Prefix, int]] = []
        for path in paths:
            node, frame = path.node, path.frame
            block = node.block
            if block is not None and block.start <= frame < block.stop:
                continue
            if node.greedy_fed >= 0 and self.trace is not None:
                if node.pred is None and node.greedy_fed in self.trace.outputs:
                    node.pred, node.state = self.trace.outputs[node.greedy_fed]
                found = self.trace.block_at(node.greedy_fed, frame)
                if found is not None and node.pred is not None:
                    start, logits = found
                    (node.block,) = _blocks(logits, [start], [len(logits)], *self.block_args)
                    continue
            if node.pred is None:
                node.pred, node.state = self.stepper.predict(node.token, node.in_state)
            needed.append((node, frame))
        if not needed:
            return
        rows = [self.enc[t : t + node.lookahead] for node, t in needed]
        sizes = [len(r) for r in rows]
        preds = np.repeat(np.stack([node.pred for node, _ in needed]), sizes, axis=0)
        logits = self.stepper.logits(np.concatenate(rows), preds)
        starts = [t for _, t in needed]
        blocks = _blocks(logits, starts, sizes, *self.block_args)
        for (node, _), block in zip(needed, blocks, strict=True):
            node.block = block
            node.lookahead = min(2 * node.lookahead, MAX_LOOKAHEAD)

    def expansions(self, block: _Block, r: int) -> list[tuple[int, int, float, float]]:
        """(token, frames to skip, model log-prob, ranking term) of the steps worth trying
        from row r, among the top tokens by the top durations: those within expansion_gamma
        of the best step, and of the token steps only the beam_size best."""
        found = block.rows[r]
        if found is not None:
            return found
        beam, blank = self.beam, self.blank
        if beam.beam_size == 1:
            tokens, values = [block.best[r]], [block.top[r]]
        else:
            tokens, values = block.tokens[r] + [blank], block.values[r] + [block.blank[r]]
        if self.tdt:
            dur = block.dur[r]
            order = sorted(range(len(dur)), key=dur.__getitem__, reverse=True)
            order = order[: min(beam.beam_size, len(order))]
        else:
            dur, order = [0.0], [0]
        steps = sorted(zip(values, tokens, strict=True), reverse=True)
        cut = steps[0][0] + dur[order[0]] - self.gamma
        found, emits = [], []
        for value, token in steps:
            for d in order:
                lp = value + dur[d]
                if lp < cut:
                    break
                skip = self.durations[d] if self.tdt else int(token == blank)
                step = (token, skip, lp, (1.0 - self.w) * value + self.w * dur[d])
                (found if token == blank else emits).append(step)
        # as NeMo: blank with each duration, and the best beam_size (token, duration) pairs
        found += heapq.nlargest(beam.beam_size, emits, key=lambda e: e[3])
        block.rows[r] = found
        return found

    def advance(self, frame: int, symbols: int, blank: bool, skip: int) -> tuple[int, int]:
        """Greedy's rules: where a step lands and how many steps it has made on that frame."""
        if blank and skip == 0:  # TDT blank of duration 0: greedy moves one frame
            return frame + 1, 0
        symbols += 1
        if symbols >= self.limit:
            stayed = skip == 0
            return frame + skip + int(stayed or (self.tdt and not self.label_looping)), 0
        if skip > 0:
            return frame + skip, 0
        return frame, symbols

    def child(self, node: _Prefix, token: int) -> _Prefix:
        found = node.children.get(token)
        if found is None:
            fed = node.greedy_fed
            on_greedy = 0 <= fed < len(self.greedy_tokens) and self.greedy_tokens[fed] == token
            found = _Prefix(token, node.state, fed + 1 if on_greedy else -1)
            node.children[token] = found
        return found

    def expand(self, path: _Path, same: dict, pending: dict, finished: dict, left: list) -> None:
        block = path.node.block
        r = path.frame - block.start
        self.evaluations += 1
        conf = None
        for token, skip, lp, rank in self.expansions(block, r):
            frame, symbols = self.advance(path.frame, path.symbols, token == self.blank, skip)
            if token == self.blank:
                node, trail, length = path.node, path.trail, path.length
            else:
                if conf is None:
                    conf = entropy_confidence(block.logp[r])
                node = self.child(path.node, token)
                trail = (token, path.frame, skip if self.tdt else 1, conf, path.trail)
                length = path.length + 1
            rank += path.rank
            new = _Path(node, frame, symbols, rank, path.score + lp, trail, length)
            if frame == path.frame:
                _merge(same, new)
                continue
            left.append(rank)
            if frame >= len(self.enc):
                _merge(finished, new)
            else:
                group = pending.get(frame)
                if group is None:
                    group = pending[frame] = {}
                _merge(group, new)

    def run(self, state: DecoderState, last_token: int | None, start_frame: int) -> list[_Path]:
        """The finished hypotheses that compete in the final choice, best first."""
        beam_size = self.beam.beam_size
        root = _Prefix(last_token, state, 0)
        pending: dict[int, dict[_Prefix, _Path]] = {
            start_frame: {root: _Path(root, start_frame, 0, 0.0, 0.0, None, 0)}
        }
        finished: dict[_Prefix, _Path] = {}
        for t in range(start_frame, len(self.enc)):
            group = pending.pop(t, None)
            if group is None:
                continue
            if self.trace is not None:
                self.trace.forget_before(t - KEEP_GREEDY)
            paths = _best(list(group.values()), beam_size)
            left: list[float] = []  # ranks of the expansions that left frame t
            while paths:
                same: dict[_Prefix, _Path] = {}
                self.prepare(paths)
                for path in paths:
                    self.expand(path, same, pending, finished, left)
                # NeMo's rule: stop extending on this frame once beam_size hypotheses that
                # moved on rank above what is still here (ranks only fall).
                if len(left) >= beam_size:
                    floor = heapq.nlargest(beam_size, left)[-1]
                    paths = _best([p for p in same.values() if p.rank > floor], beam_size)
                else:
                    paths = _best(list(same.values()), beam_size)
        pool = max(1, round(beam_size * self.beam.patience))
        return heapq.nlargest(pool, finished.values(), key=lambda p: p.rank)


def _same_path(path: _Path, hyp: Hypothesis) -> bool:
    if path.length != len(hyp.tokens):
        return False
    steps = [s[:3] for s in _unroll(path.trail)]
    return steps == list(zip(hyp.tokens, hyp.frames, hyp.durations, strict=True))


def _path_hypothesis(path: _Path, steps: int) -> Hypothesis:
    trail = _unroll(path.trail)
    return Hypothesis(
        tokens=[s[0] for s in trail],
        frames=[s[1] for s in trail],
        durations=[s[2] for s in trail],
        confidences=[s[3] for s in trail],
        score=path.score,
        steps=steps,
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
    label_looping: bool = False,
) -> Hypothesis:
    """TDT when `durations` is given, RNNT otherwise; enc: (T, joint_hidden) projected
    frames. Arguments as greedy_transducer's, whose rules (max_symbols, label_looping) the
    search follows; `steps` counts the joint evaluations made (greedy's and the search's)."""
    state = state or stepper.initial_state()
    trace = _GreedyTrace(stepper, enc)
    greedy = greedy_transducer(
        trace,
        enc,
        durations=durations,
        max_symbols=max_symbols,
        state=state,
        last_token=last_token,
        start_frame=start_frame,
        label_looping=label_looping,
    )
    # greedy's outputs are indexed by tokens fed: usable if it fed each token once
    usable = trace.calls == len(greedy.tokens) + 1
    search = _TransducerSearch(
        stepper,
        enc,
        durations,
        max_symbols,
        beam,
        greedy.tokens,
        trace if usable else None,
        label_looping,
    )
    pool = search.run(state, last_token, start_frame)
    greedy.steps += search.evaluations
    eligible = [p for p in pool if p.score >= greedy.score]
    if not eligible:
        return greedy
    penalty = beam.length_penalty
    best = max(eligible, key=lambda p: _normalized(p.rank, p.length, penalty))
    if _same_path(best, greedy):
        return greedy
    return _path_hypothesis(best, greedy.steps)


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


def _ctc_sweep(log_probs: np.ndarray, tokens: list[int], blank: int, viterbi: bool):
    """Runs the CTC lattice of the states blank, y1, blank, y2, ..., blank over the frames,
    summing (forward) or maximizing (Viterbi) over alignments. Returns the final scores of
    the states (-inf where none) and, for Viterbi, each frame's step back (0, 1 or 2).
    Only the band of states that can both be reached and still finish is computed."""
    n_frames = len(log_probs)
    states = np.full(2 * len(tokens) + 1, blank, dtype=np.intp)
    states[1::2] = tokens
    n = len(states)
    # a token state may be entered from two back when it differs from the token before it
    skip = np.zeros(n, dtype=bool)
    skip[3::2] = states[3::2] != states[1:-2:2]
    padded = np.full(n + 2, -np.inf)  # padded[s + 2] is state s, so s - 2 always exists
    back = np.zeros((n_frames, n), dtype=np.int8) if viterbi else None
    for t in range(n_frames):
        lo, hi = max(0, n - 2 * (n_frames - t)), min(n, 2 * t + 2)
        if lo >= hi:
            return np.full(n, -np.inf), back
        emit = log_probs[t, states[lo:hi]].astype(np.float64)
        if t == 0:
            padded[2 + lo : 2 + hi] = emit
            continue
        old = padded[lo : hi + 2].copy()
        two = np.where(skip[lo:hi], old[:-2], -np.inf)
        if viterbi:
            choices = np.stack([old[2:], old[1:-1], two])
            back[t, lo:hi] = choices.argmax(axis=0)
            padded[2 + lo : 2 + hi] = choices.max(axis=0) + emit
        else:
            padded[2 + lo : 2 + hi] = np.logaddexp(np.logaddexp(old[2:], old[1:-1]), two) + emit
    return padded[2:], back


def ctc_sequence_log_prob(log_probs: np.ndarray, tokens: list[int], blank: int) -> float:
    """log P(tokens) under CTC: the log-sum over every alignment that collapses to them."""
    if len(log_probs) == 0:
        return 0.0 if not tokens else -math.inf
    final, _ = _ctc_sweep(log_probs, tokens, blank, viterbi=False)
    return float(np.logaddexp.reduce(final[-2:]))


def _ctc_best_alignment(log_probs: np.ndarray, tokens: list[int], blank: int) -> list[int]:
    """Per-frame labels of the most probable alignment of `tokens` (Viterbi)."""
    final, back = _ctc_sweep(log_probs, tokens, blank, viterbi=True)
    n = len(final)
    state = n - 1 if n == 1 or final[-1] >= final[-2] else n - 2
    labels = []
    for t in range(len(log_probs) - 1, -1, -1):
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
