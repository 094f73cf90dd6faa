"""CausalSelfAttention: each position gathers information from itself and the positions before it.

Every position emits a query ("what am I looking for"), a key ("what do I
contain") and a value ("what I pass on"). Scores q.k, scaled by 1/sqrt(head_size)
and masked so that no position sees the future, become weights by a softmax;
each position's output is the weighted sum of the values. Several heads do this
in parallel on slices of the channels, and a final projection mixes them.

Two paths compute the same thing:
- the fast path, `F.scaled_dot_product_attention(..., is_causal=True)`, used for
  training and generation;
- the explicit path (`return_weights=True`), which writes out every step and
  returns the attention weights (B, n_head, T, T) for visualisation.

Taught in lesson 02: lessons/02_attention.ipynb.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.config import GPTConfig

if TYPE_CHECKING:
    from gptlib.kvcache import LayerCache


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention with an output projection, (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        # key, query, value projections for all heads (named as in minGPT, so its checkpoints map 1:1)
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        # Lower-triangular mask for the explicit path only: 1 where a query may look (key <= query).
        # Not persistent: it is derived from block_size and does not belong in checkpoints.
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size), persistent=False)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, C = t.shape
        return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

    def forward(
        self,
        x: torch.Tensor,
        cache: LayerCache | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q = self._heads(self.query(x))  # (B, nh, T, hs)
        k = self._heads(self.key(x))  # (B, nh, T, hs)
        v = self._heads(self.value(x))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, nh, T_past + T, hs): the keys/values of every position so far
        Tk = k.size(2)
        past = Tk - T  # queries sit at positions past .. past + T - 1

        if return_weights:
            # Scores grow like sqrt(hs) for unit-variance q, k; dividing keeps the softmax from saturating.
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, Tk)
            # -inf before the softmax gives the future exactly zero weight (exp(-inf) = 0).
            att = att.masked_fill(~self.mask[:, :, past : past + T, :Tk], float("-inf"))
            att = F.softmax(att, dim=-1)
            weights = att
            y = self.attn_drop(att) @ v  # (B, nh, T, Tk) x (B, nh, Tk, hs) -> (B, nh, T, hs)
        else:
            p = self.attn_drop.p if self.training else 0.0
            if past == 0:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            elif T == 1:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # one new query sees every key
            else:
                allowed = self.mask[:, :, past : past + T, :Tk]
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        y = self.resid_drop(self.proj(y))
        return (y, weights) if return_weights else y
