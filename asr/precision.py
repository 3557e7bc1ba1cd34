"""float32 that is float32 on NVIDIA GPUs too.

MLX's CUDA backend runs float32 matrix products and convolutions on tensor cores in TF32
(10-bit mantissa, about 1e-3 relative error) unless MLX_ENABLE_TF32=0. A model loaded in
float32 is asked for float32 (NeMo's numbers, streaming that equals offline); bfloat16,
the GPU default, is the fast choice. So the engine turns TF32 off unless the user set the
variable. MLX reads it once, at the first float32 product on the GPU, so this must run
before that (importing asr does it).
"""

from __future__ import annotations

import os

TF32_VARIABLE = "MLX_ENABLE_TF32"


def keep_float32_exact() -> None:
    os.environ.setdefault(TF32_VARIABLE, "0")
