"""NeMo's ConvASRDecoder: a 1x1 convolution from encoder features to log-probabilities."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .config import ConvASRDecoderArgs


class ConvASRDecoder(nn.Module):
    def __init__(self, args: ConvASRDecoderArgs):
        super().__init__()
        classes = args.num_classes if args.num_classes > 0 else len(args.vocabulary)
        self.num_outputs = classes + 1  # + blank, the last id
        self.decoder_layers = [nn.Conv1d(args.feat_in, self.num_outputs, 1, bias=True)]

    def __call__(self, x: mx.array) -> mx.array:
        return nn.log_softmax(self.decoder_layers[0](x), axis=-1)
