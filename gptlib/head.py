"""The softmax head: final LayerNorm, then a linear map from channels to one score per token.

The scores (logits) become next-token probabilities by a softmax; training
minimises cross-entropy, the negative log-probability of the true next token.
An untrained model guesses uniformly, so its first loss is about ln(vocab_size).

Taught in lesson 05: lessons/05_gpt.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.config import GPTConfig


class LMHead(nn.Module):
    """x (B, T, C) -> logits (B, T, vocab_size), plus the cross-entropy loss when targets are given."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.proj = nn.Linear(
            config.n_embd, config.vocab_size, bias=False
        )  # minGPT's `head`, GPT-2's `lm_head`

    def forward(
        self, x: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.proj(self.ln_f(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            # Targets of -1 are ignored (the synthetic tasks mark the prompt part this way).
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss
