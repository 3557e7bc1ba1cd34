"""parakeet-tui's speech recognition engine: NVIDIA Parakeet models in MLX."""

from .blas import load_fast_blas

load_fast_blas()  # must precede the first import of MLX

from .alignment import SentenceConfig  # noqa: E402
from .decoding.config import Beam, DecodingConfig, Greedy  # noqa: E402
from .hub import ModelError, from_config, from_pretrained  # noqa: E402
from .model import (  # noqa: E402
    BaseParakeet,
    ParakeetCTC,
    ParakeetRNNT,
    ParakeetTDT,
    ParakeetTDTCTC,
)
from .results import AlignedResult, AlignedSentence, AlignedToken  # noqa: E402

__all__ = [
    "AlignedResult",
    "AlignedSentence",
    "AlignedToken",
    "BaseParakeet",
    "Beam",
    "DecodingConfig",
    "Greedy",
    "ModelError",
    "ParakeetCTC",
    "ParakeetRNNT",
    "ParakeetTDT",
    "ParakeetTDTCTC",
    "SentenceConfig",
    "from_config",
    "from_pretrained",
]
