"""GPT: the embeddings, a stack of blocks on the residual pathway, and the softmax head.

    idx (B, T) -> Embeddings -> Block x n_layer -> LMHead -> logits (B, T, vocab_size)

This is minGPT's model in its first (2020) layout, split into one file per part
(embeddings.py, attention.py, mlp.py, block.py, head.py): separate key, query,
value and proj Linears in the attention, the position table pos_emb a bare
nn.Parameter of shape (1, block_size, n_embd) starting at zero, an untied output
head without bias, and minGPT's N(0, 0.02) init and AdamW split. (minGPT's 2022
rewrite fused q, k, v into one c_attn and moved to GPT-2's names; gptlib keeps the
2020 layout and converts GPT-2 checkpoints in gpt2.py.) This file puts the parts
together, sets the initial weights, and checks the input so mistakes read as
plain errors.

Parameter names read as paths: embeddings.tok_emb, embeddings.pos_emb,
blocks.i.{ln1, attn.{key, query, value, proj}, ln2, mlp.{fc, proj}}, head.ln_f,
head.proj. Checkpoints written before these names (with stem.* and head.head.*)
still load: GPT.load_state_dict renames FORMER_NAMES.

Taught in lesson 05: lessons/05_gpt.ipynb.
"""

from __future__ import annotations

import logging
import numbers
from typing import Any

import torch
import torch.nn as nn

from gptlib.block import Block
from gptlib.config import GPTConfig
from gptlib.embeddings import Embeddings
from gptlib.generate import generate
from gptlib.head import LMHead
from gptlib.kvcache import KVCache

logger = logging.getLogger(__name__)

# AdamW's settings, stated once: configure_optimizers' defaults, and TrainConfig's (train.py).
# beta2 = 0.99 rather than minGPT's 0.95: nanoGPT's character-level recipe, made for batches of a
# few hundred tokens like the course's, whose squared gradients are noisy enough that a longer
# average (about 100 steps rather than 20) gives each parameter a steadier step size. The Trainer
# (the main job, lessons 06-08) trained with it before this was the one default.
WEIGHT_DECAY = 0.1
LEARNING_RATE = 1e-3
BETAS = (0.9, 0.99)

# Parameter-name prefixes of earlier gptlib versions -> today's. One table, read by
# GPT.load_state_dict, so an old checkpoint (or a saved state_dict) loads as it is.
FORMER_NAMES = {"stem.": "embeddings.", "head.head.": "head.proj."}


def current_name(name: str) -> str:
    """Today's name of a parameter that may carry a former name ("stem.pos_emb" -> "embeddings.pos_emb")."""
    for old, new in FORMER_NAMES.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def former_name(name: str) -> str:
    """The name a parameter had before FORMER_NAMES' renames (the inverse of current_name)."""
    for old, new in FORMER_NAMES.items():
        if name.startswith(new):
            return old + name[len(new) :]
    return name


def check_optimizer_args(weight_decay: Any, learning_rate: Any, betas: Any, owner: str = "") -> None:
    """Raise ValueError, saying what to change, unless AdamW can run with these settings.

    owner, e.g. "TrainConfig.", prefixes the names in the messages.
    """

    def is_number(x: Any) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool)

    if not is_number(weight_decay) or not weight_decay >= 0:
        raise ValueError(f"{owner}weight_decay must be a number >= 0, got {weight_decay!r}.")
    if not is_number(learning_rate) or not learning_rate > 0:
        raise ValueError(f"{owner}learning_rate must be a number > 0, got {learning_rate!r}.")
    if (
        not isinstance(betas, (tuple, list))
        or len(betas) != 2
        or not all(is_number(b) and 0 <= b < 1 for b in betas)
    ):
        raise ValueError(f"{owner}betas must be two numbers in [0, 1), e.g. {BETAS}; got {betas!r}.")


class GPT(nn.Module):
    """The full GPT language model, with a context of at most block_size tokens."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig, got {type(config).__name__}.")
        self.config = config  # frozen, and checked when it was made
        self.block_size = config.block_size
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.head = LMHead(config)
        self.apply(self._init_weights)
        logger.info("number of parameters: %e", self.num_parameters())

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # minGPT/GPT-2 init: small normal weights keep the first logits near zero, so the
        # untrained model predicts a near-uniform distribution (loss ~ ln(vocab_size)).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # torch's hook for loading older layouts of a module: rename FORMER_NAMES' keys, then load as usual.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + current_name(key[len(prefix) :])
            if new != key and new not in state_dict:
                state_dict[new] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def num_parameters(self) -> int:
        """All parameters (the position table included), as the seed counts them."""
        return sum(p.numel() for p in self.parameters())

    def get_block_size(self) -> int:
        return self.block_size

    def check_input(self, idx: torch.Tensor, past: int = 0) -> None:
        """Raise ValueError, in plain words, unless idx is a (B, T) tensor of valid token ids."""
        if not isinstance(idx, torch.Tensor):
            raise ValueError(
                f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}. "
                "Use torch.tensor([ids], dtype=torch.long)."
            )
        if idx.dtype not in (torch.long, torch.int32):  # the dtypes nn.Embedding accepts
            raise ValueError(
                f"idx must hold integer token ids (torch.long), got dtype {idx.dtype}. Use idx.long()."
            )
        if idx.dim() != 2:
            hint = " Add a batch dimension with idx.unsqueeze(0)." if idx.dim() == 1 else ""
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}.{hint}")
        B, T = idx.shape
        if T == 0 or B == 0:
            raise ValueError(
                f"idx is empty (shape {tuple(idx.shape)}): give the model at least one sequence of one token."
            )
        if past + T > self.block_size:
            where = f"{T} tokens" if past == 0 else f"{past} cached + {T} new tokens"
            raise ValueError(
                f"Cannot forward {where}: the model's block_size (longest context) is {self.block_size}. "
                f"Crop the input to its last {self.block_size} tokens, e.g. idx[:, -{self.block_size}:]."
            )
        if torch.compiler.is_compiling():
            return  # reading the ids' values would split a torch.compile graph; eager calls check them
        lo, hi = int(idx.min()), int(idx.max())
        V = self.config.vocab_size
        if lo < 0 or hi >= V:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"token id {bad} is outside the vocabulary: ids must be in 0..{V - 1} (vocab_size={V}). "
                "Was the text encoded with the tokenizer this model was trained with?"
            )

    def check_targets(self, idx: torch.Tensor, targets: torch.Tensor) -> None:
        """Raise ValueError unless targets is a long tensor shaped like idx, of vocabulary ids or -1."""
        if not isinstance(targets, torch.Tensor) or targets.dtype != torch.long:
            what = f"dtype {targets.dtype}" if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise ValueError(
                f"targets must be a torch.long tensor of token ids, got {what}. Use targets.long()."
            )
        if tuple(targets.shape) != tuple(idx.shape):
            raise ValueError(
                f"targets must have the same shape as idx {tuple(idx.shape)}, got {tuple(targets.shape)}."
            )
        if torch.compiler.is_compiling():
            return  # as in check_input: eager calls check the values
        lo, hi = int(targets.min()), int(targets.max())
        V = self.config.vocab_size
        if lo < -1 or hi >= V:
            bad = lo if lo < -1 else hi
            raise ValueError(
                f"target id {bad} is outside the vocabulary: targets must be in 0..{V - 1} "
                f"(vocab_size={V}), or -1 for positions the loss should ignore."
            )

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> (logits (B, T, vocab_size), loss or None), exactly as minGPT's forward."""
        past = cache.length if cache is not None else 0
        self.check_input(idx, past)
        if targets is not None:
            self.check_targets(idx, targets)
        x = self.embeddings(idx, start=past)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=cache.layers[i] if cache is not None else None)
        return self.head(x, targets)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's attention weights from one forward pass: a list of n_layer (B, n_head, T, T).

        Uses the explicit attention path (the one that computes the weights); runs
        without gradients and does not change train/eval mode: call model.eval()
        first to see the weights without dropout.
        """
        self.check_input(idx)
        x = self.embeddings(idx)
        maps = []
        for block in self.blocks:
            x, w = block(x, return_weights=True)
            maps.append(w)
        return maps

    def configure_optimizers(
        self,
        weight_decay: float = WEIGHT_DECAY,
        learning_rate: float = LEARNING_RATE,
        betas: tuple[float, float] = BETAS,
    ) -> torch.optim.AdamW:
        """AdamW with minGPT's split: Linear weights decay; biases, LayerNorm, embeddings and positions don't.

        Weight decay pulls weights toward zero. That regularises the matrices that
        mix channels, but on a bias, a LayerNorm gain or an embedding row it only
        fights the values the model needs. Settings AdamW cannot use raise
        ValueError here, not at the first step.
        """
        check_optimizer_args(weight_decay, learning_rate, betas)
        decay, no_decay = set(), set()
        for mn, m in self.named_modules():
            for pn, _ in m.named_parameters(recurse=False):
                full = f"{mn}.{pn}" if mn else pn
                if pn.endswith("bias"):
                    no_decay.add(full)
                elif pn.endswith("weight") and isinstance(m, nn.Linear):
                    decay.add(full)
                elif pn.endswith("weight") and isinstance(m, (nn.LayerNorm, nn.Embedding)):
                    no_decay.add(full)
                elif pn == "pos_emb":
                    no_decay.add(full)
        params = dict(self.named_parameters())
        both = decay & no_decay
        missing = params.keys() - (decay | no_decay)
        if both:
            raise RuntimeError(f"parameters {sorted(both)} landed in both the decay and no-decay groups.")
        if missing:
            raise RuntimeError(f"parameters {sorted(missing)} were not put in the decay or no-decay group.")
        groups = [
            {"params": [params[n] for n in sorted(decay)], "weight_decay": weight_decay},
            {"params": [params[n] for n in sorted(no_decay)], "weight_decay": 0.0},
        ]
        # The fused AdamW updates every tensor in one kernel. On a CPU torch's default otherwise loops over
        # the tensors in Python, ~10 small ops each: fused is ~7% of a small model's training step.
        fused = all(p.device.type in ("cpu", "cuda") for p in params.values())
        return torch.optim.AdamW(groups, lr=learning_rate, betas=tuple(betas), fused=fused)

    # model.generate(idx, max_new_tokens, ...), as in minGPT: gptlib.generate.generate with the model as self.
    generate = generate
