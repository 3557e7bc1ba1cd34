"""Prediction and joint networks of TDT/RNNT models, named as in the checkpoints."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .config import JointArgs, PredictArgs

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class StackedLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.lstm = [
            nn.LSTM(input_size if i == 0 else hidden_size, hidden_size) for i in range(num_layers)
        ]


class PredictionNetwork(nn.Module):
    """Embedding + LSTM over the tokens emitted so far. With `blank_as_pad` the blank id is
    the embedding's last row, kept at zero, which is also the start-of-sequence input."""

    def __init__(self, args: PredictArgs):
        super().__init__()
        hidden = args.prednet.pred_hidden
        rows = args.vocab_size + 1 if args.blank_as_pad else args.vocab_size
        self.blank_as_pad = args.blank_as_pad
        self.hidden_size = args.prednet.rnn_hidden_size or hidden
        self.num_layers = args.prednet.pred_rnn_layers
        self.prediction = {
            "embed": nn.Embedding(rows, hidden),
            "dec_rnn": StackedLSTM(hidden, self.hidden_size, self.num_layers),
        }


class JointNetwork(nn.Module):
    """logits = out(act(enc(f) + pred(g))): vocabulary + blank, then TDT duration logits."""

    def __init__(self, args: JointArgs):
        super().__init__()
        activation = args.jointnet.activation.lower()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unsupported joint activation {activation!r}")
        self.activation = activation
        self.num_outputs = args.num_classes + 1 + args.num_extra_outputs
        self.enc = nn.Linear(args.jointnet.encoder_hidden, args.jointnet.joint_hidden)
        self.pred = nn.Linear(args.jointnet.pred_hidden, args.jointnet.joint_hidden)
        # Indices follow NeMo's Sequential (activation, dropout, linear).
        self.joint_net = [
            ACTIVATIONS[activation](),
            nn.Identity(),
            nn.Linear(args.jointnet.joint_hidden, self.num_outputs),
        ]

    def __call__(self, enc: mx.array, pred: mx.array) -> mx.array:
        """enc: (B, T, H_enc), pred: (B, U, H_pred) -> (B, T, U, outputs)."""
        x = self.enc(enc)[:, :, None] + self.pred(pred)[:, None]
        for layer in self.joint_net:
            x = layer(x)
        return x
