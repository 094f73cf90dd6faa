"""KV cache: the keys and values of positions already seen, kept so each new token costs one position.

Without a cache, generating token t re-runs the whole context (t positions
through every layer). With it, only the new position is computed; its query
attends to the stored keys/values. Because gptlib's positions are learned and
absolute, the cache is exact only until the context holds block_size tokens;
after that the window slides and generation recomputes the cropped window.

Taught in lesson 08: lessons/08_generation_and_speed.ipynb.
"""

from __future__ import annotations

import torch


class LayerCache:
    """Keys and values of one attention layer, (B, n_head, length, head_size), grown in place."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.length = 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v (B, nh, T, hs); return every position's (B, nh, length, hs)."""
        B, nh, T, hs = k.shape
        if self.length + T > self.capacity:
            raise ValueError(
                f"KV cache full: it holds {self.length} positions and {T} more do not fit in "
                f"block_size={self.capacity}. Crop the context and start a new cache."
            )
        if self.k is None:
            # Preallocate once, so each step writes one slot instead of copying the whole history.
            self.k = k.new_empty(B, nh, self.capacity, hs)
            self.v = v.new_empty(B, nh, self.capacity, hs)
        self.k[:, :, self.length : self.length + T] = k
        self.v[:, :, self.length : self.length + T] = v
        self.length += T
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class KVCache:
    """One LayerCache per block; `length` is how many positions the model has seen."""

    def __init__(self, n_layer: int, capacity: int):
        self.layers = [LayerCache(capacity) for _ in range(n_layer)]

    @property
    def length(self) -> int:
        return self.layers[0].length

    def __len__(self) -> int:
        return self.length
