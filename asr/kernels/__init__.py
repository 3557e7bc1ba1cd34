"""Local (banded) attention: one op, three implementations (Metal, CUDA, portable MLX)."""

from .local_attention import Backend, available_backends, local_attention
from .reference import reference_local_attention

__all__ = ["Backend", "available_backends", "local_attention", "reference_local_attention"]
