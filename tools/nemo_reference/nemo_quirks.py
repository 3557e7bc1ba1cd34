"""Shows, with NeMo itself, the two behaviours behind the engine mismatches in README.md.
Run in the NeMo venv from the repository root:
    python tools/nemo_reference/nemo_quirks.py [/tmp/nemo-unseen/models/tdt-128.nemo]

1. Local attention with left != right context: NeMo's module against a numpy statement of
   its rule for where the position scores land, and against the exact-offset rule.
2. TDT greedy ('greedy', GreedyTDTInfer) against greedy_batch (label looping) on the
   encoder outputs stored in tests/fixtures/nemo_unseen/tdt-128 (needs the .nemo file).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from nemo.collections.asr.parts.submodules.multi_head_attention import (
    LocalAttRelPositionalEncoding,
    RelPositionMultiHeadAttentionLongformer,
)

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "nemo_unseen" / "tdt-128"


def position_offsets(o: int, left: int, right: int, rule: str) -> list[int]:
    """The key offsets whose position terms the score of key offset o receives."""
    if rule == "exact":
        return [o]
    w = max(left, right)
    terms = []
    if o < left - w:
        terms.append(o + w - left)
    if o >= w - right:
        terms.append(o - w + right)
    return terms


def local_attention(left: int, right: int, d: int = 32, heads: int = 2, frames: int = 70) -> None:
    torch.manual_seed(0)
    att = RelPositionMultiHeadAttentionLongformer(
        n_head=heads,
        n_feat=d,
        dropout_rate=0.0,
        pos_bias_u=None,
        pos_bias_v=None,
        att_context_size=[left, right],
    ).eval()
    pe = LocalAttRelPositionalEncoding(
        att_context_size=[left, right], d_model=d, dropout_rate=0.0, max_len=100, xscale=None
    ).eval()
    pe.extend_pe(frames, torch.device("cpu"), torch.float32)
    x = torch.randn(1, frames, d)
    dk = d // heads
    with torch.no_grad():
        att.pos_bias_u.normal_(0, 0.5)
        att.pos_bias_v.normal_(0, 0.5)
        _, pos = pe(x)
        mask = torch.zeros(1, frames, dtype=torch.bool)
        nemo = att(x, x, x, pad_mask=mask, pos_emb=pos)[0].numpy()
        q, k, v = (
            lin(x).view(frames, heads, dk).numpy()
            for lin in (att.linear_q, att.linear_k, att.linear_v)
        )
        p = att.linear_pos(pos).view(-1, heads, dk).numpy()  # rows: distances left..-right
        bu, bv = att.pos_bias_u.numpy(), att.pos_bias_v.numpy()
    for rule in ("exact", "nemo"):
        out = np.zeros((frames, heads, dk), np.float32)
        for i in range(frames):
            keys = list(range(max(0, i - left), min(frames, i + right + 1)))
            for h in range(heads):
                scores = []
                for j in keys:
                    s = (q[i, h] + bu[h]) @ k[j, h]
                    for o in position_offsets(j - i, left, right, rule):
                        s += (q[i, h] + bv[h]) @ p[left + o, h]
                    scores.append(s / np.sqrt(dk))
                a = np.exp(np.array(scores) - max(scores))
                out[i, h] = (a / a.sum()) @ v[keys, h]
        with torch.no_grad():
            mine = att.linear_out(torch.tensor(out.reshape(1, frames, d)))[0].numpy()
        print(f"local attention ({left}, {right}), {rule} rule: max |diff| vs NeMo "
              f"{np.abs(mine - nemo).max():.1e}")  # fmt: skip


def tdt_strategies(nemo_path: str) -> None:
    from nemo.collections.asr.models import ASRModel
    from omegaconf import open_dict

    model = ASRModel.restore_from(nemo_path, map_location="cpu")
    model.eval()
    references = json.loads((FIXTURE / "reference" / "reference.json").read_text())
    for strategy in ("greedy_batch", "greedy"):
        cfg = copy.deepcopy(model.cfg.decoding)
        with open_dict(cfg):
            cfg.strategy = strategy
        model.change_decoding_strategy(cfg, verbose=False)
        for clip, ref in references.items():
            with np.load(FIXTURE / "reference" / f"{clip}.npz") as data:
                enc = torch.tensor(data["enc"].T)[None]
            with torch.no_grad():
                hyp = model.decoding.rnnt_decoder_predictions_tensor(
                    encoder_output=enc,
                    encoded_lengths=torch.tensor([enc.shape[2]]),
                    return_hypotheses=True,
                )[0]
            hyp = hyp[0] if isinstance(hyp, list) else hyp
            same = (
                hyp.y_sequence.tolist() == ref["tokens"]
                and [int(t) for t in hyp.timestamp] == ref["frames"]
            )
            print(f"tdt-128 {clip}: NeMo {strategy} {'=' if same else '!='} stored reference")


def main() -> None:
    for left, right in ((24, 8), (8, 24), (10, 7), (5, 9), (16, 16)):
        local_attention(left, right)
    if len(sys.argv) > 1:
        tdt_strategies(sys.argv[1])


if __name__ == "__main__":
    main()
