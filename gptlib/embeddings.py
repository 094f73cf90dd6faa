"""The embeddings (minGPT's "input embedding stem"): token embedding + learned position embedding, then dropout.

Attention by itself is blind to order (it mixes a *set* of vectors), so each
position gets a learned vector of its own that is added to the token's vector.

Taught in lesson 01: lessons/01_embeddings.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlib.config import GPTConfig


class Embeddings(nn.Module):
    """idx (B, T) of token ids -> x (B, T, C): what token, plus where it stands."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        # One row per position up to block_size; zeros at start, as in minGPT.
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)
        self.block_size = config.block_size

    def forward(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """`start` is the position of idx[:, 0] (non-zero only when a KV cache holds the earlier ones)."""
        T = idx.size(1)
        tok = self.tok_emb(idx)  # (B, T, C)
        pos = self.pos_emb[:, start : start + T, :]  # (1, T, C), broadcast over the batch
        return self.drop(tok + pos)
