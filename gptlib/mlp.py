"""The MLP block: each position thinks on its own about what attention gathered.

Linear(C, 4C) -> GELU -> Linear(4C, C) -> Dropout, applied to every position
independently. The 4x wider hidden layer is the GPT papers' choice: most of a
GPT's parameters live here.

Taught in lesson 03: lessons/03_mlp.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlib.config import GPTConfig


class MLP(nn.Module):
    """A one-hidden-layer perceptron with GELU, (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        # torch's fused GELU; "tanh" is GPT-2's approximation, "none" the exact erf form.
        self.gelu = nn.GELU(approximate=config.gelu_approximate)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.gelu(self.fc(x))))  # (B, T, 4C) inside, (B, T, C) out
