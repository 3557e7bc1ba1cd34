"""parakeet-tui's speech recognition engine: NVIDIA Parakeet models in MLX."""

from .blas import load_fast_blas

load_fast_blas()  # must precede the first import of MLX

from .results import AlignedResult, AlignedSentence, AlignedToken  # noqa: E402

__all__ = ["AlignedResult", "AlignedSentence", "AlignedToken"]
