"""Dataclasses read from a model's config.json (NeMo's model config as JSON).

`from_dict` keeps only the keys a dataclass declares, so a checkpoint's extra configuration
never breaks loading, and converts nested dataclasses recursively.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config.json that does not describe a model this engine can build."""


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field holds: the hint itself, or the one inside `X | None`."""
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg  # type: ignore[return-value]
    return None


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.name not in data:
            continue
        value = data[f.name]
        nested = _dataclass_in(hints[f.name])
        if nested is not None and isinstance(value, dict):
            value = from_dict(nested, value)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from None


@dataclass
class PreprocessArgs:
    """NeMo's AudioToMelSpectrogramPreprocessor settings."""

    sample_rate: int = 16000
    normalize: str | None = "per_feature"
    window_size: float = 0.025
    window_stride: float = 0.01
    window: str = "hann"
    features: int = 80
    n_fft: int = 512
    dither: float = 1e-5
    pad_to: int = 0
    pad_value: float = 0.0
    preemph: float | None = 0.97
    mag_power: float = 2.0
    log: bool = True
    log_zero_guard_type: str = "add"
    log_zero_guard_value: float = 2**-24
    lowfreq: float = 0.0
    highfreq: float | None = None
    mel_norm: str | None = "slaney"

    @property
    def win_length(self) -> int:
        return int(self.window_size * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return int(self.window_stride * self.sample_rate)


@dataclass
class ConformerArgs:
    feat_in: int
    n_layers: int
    d_model: int
    n_heads: int = 8
    ff_expansion_factor: int = 4
    subsampling_factor: int = 8
    self_attention_model: str = "rel_pos"
    subsampling: str = "dw_striding"
    conv_kernel_size: int = 9
    subsampling_conv_channels: int = 256
    pos_emb_max_len: int = 5000
    causal_downsampling: bool = False
    use_bias: bool = True
    xscaling: bool = True
    subsampling_conv_chunking_factor: int = 1
    att_context_size: list[int] | None = None
    conv_norm_type: str = "batch_norm"


@dataclass
class PredictNetworkArgs:
    pred_hidden: int
    pred_rnn_layers: int = 1
    rnn_hidden_size: int | None = None


@dataclass
class JointNetworkArgs:
    joint_hidden: int
    activation: str = "relu"
    encoder_hidden: int = 0
    pred_hidden: int = 0


@dataclass
class PredictArgs:
    prednet: PredictNetworkArgs
    vocab_size: int
    blank_as_pad: bool = True


@dataclass
class JointArgs:
    jointnet: JointNetworkArgs
    num_classes: int
    vocabulary: list[str]
    num_extra_outputs: int = 0


@dataclass
class ConvASRDecoderArgs:
    feat_in: int
    num_classes: int
    vocabulary: list[str]


@dataclass
class AuxCTCArgs:
    decoder: ConvASRDecoderArgs


@dataclass
class DecodingArgs:
    """The `decoding` section: strategy, greedy settings and (for TDT) the durations."""

    model_type: str | None = None
    durations: list[int] | None = None
    greedy: dict[str, Any] | None = None
    strategy: str = "greedy_batch"  # NeMo's default for transducers

    @property
    def label_looping(self) -> bool:
        """NeMo's batched greedy decoders (every strategy but plain 'greedy') differ from
        the plain one in one TDT rule; see greedy_transducer."""
        return self.strategy != "greedy"

    @property
    def max_symbols(self) -> int | None:
        return (self.greedy or {}).get("max_symbols")


@dataclass
class TransducerArgs:
    """TDT and RNNT models (EncDecRNNTBPEModel, and the hybrid TDT-CTC model)."""

    preprocessor: PreprocessArgs
    encoder: ConformerArgs
    decoder: PredictArgs
    joint: JointArgs
    decoding: DecodingArgs = field(default_factory=DecodingArgs)
    aux_ctc: AuxCTCArgs | None = None


@dataclass
class CTCArgs:
    preprocessor: PreprocessArgs
    encoder: ConformerArgs
    decoder: ConvASRDecoderArgs
    decoding: DecodingArgs = field(default_factory=DecodingArgs)


RNNT_TARGET = "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel"
HYBRID_TARGET = "nemo.collections.asr.models.hybrid_rnnt_ctc_bpe_models.EncDecHybridRNNTCTCBPEModel"
CTC_TARGET = "nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE"


def model_family(config: dict[str, Any]) -> str:
    """'tdt', 'rnnt', 'ctc' or 'tdt_ctc', from the NeMo class the config names."""
    target = config.get("target") or config.get("_target_")
    tdt = bool((config.get("model_defaults") or {}).get("tdt_durations")) or (
        (config.get("decoding") or {}).get("model_type") == "tdt"
    )
    if target == RNNT_TARGET:
        return "tdt" if tdt else "rnnt"
    if target == HYBRID_TARGET:
        return "tdt_ctc" if tdt else "rnnt_ctc"
    if target == CTC_TARGET:
        return "ctc"
    raise ConfigError(
        f"unsupported model class {target!r} (expected a NeMo Parakeet TDT, RNNT or CTC model)"
    )
