"""One step of a transducer's prediction and joint networks, in float32 numpy.

Greedy and beam search run one tiny step per emitted token or frame: a few matrix-vector
products. On any backend, dispatching those through MLX costs far more than the arithmetic,
so the decoder keeps numpy copies of the prediction and joint weights and runs the loop on
the host, with the joint's encoder projection done for all frames at once in MLX.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from ..transducer import JointNetwork, PredictionNetwork


def _np(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32), dtype=np.float32)


@dataclass(frozen=True)
class DecoderState:
    """LSTM hidden and cell states, (layers, hidden) each; immutable so hypotheses can
    share them."""

    h: np.ndarray
    c: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class TransducerStepper:
    def __init__(self, decoder: PredictionNetwork, joint: JointNetwork, vocab_size: int):
        self.blank = vocab_size
        self.num_tokens = vocab_size + 1
        self.layers = decoder.num_layers
        self.hidden = decoder.hidden_size
        lstms = decoder.prediction["dec_rnn"].lstm
        embed = _np(decoder.prediction["embed"].weight)
        if decoder.blank_as_pad:
            embed[self.blank] = 0.0
        else:  # no blank row: the start-of-sequence input is a zero vector
            embed = np.concatenate([embed, np.zeros((1, embed.shape[1]), np.float32)])
        first = lstms[0]
        # The first layer's input term depends only on the token: tabulate it.
        self.token_gates = embed @ _np(first.Wx).T + _np(first.bias)
        self.recurrent = [_np(layer.Wh).T.copy() for layer in lstms]
        self.inputs = [None] + [_np(layer.Wx).T.copy() for layer in lstms[1:]]
        self.biases = [None] + [_np(layer.bias) for layer in lstms[1:]]
        self.pred_w = _np(joint.pred.weight).T.copy()
        self.pred_b = _np(joint.pred.bias)
        out = joint.joint_net[-1]
        self.out_w = _np(out.weight).T.copy()
        self.out_b = _np(out.bias)
        self.activation_name = joint.activation
        self.activation = {
            "relu": lambda x: np.maximum(x, 0.0),
            "tanh": np.tanh,
            "sigmoid": _sigmoid,
        }[joint.activation]
        self._joint = joint

    def initial_state(self) -> DecoderState:
        zeros = np.zeros((self.layers, self.hidden), np.float32)
        return DecoderState(zeros, zeros)

    def project_encoder(self, features: mx.array) -> np.ndarray:
        """(T, H_enc) encoder frames -> (T, joint_hidden) joint inputs."""
        return _np(self.project_encoder_mx(features))

    def project_encoder_mx(self, features: mx.array) -> mx.array:
        """project_encoder, left on MLX's device (float32)."""
        return self._joint.enc(features.astype(mx.float32)).astype(mx.float32)

    def predict(self, token: int | None, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """Feeds one token (None: start of sequence) -> joint-projected output, new state."""
        gates = self.token_gates[self.blank if token is None else token]
        hs, cs = [], []
        x = None
        for i in range(self.layers):
            g = state.h[i] @ self.recurrent[i]
            g += gates if i == 0 else x @ self.inputs[i] + self.biases[i]
            ig, fg, cg, og = np.split(g, 4)
            c = _sigmoid(fg) * state.c[i] + _sigmoid(ig) * np.tanh(cg)
            x = _sigmoid(og) * np.tanh(c)
            hs.append(x)
            cs.append(c)
        return x @ self.pred_w + self.pred_b, DecoderState(np.stack(hs), np.stack(cs))

    def logits(self, enc_row: np.ndarray, pred_out: np.ndarray) -> np.ndarray:
        return self.activation(enc_row + pred_out) @ self.out_w + self.out_b


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def entropy_confidence(logp: np.ndarray) -> float:
    """1 - normalized entropy of the token distribution: 1 when certain, 0 when uniform."""
    entropy = -float(np.dot(np.exp(logp), logp))
    return max(0.0, 1.0 - entropy / float(np.log(len(logp))))
