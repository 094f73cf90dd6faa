"""Tokens -> training examples: splits, random batches, and datasets.

A language model learns from windows of block_size + 1 tokens: x is the
first block_size of them and y the same window shifted by one, so at every
position t the model sees x[:t+1] and must predict y[t]. `get_batch` draws B
such windows at random (nanoGPT's way, fast and simple); `CharDataset` offers
every window as a torch Dataset (minGPT's way, for a DataLoader).
`SortDataset` and `AdditionDataset` are minGPT's two synthetic tasks, small
enough to learn on a CPU in a minute and easy to check: a sorted list is
sorted, a sum is right or wrong.

Taught in lesson 00: lessons/00_tokens_and_batches.ipynb.
"""

from __future__ import annotations

import contextlib
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from gptlib.corpus import check_corpus
from gptlib.tokenizer import CharTokenizer

IGNORE_INDEX = -1  # target value the loss skips (the prompt part of the synthetic tasks)


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


# --- minGPT's synthetic tasks ---------------------------------------------------------------


class SyntheticTask(Dataset, ABC):
    """A dataset of prompt -> answer token sequences, trained on like text with the prompt's targets ignored.

    Item i is (x, y): x is the sequence without its last token, y the sequence
    without its first, and y is IGNORE_INDEX (-1) wherever the target is still
    part of the prompt, so the loss only scores the answer.
    Subclasses give `sequence(i)` (prompt + answer ids), `format(seq)` and `is_correct(seq)`.
    """

    split: str
    prompt_length: int
    answer_length: int
    vocab_size: int

    @property
    def block_size(self) -> int:
        """Length of x: the whole sequence but its last token, which never has to be fed back in."""
        return self.prompt_length + self.answer_length - 1

    def get_block_size(self) -> int:
        return self.block_size

    def get_vocab_size(self) -> int:
        return self.vocab_size

    @abstractmethod
    def sequence(self, index: int) -> list[int]:
        """Example `index` as prompt + answer token ids."""

    @abstractmethod
    def format(self, seq: Sequence[int]) -> str:
        """A prompt + answer sequence as a readable line."""

    @abstractmethod
    def is_correct(self, seq: Sequence[int]) -> bool:
        """Whether the answer part of a prompt + answer sequence is right."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = torch.tensor(self.sequence(index), dtype=torch.long)
        x = seq[:-1].clone()  # (block_size,)
        y = seq[1:].clone()  # (block_size,)
        y[: self.prompt_length - 1] = IGNORE_INDEX
        return x, y


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")


def _in_test_split(rows: torch.Tensor) -> torch.Tensor:
    """True for the rows (N, L) that belong to the test split: a fixed quarter of all sequences.

    The split is a function of a row's content alone (a hash), so a sequence is
    in the train split or in the test split, never both, for any seed.
    """
    h = torch.zeros(rows.shape[0], dtype=torch.long)
    for j in range(rows.shape[1]):
        h = (h * 1_000_003 + rows[:, j] + 1) % 2_147_483_647
    h = (h * 2_654_435_761) % 2**32  # Knuth's multiplicative hash spreads h over 32 bits
    return (h >> 30) == 0


class SortDataset(SyntheticTask):
    """minGPT's sort task: `length` digits in [0, num_digits), then the same digits sorted.

    E.g. with length=6, num_digits=3: x = 2 0 1 1 0 2 0 0 1 1 2, and y asks the
    model, from the last input digit on, for 0 0 1 1 2 2. As in minGPT, half
    of the lists with many distinct digits are redrawn, so repeated digits are
    common. The examples are drawn once from `seed`; the train/test split is
    by content, so no list appears in both.
    """

    def __init__(
        self, split: str, length: int = 6, num_digits: int = 3, seed: int = 0, size: int = 10_000
    ) -> None:
        _check_split(split)
        _check_positive_int("length", length)
        _check_positive_int("num_digits", num_digits)
        _check_positive_int("size", size)
        self.split, self.length, self.num_digits, self.seed = split, length, num_digits, seed
        self.prompt_length = self.answer_length = length
        self.vocab_size = num_digits
        self.inputs = self._draw(size)  # (size, length)

    def _draw(self, size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        kept: list[torch.Tensor] = []
        total = 0
        for _ in range(1000):
            n = max(256, 2 * (size - total))
            rows = torch.randint(self.num_digits, (n, self.length), generator=g)  # (n, L)
            coin = torch.rand(n, generator=g)
            s = rows.sort(dim=1).values
            n_unique = 1 + (s[:, 1:] != s[:, :-1]).sum(dim=1)
            keep = (n_unique <= self.length // 2) | (coin >= 0.5)
            keep &= _in_test_split(rows) == (self.split == "test")
            kept.append(rows[keep])
            total += int(keep.sum())
            if total >= size:
                return torch.cat(kept)[:size]
        raise ValueError(
            f"could not draw {self.split} examples for SortDataset(length={self.length}, "
            f"num_digits={self.num_digits}): there are too few distinct lists to split into train and "
            "test. Use a longer length or more digits."
        )

    def __len__(self) -> int:
        return len(self.inputs)

    def sequence(self, index: int) -> list[int]:
        digits = self.inputs[_normalize_index(index, len(self))]
        return torch.cat([digits, digits.sort().values]).tolist()

    def format(self, seq: Sequence[int]) -> str:
        seq = [int(t) for t in seq]
        question, answer = seq[: self.length], seq[self.length :]
        return f"{' '.join(map(str, question))} -> {' '.join(map(str, answer))}"

    def is_correct(self, seq: Sequence[int]) -> bool:
        seq = [int(t) for t in seq]
        return seq[self.length :] == sorted(seq[: self.length])

    def __repr__(self) -> str:
        return (
            f"SortDataset(split={self.split!r}, length={self.length}, num_digits={self.num_digits}, "
            f"{len(self)} examples)"
        )


class AdditionDataset(SyntheticTask):
    """minGPT's addition task: the digits of a and b (ndigit each), then of a + b reversed.

    E.g. ndigit=2, 47 + 85 = 132: the sequence is 4 7 8 5 2 3 1. The sum has
    ndigit + 1 digits (zero padded) and comes least significant digit first,
    the order in which one adds by hand, carrying. All (10**ndigit)**2
    problems are shuffled with `seed`; the first min(test_fraction of them,
    max_test) are the test split, the rest the train split.
    """

    def __init__(
        self,
        split: str,
        ndigit: int = 2,
        seed: int = 1337,
        test_fraction: float = 0.2,
        max_test: int = 500,
    ) -> None:
        _check_split(split)
        _check_positive_int("ndigit", ndigit)
        if ndigit > 3:
            raise ValueError(
                f"ndigit={ndigit} would enumerate {10 ** (2 * ndigit):,} problems; "
                "use ndigit <= 3 (minGPT's limit)."
            )
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}.")
        _check_positive_int("max_test", max_test)
        self.split, self.ndigit, self.seed = split, ndigit, seed
        self.prompt_length, self.answer_length = 2 * ndigit, ndigit + 1
        self.vocab_size = 10
        n = (10**ndigit) ** 2
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        n_test = max(1, min(int(n * test_fraction), max_test))
        self.problems = perm[:n_test] if split == "test" else perm[n_test:]  # a * 10**ndigit + b

    def __len__(self) -> int:
        return len(self.problems)

    def operands(self, index: int) -> tuple[int, int]:
        """(a, b) of problem `index`."""
        p = int(self.problems[_normalize_index(index, len(self))])
        return divmod(p, 10**self.ndigit)

    def sequence(self, index: int) -> list[int]:
        a, b = self.operands(index)
        nd = self.ndigit
        text = f"{a:0{nd}d}{b:0{nd}d}" + f"{a + b:0{nd + 1}d}"[::-1]
        return [int(ch) for ch in text]

    def _split(self, seq: Sequence[int]) -> tuple[int, int, int]:
        seq = [int(t) for t in seq]
        if len(seq) != self.prompt_length + self.answer_length or not all(0 <= t <= 9 for t in seq):
            raise ValueError(
                f"an addition sequence for ndigit={self.ndigit} is {self.prompt_length + self.answer_length} "
                f"digits 0..9, got {seq}."
            )
        digits = "".join(map(str, seq))
        nd = self.ndigit
        return int(digits[:nd]), int(digits[nd : 2 * nd]), int(digits[2 * nd :][::-1])

    def format(self, seq: Sequence[int]) -> str:
        a, b, c = self._split(seq)
        return f"{a}+{b}={c}"

    def is_correct(self, seq: Sequence[int]) -> bool:
        a, b, c = self._split(seq)
        return a + b == c

    def __repr__(self) -> str:
        return f"AdditionDataset(split={self.split!r}, ndigit={self.ndigit}, {len(self)} problems)"


# --- showing and scoring examples -----------------------------------------------------------


@contextlib.contextmanager
def _evaluating(model: Callable[..., Any]) -> Iterator[None]:
    """No gradients, and an nn.Module in eval mode (no dropout) until the block ends."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _logits(model: Callable[..., Any], idx: torch.Tensor) -> torch.Tensor:
    """model(idx) as logits (B, T, V), for models that return logits or (logits, loss)."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            idx = idx.to(param.device)
    out = model(idx)
    return out[0] if isinstance(out, tuple) else out


def greedy_answers(model: Callable[..., Any], prompts: torch.Tensor, n_new: int) -> torch.Tensor:
    """Extend prompts (B, P) by n_new tokens, each the model's most likely next one; returns (B, n_new).

    `model(idx)` may return logits (B, T, V) or a (logits, loss) tuple like
    gptlib's GPT. An nn.Module runs in eval mode (no dropout) and is put back
    in the mode it was in.
    """
    if not isinstance(prompts, torch.Tensor) or prompts.dim() != 2:
        shape = tuple(prompts.shape) if isinstance(prompts, torch.Tensor) else type(prompts).__name__
        raise ValueError(f"prompts must be a (B, P) tensor of token ids, got {shape}.")
    _check_positive_int("n_new", n_new)
    idx = prompts.long()  # (B, P)
    with _evaluating(model):
        for _ in range(n_new):
            logits = _logits(model, idx)  # (B, t, V)
            nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True).to(idx.device)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)  # (B, t + 1)
    return idx[:, prompts.shape[1] :]  # (B, n_new)


def format_examples(
    dataset: SyntheticTask | CharDataset,
    n: int = 4,
    model: Callable[..., Any] | None = None,
    start: int = 0,
) -> list[str]:
    """Examples `start` .. `start + n - 1` of a dataset as readable lines.

    Without a model, each line is the example itself ("47+85=132", or for a
    CharDataset 'x' -> 'y'). With a model, a synthetic task's line is the
    model's greedy answer marked "ok" or "wrong (expected ...)", and a
    CharDataset's line adds the model's most likely next character at every position.
    """
    _check_positive_int("n", n)
    indices = range(start, min(start + n, len(dataset)))
    if isinstance(dataset, CharDataset):
        decode = dataset.tokenizer.decode
        lines = []
        for i in indices:
            x, y = dataset[i]
            line = f"{decode(x)!r} -> {decode(y)!r}"
            if model is not None:
                with _evaluating(model):
                    logits = _logits(model, x[None])  # (1, T, V)
                line += f"  model: {decode(logits[0].argmax(dim=-1).cpu())!r}"
            lines.append(line)
        return lines
    seqs = [dataset.sequence(i) for i in indices]
    if model is None:
        return [dataset.format(s) for s in seqs]
    P = dataset.prompt_length
    prompts = torch.tensor([s[:P] for s in seqs], dtype=torch.long)  # (n, P)
    answers = greedy_answers(model, prompts, dataset.answer_length).tolist()  # (n, answer_length)
    lines = []
    for seq, answer in zip(seqs, answers, strict=True):
        guess = seq[:P] + answer
        verdict = "ok" if dataset.is_correct(guess) else f"wrong (expected {dataset.format(seq)})"
        lines.append(f"{dataset.format(guess)}  {verdict}")
    return lines


def task_accuracy(
    dataset: SyntheticTask, model: Callable[..., Any], max_examples: int | None = None, batch_size: int = 500
) -> float:
    """The fraction of a synthetic task's examples the model answers exactly right, greedily."""
    _check_positive_int("batch_size", batch_size)
    n = len(dataset) if max_examples is None else min(max_examples, len(dataset))
    _check_positive_int("number of examples", n)
    P = dataset.prompt_length
    correct = 0
    for lo in range(0, n, batch_size):
        seqs = [dataset.sequence(i) for i in range(lo, min(lo + batch_size, n))]
        prompts = torch.tensor([s[:P] for s in seqs], dtype=torch.long)  # (b, P)
        answers = greedy_answers(model, prompts, dataset.answer_length).tolist()
        correct += sum(dataset.is_correct(s[:P] + a) for s, a in zip(seqs, answers, strict=True))
    return correct / n
