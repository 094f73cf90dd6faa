"""minGPT's two synthetic tasks, sorting and addition, and the tools to score a model on them.

Each task is a dataset of prompt -> answer token sequences: a list of digits ->
the same digits sorted (`SortDataset`), the digits of two numbers -> the digits
of their sum (`AdditionDataset`). Both are small enough to learn on a CPU in a
minute and easy to check: a sorted list is sorted, a sum is right or wrong. A
model is trained on them like on text, with the loss switched off on the prompt
(targets of IGNORE_INDEX), and scored by its greedy answers (`task_accuracy`).
They test the library end to end (tests/test_learns.py: a GPT learns to sort).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from gptlib.data import CharDataset, _check_positive_int, _normalize_index

IGNORE_INDEX = -1  # target value the loss skips (the prompt part of a task's sequence; see head.py)


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
