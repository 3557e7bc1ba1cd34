"""What a streaming encoder layer keeps of the frames it has settled.

Attention needs the keys and values of the last `left` frames; the convolution needs its
input for the last `kernel // 2` frames. Both are bounded windows, so memory stays constant
however long the stream runs.
"""

from __future__ import annotations

import mlx.core as mx


class LayerCache:
    def __init__(self, keep_attention: int, keep_conv: int):
        self.keep_attention = keep_attention
        self.keep_conv = keep_conv
        self.keys: mx.array | None = None  # (1, H, <= keep_attention, head_dim)
        self.values: mx.array | None = None
        self.conv: mx.array | None = None  # (1, <= keep_conv, channels)

    @staticmethod
    def _append(buffer: mx.array | None, new: mx.array, axis: int, keep: int) -> mx.array | None:
        if new.shape[axis] == 0:
            return buffer
        joined = new if buffer is None else mx.concatenate([buffer, new], axis=axis)
        size = joined.shape[axis]
        if size > keep:
            index = [slice(None)] * joined.ndim
            index[axis] = slice(size - keep, size)
            joined = joined[tuple(index)]
        return joined

    def settle(self, keys: mx.array, values: mx.array, conv: mx.array) -> None:
        """Adds the first frames of a window once no later input can change them."""
        self.keys = self._append(self.keys, keys, 2, self.keep_attention)
        self.values = self._append(self.values, values, 2, self.keep_attention)
        self.conv = self._append(self.conv, conv, 1, self.keep_conv)

    def arrays(self) -> list[mx.array]:
        return [a for a in (self.keys, self.values, self.conv) if a is not None]
