"""Builds tiny random-init NeMo ASR models that differ from tests/fixtures/nemo in every
dimension the mlx-community format can express, and saves each as .nemo.

Run in a venv with nemo-toolkit[asr] (see README.md):
    python make_models.py OUTDIR CENTRE.wav [SEED]

CENTRE.wav (16 kHz mono) is the clip whose mean encoder output is projected out of the
output heads, so greedy tokens follow the audio (a random conformer's output is nearly the
same vector at every frame).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import sentencepiece as spm
import soundfile as sf
import torch
from omegaconf import OmegaConf

WORDS = (
    "seven boats left harbor before sunrise fishermen counted nets twice please forward "
    "quarterly budget margaret thursday afternoon museum opened exhibit volcanoes spring "
    "visitors walk through model lava tube touch samples basalt pumice watch short film "
    "eruption buried ancient city guide told thousands years wake again library closes nine "
    "reading room stays open until midnight the a of and to in that some they we"
).split()

PREPROCESSOR = "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor"


def tokenizer(out: Path, vocab_size: int, seed: int) -> Path:
    """A SentencePiece BPE vocabulary of `vocab_size` pieces trained on generated text."""
    folder = out / f"tokenizer-{vocab_size}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + vocab_size)
    lines = (" ".join(rng.choices(WORDS, k=12)) for _ in range(4000))
    (folder / "text.txt").write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(folder / "text.txt"),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
    )
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    (folder / "vocab.txt").write_text("\n".join(pieces) + "\n")
    return folder


def conformer(feat_in: int, **overrides) -> dict:
    cfg = dict(
        _target_="nemo.collections.asr.modules.ConformerEncoder",
        feat_in=feat_in,
        feat_out=-1,
        n_layers=2,
        d_model=64,
        subsampling="dw_striding",
        subsampling_factor=8,
        subsampling_conv_channels=32,
        causal_downsampling=False,
        ff_expansion_factor=4,
        self_attention_model="rel_pos",
        n_heads=4,
        att_context_size=[-1, -1],
        xscaling=True,
        untie_biases=True,
        pos_emb_max_len=5000,
        conv_kernel_size=9,
        conv_norm_type="batch_norm",
        dropout=0.0,
        dropout_pre_encoder=0.0,
        dropout_emb=0.0,
        dropout_att=0.0,
    )
    cfg.update(overrides)
    return cfg


def transducer(tok, pre, enc, *, pred_hidden, pred_layers, joint_hidden, activation,
               max_symbols, durations=None, strategy="greedy_batch",
               dropout=0.0) -> dict:  # fmt: skip
    d = enc["d_model"]
    cfg = dict(
        sample_rate=16000,
        log_prediction=False,
        compute_eval_loss=False,
        model_defaults=dict(enc_hidden=d, pred_hidden=pred_hidden, joint_hidden=joint_hidden),
        tokenizer=dict(dir=str(tok), type="bpe"),
        preprocessor=pre,
        encoder=enc,
        decoder=dict(
            _target_="nemo.collections.asr.modules.RNNTDecoder",
            normalization_mode=None,
            random_state_sampling=False,
            blank_as_pad=True,
            prednet=dict(
                pred_hidden=pred_hidden, pred_rnn_layers=pred_layers, t_max=None, dropout=dropout
            ),
        ),
        joint=dict(
            _target_="nemo.collections.asr.modules.RNNTJoint",
            log_softmax=None,
            preserve_memory=False,
            fuse_loss_wer=False,
            fused_batch_size=4,
            jointnet=dict(
                joint_hidden=joint_hidden,
                activation=activation,
                dropout=dropout,
                encoder_hidden=d,
                pred_hidden=pred_hidden,
            ),
        ),
        decoding=dict(strategy=strategy, greedy=dict(max_symbols=max_symbols)),
        loss=dict(loss_name="default"),
        optim=None,
        train_ds=None,
        validation_ds=None,
        test_ds=None,
    )
    if durations:
        cfg["model_defaults"]["tdt_durations"] = durations
        cfg["model_defaults"]["num_tdt_durations"] = len(durations)
        cfg["joint"]["num_extra_outputs"] = len(durations)
        cfg["decoding"].update(model_type="tdt", durations=durations)
        cfg["loss"] = dict(
            loss_name="tdt",
            tdt_kwargs=dict(
                fastemit_lambda=0.0, clamp=-1.0, durations=durations, sigma=0.02, omega=0.0
            ),
        )
    return cfg


def ctc(tok, pre, enc, strategy="greedy_batch") -> dict:
    return dict(
        sample_rate=16000,
        log_prediction=False,
        tokenizer=dict(dir=str(tok), type="bpe"),
        preprocessor=pre,
        encoder=enc,
        decoder=dict(
            _target_="nemo.collections.asr.modules.ConvASRDecoder",
            feat_in=enc["d_model"],
            num_classes=-1,
            vocabulary=[],
        ),
        decoding=dict(strategy=strategy),
        optim=None,
        train_ds=None,
        validation_ds=None,
        test_ds=None,
    )


def models(out: Path, seed: int) -> dict[str, tuple[str, dict, bool, float | None]]:
    """name -> (kind, NeMo config, store weights as bfloat16, fraction of frames that
    should emit tokens on the centre clip, or None to leave the blank's bias as drawn)."""
    # (a) TDT: 128 mels from a 20 ms window in a 400-point FFT, 3 layers of d_model 96 with
    # 6 heads, kernel 5, ff x2, wider joint than prediction net, durations up to 8.
    pre_a = dict(_target_=PREPROCESSOR, sample_rate=16000, normalize="per_feature",
                 window_size=0.02, window_stride=0.01, window="hann", features=128, n_fft=400,
                 log=True, frame_splicing=1, dither=1e-5, pad_to=0, pad_value=0.0)  # fmt: skip
    # Training-time dropouts as in the released Parakeet configs (inactive in eval mode).
    enc_a = conformer(128, n_layers=3, d_model=96, n_heads=6, conv_kernel_size=5,
                      ff_expansion_factor=2, subsampling_conv_channels=24, dropout=0.1,
                      dropout_pre_encoder=0.1, dropout_att=0.1)  # fmt: skip
    tdt = transducer(tokenizer(out, 96, seed), pre_a, enc_a, pred_hidden=80, pred_layers=1,
                     joint_hidden=112, activation="relu", max_symbols=4,
                     durations=[0, 1, 2, 4, 8], dropout=0.2)  # fmt: skip

    # (b) RNNT: local attention with an asymmetric context (24 left, 8 right), subsampling
    # x4, no biases in the conformer layers, 2 heads, kernel 7, a 2-layer LSTM, tanh joint,
    # max 3 symbols per frame; a Hamming window, band-limited filterbank (lowfreq/highfreq).
    pre_b = dict(_target_=PREPROCESSOR, sample_rate=16000, normalize="per_feature",
                 window_size=0.025, window_stride=0.01, window="hamming", features=80,
                 n_fft=512, lowfreq=60, highfreq=7200, log=True, frame_splicing=1, dither=0.0,
                 pad_to=16, pad_value=0.0)  # fmt: skip
    enc_b = conformer(80, subsampling_factor=4, n_heads=2, conv_kernel_size=7, use_bias=False,
                      self_attention_model="rel_pos_local_attn", att_context_size=[24, 8],
                      subsampling_conv_channels=16)  # fmt: skip
    rnnt = transducer(tokenizer(out, 64, seed), pre_b, enc_b, pred_hidden=48, pred_layers=2,
                      joint_hidden=72, activation="tanh", max_symbols=3)  # fmt: skip

    # (c) CTC: one mean/std over all features, a clamping log guard on the magnitude (not
    # power) spectrum, no preemphasis, 40 mels; subsampling x16, no xscaling, 3 heads of
    # d_model 48, kernel 15; a 40-piece vocabulary.
    pre_c = dict(_target_=PREPROCESSOR, sample_rate=16000, normalize="all_features",
                 window_size=0.025, window_stride=0.01, window="hann", features=40, n_fft=512,
                 preemph=None, mag_power=1.0, log=True, log_zero_guard_type="clamp",
                 log_zero_guard_value=1e-5, frame_splicing=1, dither=1e-5, pad_to=0,
                 pad_value=0.0)  # fmt: skip
    enc_c = conformer(40, d_model=48, n_heads=3, subsampling_factor=16, xscaling=False,
                      conv_kernel_size=15, subsampling_conv_channels=24)  # fmt: skip
    ctc_model = ctc(tokenizer(out, 40, seed), pre_c, enc_c)
    return {
        "tdt-128": ("tdt", tdt, True, None),
        "rnnt-local-asym": ("rnnt", rnnt, True, 0.5),
        "ctc-allfeat": ("ctc", ctc_model, False, 0.6),
    }


def randomize_norms(model, seed: int) -> None:
    """Trained models have non-trivial norm affines, BatchNorm statistics and attention
    position biases; random init leaves them at 1/0 (pos_bias_u/v at zero), which would not
    tell whether an engine applies them. Draw them at random."""
    g = torch.Generator().manual_seed(seed)

    def normal(t, mean, std):
        t.copy_(mean + std * torch.randn(t.shape, generator=g))

    with torch.no_grad():
        for module in model.encoder.modules():
            if isinstance(module, torch.nn.LayerNorm):
                normal(module.weight, 1.0, 0.2)
                normal(module.bias, 0.0, 0.1)
            elif isinstance(module, torch.nn.BatchNorm1d):
                normal(module.weight, 1.0, 0.2)
                normal(module.bias, 0.0, 0.1)
                normal(module.running_mean, 0.0, 0.3)
                module.running_var.copy_(
                    0.5 + 1.5 * torch.rand(module.running_var.shape, generator=g)
                )
            if hasattr(module, "pos_bias_u") and module.pos_bias_u is not None:
                normal(module.pos_bias_u, 0.0, 0.5)
                normal(module.pos_bias_v, 0.0, 0.5)


def heads(model, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (out, d_model) weight and the bias of the layer that reads the encoder output."""
    if kind == "ctc":
        layer = model.decoder.decoder_layers[0]
        return layer.weight[:, :, 0], layer.bias
    return model.joint.enc.weight, model.joint.enc.bias


def encode(model, wav: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, d_model) encoder output for a 16 kHz mono clip, and its length."""
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == 16000 and audio.ndim == 1, wav
    x = torch.tensor(audio)[None]
    mel, n = model.preprocessor(input_signal=x, length=torch.tensor([x.shape[1]]))
    enc, length = model.encoder(audio_signal=mel, length=n)
    return enc[0].T, enc, length


def sharpen(model, kind: str, wav: str, spread: float, components: int = 16) -> None:
    """A random conformer's output is nearly the same vector at every frame. Make the head
    read the whitened variation of the output instead: the `components` strongest
    directions of the output's variation over the clip, each scaled to unit variance, with
    the mean taken out (into the bias), and the whole scaled so that the head's outputs
    vary with standard deviation `spread`. Greedy decoding then follows the audio."""
    model.eval()
    with torch.no_grad():
        frames, _, _ = encode(model, wav)
        mean = frames.mean(dim=0)
        centred = frames - mean
        _, s, vt = torch.linalg.svd(centred, full_matrices=False)
        k = min(components, int((s > s[0] * 1e-4).sum()))
        whiten = vt[:k].T @ torch.diag((len(frames) - 1) ** 0.5 / s[:k]) @ vt[:k]
        weight, bias = heads(model, kind)
        new = weight @ whiten
        new *= spread / (centred @ new.T).std()
        weight.copy_(new)
        bias.sub_(new @ mean)


def greedy_hypothesis(model, wav: str):
    _, enc, length = encode(model, wav)
    hyp = model.decoding.rnnt_decoder_predictions_tensor(
        encoder_output=enc, encoded_lengths=length, return_hypotheses=True
    )
    h = hyp[0][0] if isinstance(hyp, tuple) else hyp[0]
    return (h[0] if isinstance(h, list) else h), int(length[0])


def sharpen_prediction(model, wav: str, spread: float) -> None:
    """Scale the joint's prediction-side projection so that, over the tokens greedy decoding
    emits on the clip, it varies as much as the encoder side: the decoder's state then
    shapes the tokens, and an engine whose LSTM were wrong could not match them."""
    model.eval()
    with torch.no_grad():
        h, _ = greedy_hypothesis(model, wav)
        tokens = [int(t) for t in h.y_sequence]
        g, _ = model.decoder.predict(torch.tensor([tokens]), state=None, add_sos=True)
        g = g[0]  # (U + 1, pred_hidden)
        mean = g.mean(dim=0)
        layer = model.joint.pred
        layer.weight.mul_(spread / ((g - mean) @ layer.weight.T).std())
        layer.bias.sub_(layer.weight @ mean)


def greedy_counts(model, wav: str) -> tuple[int, int, int]:
    """Encoder frames, tokens, frames that emitted at least one token (NeMo's greedy)."""
    h, frames = greedy_hypothesis(model, wav)
    steps = h.timestamp.tolist() if torch.is_tensor(h.timestamp) else list(h.timestamp)
    return frames, len(h.y_sequence), len(set(steps))


def tune_blank(model, kind: str, wav: str, emitting: float) -> float:
    """Raise the blank's bias so that about the fraction `emitting` of the frames emit a
    token on the clip (a random head rarely picks blank). Returns the bias added."""
    model.eval()
    with torch.no_grad():
        if kind == "ctc":
            layer = model.decoder.decoder_layers[0]
            blank = layer.bias.shape[0] - 1
            _, enc, length = encode(model, wav)
            logits = layer(enc)[0, :, : int(length[0])].T  # (T, classes)
            margin = logits[:, :blank].max(dim=1).values - logits[:, blank]
            add = float(torch.quantile(margin, 1.0 - emitting))
            layer.bias[blank] += add
            return add
        bias = model.joint.joint_net[-1].bias
        blank = model.joint.num_classes_with_blank - 1 - model.joint.num_extra_outputs
        base = bias[blank].clone()
        lo, hi = -20.0, 20.0  # emitting fraction falls as the blank's bias rises
        for _ in range(30):
            mid = (lo + hi) / 2
            bias[blank] = base + mid
            frames, _, emitted = greedy_counts(model, wav)
            lo, hi = (mid, hi) if emitted / frames > emitting else (lo, mid)
        bias[blank] = base + (lo + hi) / 2
        return (lo + hi) / 2


def round_to_bfloat16(model) -> None:
    """Make every float parameter and buffer exactly representable in bfloat16, so the
    checkpoint can be stored in bfloat16 (as most mlx-community checkpoints are) without
    changing what NeMo computes."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or name.startswith("preprocessor."):
                continue  # the window and filterbank are not in the checkpoint
            if ".bias_ih_l" in name or ".bias_hh_l" in name:
                # MLX's LSTM has one bias, bias_ih + bias_hh: multiples of 2^-7 below 2 in
                # magnitude are bfloat16-exact, and so is their sum.
                t.copy_(torch.round(t * 128) / 128)
                assert t.abs().max() < 2, name
            else:
                t.copy_(t.to(torch.bfloat16).to(t.dtype))


def main() -> None:
    out, centre = Path(sys.argv[1]), sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    out.mkdir(parents=True, exist_ok=True)
    from nemo.collections.asr.models import EncDecCTCModelBPE, EncDecRNNTBPEModel

    for i, (name, (kind, cfg, bf16, emitting)) in enumerate(models(out, seed).items()):
        torch.manual_seed(seed * 100 + i)
        cls = EncDecCTCModelBPE if kind == "ctc" else EncDecRNNTBPEModel
        model = cls(cfg=OmegaConf.create(cfg))
        randomize_norms(model, seed * 100 + i)
        sharpen(model, kind, centre, spread=3.0 if kind == "ctc" else 1.5)
        if kind != "ctc":
            sharpen_prediction(model, centre, spread=1.5)
        if emitting is not None:
            print(f"{name}: blank bias +{tune_blank(model, kind, centre, emitting):.3f}")
        if bf16:
            round_to_bfloat16(model)
        model.eval()
        model.save_to(str(out / f"{name}.nemo"))
        size = sum(p.numel() for p in model.parameters())
        print(f"saved {name}: {size} parameters{' (bfloat16-exact)' if bf16 else ''}")


if __name__ == "__main__":
    main()
