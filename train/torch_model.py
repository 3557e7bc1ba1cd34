"""The FastConformer-TDT in PyTorch, for training only. Its parameter names are the
mlx-community checkpoint's (NeMo's module names), so `mlx_weights` maps one onto the other;
the engine in `asr` runs the result unchanged.

Padded batches behave as each item alone would: the padding is zeroed before every strided
subsampling convolution and before the depthwise convolution, and masked out of attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelSize:
    d_model: int = 128
    n_layers: int = 8
    n_heads: int = 4
    conv_kernel_size: int = 9
    subsampling_channels: int = 128
    pred_hidden: int = 160
    joint_hidden: int = 160
    features: int = 80
    durations: tuple[int, ...] = (0, 1, 2, 3, 4)


def _subsampled(lengths: torch.Tensor) -> torch.Tensor:
    return torch.div(lengths + 2 - 3, 2, rounding_mode="floor") + 1


class Subsampling(nn.Module):
    """dw_striding, factor 8: a 3x3 stride-2 convolution, then two depthwise + pointwise pairs."""

    def __init__(self, size: ModelSize):
        super().__init__()
        c = size.subsampling_channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, 2, 1, groups=c),
            nn.Conv2d(c, c, 1),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, 2, 1, groups=c),
            nn.Conv2d(c, c, 1),
            nn.ReLU(),
        )
        freq = size.features
        for _ in range(3):
            freq = (freq + 2 - 3) // 2 + 1
        self.out = nn.Linear(c * freq, size.d_model)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor):
        x = mel[:, None]  # (B, 1, T, F)
        for i, layer in enumerate(self.conv):
            if isinstance(layer, nn.Conv2d) and layer.stride[0] > 1:
                if i > 0:
                    keep = torch.arange(x.shape[2], device=x.device)[None] < lengths[:, None]
                    x = x * keep[:, None, :, None]
                lengths = _subsampled(lengths)
            x = layer(x)
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), lengths


def relative_positions(length: int, d_model: int, device) -> torch.Tensor:
    """Sinusoidal embeddings of distances T-1 ... -(T-1)."""
    positions = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    angles = positions[:, None] * inv_freq[None]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(positions), d_model)


class FeedForward(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d, 4 * d)
        self.linear2 = nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(F.silu(self.linear1(x))))


class RelPositionAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.linear_q = nn.Linear(d, d)
        self.linear_k = nn.Linear(d, d)
        self.linear_v = nn.Linear(d, d)
        self.linear_out = nn.Linear(d, d)
        self.linear_pos = nn.Linear(d, d, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.head_dim))
        self.dropout = dropout
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(self, x, pos_emb, key_mask, band=None):
        """key_mask (B, T): real frames; band (T, T): keys each query may see (local
        attention), None for all."""
        b, t, d = x.shape
        q = self.linear_q(x).view(b, t, self.heads, self.head_dim)
        k = self.linear_k(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(-1, self.heads, self.head_dim)  # (2T-1, H, Dh)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        by_distance = torch.einsum("bhtd,phd->bhtp", q_v, p)  # (B, H, T, 2T-1)
        # key j of query i is distance i - j, column T-1-i+j
        index = (
            (t - 1) - torch.arange(t, device=x.device)[:, None] + torch.arange(t, device=x.device)
        )
        bias = by_distance.gather(-1, index.expand(b, self.heads, t, t)) / math.sqrt(self.head_dim)
        allowed = key_mask[:, None, None, :]
        if band is not None:
            allowed = allowed & band
        bias = bias.masked_fill(~allowed, -1e4)
        out = F.scaled_dot_product_attention(
            q_u,
            k,
            v,
            attn_mask=bias.to(q_u.dtype),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.linear_out(out.transpose(1, 2).reshape(b, t, d))


class ConvolutionModule(nn.Module):
    def __init__(self, d: int, kernel: int):
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(d, 2 * d, 1)
        self.depthwise_conv = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.batch_norm = nn.BatchNorm1d(d)
        self.pointwise_conv2 = nn.Conv1d(d, d, 1)

    def forward(self, x, frame_mask):
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        x = x * frame_mask[:, None, :]
        x = F.silu(self.batch_norm(self.depthwise_conv(x)))
        return self.pointwise_conv2(x).transpose(1, 2)


class ConformerBlock(nn.Module):
    def __init__(self, size: ModelSize, dropout: float):
        super().__init__()
        d = size.d_model
        self.norm_feed_forward1 = nn.LayerNorm(d)
        self.feed_forward1 = FeedForward(d, dropout)
        self.norm_self_att = nn.LayerNorm(d)
        self.self_attn = RelPositionAttention(d, size.n_heads, dropout)
        self.norm_conv = nn.LayerNorm(d)
        self.conv = ConvolutionModule(d, size.conv_kernel_size)
        self.norm_feed_forward2 = nn.LayerNorm(d)
        self.feed_forward2 = FeedForward(d, dropout)
        self.norm_out = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, pos_emb, frame_mask, band=None):
        x = x + 0.5 * self.dropout(self.feed_forward1(self.norm_feed_forward1(x)))
        x = x + self.dropout(self.self_attn(self.norm_self_att(x), pos_emb, frame_mask, band))
        x = x + self.dropout(self.conv(self.norm_conv(x), frame_mask))
        x = x + 0.5 * self.dropout(self.feed_forward2(self.norm_feed_forward2(x)))
        return self.norm_out(x)


class Encoder(nn.Module):
    def __init__(self, size: ModelSize, dropout: float):
        super().__init__()
        self.size = size
        self.pre_encode = Subsampling(size)
        self.layers = nn.ModuleList(ConformerBlock(size, dropout) for _ in range(size.n_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, mel, lengths, context: tuple[int, int] | None = None):
        """context: (left, right) frames of local attention, None for full attention."""
        x, lengths = self.pre_encode(mel, lengths)
        x = x * math.sqrt(self.size.d_model)
        t = x.shape[1]
        pos_emb = self.dropout(relative_positions(t, self.size.d_model, x.device)).to(x.dtype)
        frame_mask = torch.arange(t, device=x.device)[None] < lengths[:, None]
        band = None
        if context is not None:
            offset = (
                torch.arange(t, device=x.device)[None] - torch.arange(t, device=x.device)[:, None]
            )
            band = (offset >= -context[0]) & (offset <= context[1])  # key j - query i
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x, pos_emb, frame_mask, band)
        return x, lengths


class PredictionNetwork(nn.Module):
    """Embedding (the blank id, last, is the zero start symbol) and one LSTM layer."""

    def __init__(self, vocab_size: int, hidden: int):
        super().__init__()
        self.blank = vocab_size
        self.embed = nn.Embedding(vocab_size + 1, hidden, padding_idx=vocab_size)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)

    def forward(self, tokens):
        start = torch.full_like(tokens[:, :1], self.blank)
        out, _ = self.lstm(self.embed(torch.cat([start, tokens], dim=1)))
        return out  # (B, U+1, H)


class Joint(nn.Module):
    def __init__(self, size: ModelSize, vocab_size: int):
        super().__init__()
        self.enc = nn.Linear(size.d_model, size.joint_hidden)
        self.pred = nn.Linear(size.pred_hidden, size.joint_hidden)
        self.joint_net = nn.Sequential(
            nn.ReLU(),
            nn.Identity(),
            nn.Linear(size.joint_hidden, vocab_size + 1 + len(size.durations)),
        )

    def forward(self, enc, pred):
        return self.joint_net(self.enc(enc)[:, :, None] + self.pred(pred)[:, None])


class TDTModel(nn.Module):
    def __init__(self, size: ModelSize, vocab_size: int, dropout: float = 0.1):
        super().__init__()
        self.size = size
        self.vocab_size = vocab_size
        self.encoder = Encoder(size, dropout)
        self.prediction = PredictionNetwork(vocab_size, size.pred_hidden)
        self.joint = Joint(size, vocab_size)


def mlx_weights(model: TDTModel) -> dict[str, np.ndarray]:
    """The mlx-community names and layouts (channels-last convolutions, the LSTM's two biases
    summed) as float32 numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        array = tensor.detach().float().cpu().numpy()
        if name.startswith("prediction."):
            name = name.replace("prediction.", "decoder.prediction.", 1)
            if ".lstm." in name:
                continue
        if array.ndim == 4:  # Conv2d (out, in, kh, kw) -> (out, kh, kw, in)
            array = array.transpose(0, 2, 3, 1)
        elif array.ndim == 3:  # Conv1d (out, in, k) -> (out, k, in)
            array = array.transpose(0, 2, 1)
        out[name] = np.ascontiguousarray(array)
    lstm = model.prediction.lstm
    prefix = "decoder.prediction.dec_rnn.lstm.0."
    out[prefix + "Wx"] = lstm.weight_ih_l0.detach().float().cpu().numpy()
    out[prefix + "Wh"] = lstm.weight_hh_l0.detach().float().cpu().numpy()
    out[prefix + "bias"] = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().float().cpu().numpy()
    return out
