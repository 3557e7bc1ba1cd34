"""parakeet-tui's speech recognition engine: NVIDIA Parakeet models in MLX."""

from .allocation import reuse_freed_memory
from .blas import load_fast_blas
from .precision import keep_float32_exact

load_fast_blas()  # must precede the first import of MLX
keep_float32_exact()  # must precede the first float32 matrix product on a GPU
reuse_freed_memory()

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
