"""Tokens -> training examples: splits, random batches, and datasets.

A language model learns from windows of block_size + 1 tokens: x is the
first block_size of them and y the same window shifted by one, so at every
position t the model sees x[:t+1] and must predict y[t]. `get_batch` draws B
such windows at random (nanoGPT's way, fast and simple); `CharDataset` offers
every window as a torch Dataset (minGPT's way, for a DataLoader).
(minGPT's synthetic sorting and addition tasks are in tasks.py.)

Taught in lesson 00: lessons/00_tokens_and_batches.ipynb.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from gptlib.corpus import check_corpus
from gptlib.tokenizer import CharTokenizer


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def _as_token_tensor(data: Any, name: str = "data") -> torch.Tensor:
    """`data` as a 1-D torch.long tensor of token ids, or a ValueError saying how to make one."""
    if not isinstance(data, torch.Tensor):
        raise ValueError(
            f"{name} must be a 1-D torch tensor of token ids, got {type(data).__name__}. "
            "Make one with tokenizer.encode_tensor(text)."
        )
    if data.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one long stream of token ids), got shape {tuple(data.shape)}.")
    if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {data.dtype}.")
    return data.long()


# --- a token stream: split and sample -------------------------------------------------------


def train_val_split(
    data: torch.Tensor, val_fraction: float = 0.1, block_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a token stream into a training part (the first 1 - val_fraction) and a validation part.

    The split is contiguous, like nanoGPT's: the validation text is text the
    model never saw, not windows interleaved with the training ones. Given
    `block_size`, both parts must hold at least one example (block_size + 1 tokens).
    """
    data = _as_token_tensor(data)
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0 < val_fraction < 1
    ):
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}; e.g. 0.1.")
    if block_size is not None:
        _check_positive_int("block_size", block_size)
    n = len(data)
    n_train = int(n * (1 - val_fraction))
    train, val = data[:n_train], data[n_train:]
    need = 1 if block_size is None else block_size + 1
    for part, size in (("training", len(train)), ("validation", len(val))):
        if size < need:
            what = "an example" if block_size is None else f"one example with block_size={block_size}"
            min_fraction = need / n
            raise ValueError(
                f"with val_fraction={val_fraction} the {part} part of {n} tokens would hold {size} tokens, "
                f"too few for {what} (needs {need}). Use a longer text, a smaller block_size, or a "
                f"val_fraction between {min_fraction:.3g} and {1 - min_fraction:.3g}."
            )
    return train, val


def get_batch(
    data: torch.Tensor,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """B random windows of the token stream: x (B, T) and y (B, T), y being x shifted one token left.

    Pass a seeded torch.Generator (CPU) to get the same batches every run.
    """
    data = _as_token_tensor(data)
    _check_positive_int("block_size", block_size)
    _check_positive_int("batch_size", batch_size)
    if len(data) < block_size + 1:
        raise ValueError(
            f"data has {len(data)} tokens, too few for one window of block_size={block_size} "
            f"(needs block_size + 1 = {block_size + 1}). Use more text or a block_size below {len(data)}."
        )
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    positions = starts[:, None] + torch.arange(block_size)  # (B, T)
    positions = positions.to(data.device)
    x = data[positions]  # (B, T)
    y = data[positions + 1]  # (B, T)
    return x.to(device), y.to(device)


def context_target_pairs(ids: Sequence[int] | torch.Tensor, block_size: int) -> list[tuple[list[int], int]]:
    """Every (context, target) pair that one window of block_size + 1 tokens teaches.

    For t = 0 .. block_size - 1 the context is ids[:t+1] and the target
    ids[t+1]: one window trains the model at every context length from 1 to
    block_size at once, which is why it can later start from a single token.
    Uses the first block_size + 1 tokens of `ids`.
    """
    _check_positive_int("block_size", block_size)
    if isinstance(ids, torch.Tensor):
        ids = _as_token_tensor(ids, "ids").tolist()
    ids = list(ids)
    if len(ids) < block_size + 1:
        raise ValueError(
            f"ids has {len(ids)} tokens; one window of block_size={block_size} needs block_size + 1 = "
            f"{block_size + 1}."
        )
    return [(ids[: t + 1], int(ids[t + 1])) for t in range(block_size)]


class CharDataset(Dataset):
    """Every window of a text as (x, y) pairs of block_size ids; minGPT's CharDataset.

    Item i is x = ids[i : i+T] and y = ids[i+1 : i+T+1]. The tokenizer is
    built from the text unless one is given (e.g. to share a vocabulary
    between a training and a validation dataset).
    """

    def __init__(self, text: str, block_size: int, tokenizer: CharTokenizer | None = None) -> None:
        _check_positive_int("block_size", block_size)
        check_corpus(text, block_size, name="the text")
        self.tokenizer = tokenizer if tokenizer is not None else CharTokenizer.from_text(text)
        self.data = self.tokenizer.encode_tensor(text)
        self._block_size = block_size

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def get_block_size(self) -> int:
        return self.block_size

    def get_vocab_size(self) -> int:
        return self.vocab_size

    def __len__(self) -> int:
        return len(self.data) - self._block_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = _normalize_index(index, len(self))
        chunk = self.data[i : i + self._block_size + 1]
        # clone: a view would drag the whole text's storage along into DataLoader workers
        return chunk[:-1].clone(), chunk[1:].clone()  # (T,), (T,)

    def __repr__(self) -> str:
        return f"CharDataset({len(self)} windows, block_size={self.block_size}, vocab_size={self.vocab_size})"


def _normalize_index(index: Any, length: int) -> int:
    i = operator.index(index)
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"index {index} is out of range for a dataset of {length} items.")
    return i
