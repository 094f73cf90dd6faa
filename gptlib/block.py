"""Block: one Transformer layer, "communication followed by computation".

Pre-LayerNorm residual form, as in minGPT and GPT-2:
    x = x + attn(ln1(x))
    x = x + mlp(ln2(x))
The residual pathway lets gradients flow straight from the loss to every layer;
each block only adds a correction to it.

Taught in lesson 04: lessons/04_residual_stack.ipynb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from gptlib.attention import CausalSelfAttention
from gptlib.config import GPTConfig
from gptlib.mlp import MLP

if TYPE_CHECKING:
    from gptlib.kvcache import LayerCache


class Block(nn.Module):
    """An unassuming Transformer block, (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cache: LayerCache | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.attn(self.ln1(x), cache=cache, return_weights=return_weights)
        if return_weights:
            out, weights = out
        x = x + out
        x = x + self.mlp(self.ln2(x))
        return (x, weights) if return_weights else x
