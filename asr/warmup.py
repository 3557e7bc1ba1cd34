"""Warming an NVIDIA GPU up for live streaming before the live stream starts.

MLX's CUDA backend compiles its kernels at their first use (the 0.6b model's compiled
streaming layers took about 70 s on a fresh H200, 4 s in later processes, which find them
on disk), and each thread records its own CUDA graphs: the first dozen updates of a new
thread take about half a second each where later ones take 25 ms. A throwaway stream over
a few seconds of quiet makes this happen before the first live update instead of as a lag
at the start of a recording: on the model-loading thread (asr.engine.prepare_streaming, for
the compiling) and on the engine's thread (for its graphs; audio that arrives meanwhile
waits in the engine's queue). Elsewhere nothing is compiled or recorded, and nothing is
done.
"""

from __future__ import annotations

import threading

import mlx.core as mx
import numpy as np

WARM_UP_SECONDS = 6.0
BLOCK_SECONDS = 0.5

_done = threading.local()


def needs_warm_up() -> bool:
    cuda = getattr(mx, "cuda", None)
    try:
        return cuda is not None and cuda.is_available() and mx.default_device() == mx.gpu
    except Exception:
        return False


def warm_up_streaming(
    model, context_size: tuple[int, int], depth: int, compiled: bool | None = None
) -> bool:
    """Streams WARM_UP_SECONDS of faint noise through a throwaway stream with these
    settings, once per thread, model and settings, where the GPU needs it. Returns whether
    it ran. The model's attention setting is left as it was."""
    key = (id(model), tuple(context_size), depth, compiled)
    seen = getattr(_done, "keys", None)
    if seen is None:
        seen = _done.keys = set()
    if key in seen or not needs_warm_up():
        return False
    rate = model.preprocessor_config.sample_rate
    noise = np.random.default_rng(0).standard_normal(int(WARM_UP_SECONDS * rate))
    audio = (1e-3 * noise).astype(np.float32)
    block = int(BLOCK_SECONDS * rate)
    with model.transcribe_stream(context_size, depth, compiled=compiled) as stream:
        for start in range(0, len(audio), block):
            stream.add_audio(audio[start : start + block])
    seen.add(key)
    return True
