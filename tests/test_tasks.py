"""Tests for gptlib.tasks: minGPT's sorting and addition datasets, greedy answers, accuracy, readable examples."""

import pytest
import torch

from gptlib.data import CharDataset
from gptlib.tasks import (
    IGNORE_INDEX,
    AdditionDataset,
    SortDataset,
    format_examples,
    greedy_answers,
    task_accuracy,
)


@pytest.fixture(scope="module")
def sort_sets():
    return SortDataset("train", size=2000), SortDataset("test", size=500)


@pytest.fixture(scope="module")
def add_sets():
    return AdditionDataset("train"), AdditionDataset("test")


# --- SortDataset ----------------------------------------------------------------------------


def test_sort_format(sort_sets):
    train, _ = sort_sets
    assert train.vocab_size == 3 and train.block_size == 11
    for i in range(0, len(train), 97):
        x, y = train[i]
        assert x.shape == (11,) and y.shape == (11,)
        seq = train.sequence(i)
        assert seq[6:] == sorted(seq[:6])
        assert x.tolist() == seq[:-1]
        assert y[:5].tolist() == [IGNORE_INDEX] * 5
        assert y[5:].tolist() == sorted(seq[:6])
        assert train.is_correct(seq)
    assert not train.is_correct([2, 1, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0])
    assert train.format([2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]) == "2 1 0 0 0 0 -> 0 0 0 0 1 2"


def test_sort_train_and_test_are_disjoint_and_deterministic(sort_sets):
    train, test = sort_sets
    train_rows = {tuple(r) for r in train.inputs.tolist()}
    test_rows = {tuple(r) for r in test.inputs.tolist()}
    assert train_rows and test_rows
    assert not train_rows & test_rows
    assert torch.equal(SortDataset("test", size=500).inputs, test.inputs)
    assert not torch.equal(SortDataset("test", size=500, seed=1).inputs, test.inputs)


def test_sort_favours_repeated_digits_like_mingpt():
    ds = SortDataset("train", length=6, num_digits=10, size=2000)
    n_unique = torch.tensor([len(set(r)) for r in ds.inputs.tolist()])
    # Uniform lists of 6 digits from 10 have <= 3 distinct digits 6.76% of the time (67,600 of 10**6);
    # redrawing half of the others makes that 0.0676 / (0.0676 + 0.5 * 0.9324) = 12.7%.
    share = (n_unique <= 3).float().mean().item()
    assert 0.10 < share < 0.16
    assert int(ds.inputs.max()) == 9 and int(ds.inputs.min()) == 0


def test_sort_errors():
    with pytest.raises(ValueError, match="split"):
        SortDataset("val")
    with pytest.raises(ValueError, match="num_digits"):
        SortDataset("train", num_digits=0)
    with pytest.raises(ValueError, match="too few distinct lists"):
        SortDataset("test", length=1, num_digits=1, size=10)


# --- AdditionDataset ------------------------------------------------------------------------


def test_addition_format(add_sets):
    train, _ = add_sets
    assert train.vocab_size == 10 and train.block_size == 6
    for i in range(0, len(train), 101):
        a, b = train.operands(i)
        seq = train.sequence(i)
        assert len(seq) == 7
        assert int("".join(map(str, seq[:2]))) == a and int("".join(map(str, seq[2:4]))) == b
        assert int("".join(map(str, seq[4:]))[::-1]) == a + b
        assert train.is_correct(seq)
        assert train.format(seq) == f"{a}+{b}={a + b}"
        x, y = train[i]
        assert x.tolist() == seq[:-1]
        assert y.tolist() == [IGNORE_INDEX] * 3 + seq[4:]
    assert train.format([4, 7, 8, 5, 2, 3, 1]) == "47+85=132"
    assert not train.is_correct([4, 7, 8, 5, 2, 3, 0])
    with pytest.raises(ValueError, match="7 digits"):
        train.is_correct([4, 7, 8])


def test_addition_splits(add_sets):
    train, test = add_sets
    assert len(test) == 500 and len(train) == 9500
    assert not set(train.problems.tolist()) & set(test.problems.tolist())
    assert set(train.problems.tolist()) | set(test.problems.tolist()) == set(range(10_000))
    assert torch.equal(AdditionDataset("test").problems, test.problems)
    assert len(AdditionDataset("test", ndigit=1)) == 20


def test_addition_errors():
    with pytest.raises(ValueError, match="ndigit <= 3"):
        AdditionDataset("train", ndigit=4)
    with pytest.raises(ValueError, match="split"):
        AdditionDataset("validation")


# --- showing and scoring --------------------------------------------------------------------


class Oracle(torch.nn.Module):
    """A 'model' that puts all its logit mass on a task's right next token; (logits, loss) like GPT."""

    def __init__(self, task, wrong: bool = False):
        super().__init__()
        self.task, self.wrong = task, wrong
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.seen_training: list[bool] = []

    def forward(self, idx):
        self.seen_training.append(self.training)
        B, T = idx.shape
        logits = torch.zeros(B, T, self.task.vocab_size)
        P = self.task.prompt_length
        for b in range(B):
            prompt = idx[b, :P].tolist()
            if isinstance(self.task, SortDataset):
                full = prompt + sorted(prompt)
            else:
                nd = self.task.ndigit
                x, y = int("".join(map(str, prompt[:nd]))), int("".join(map(str, prompt[nd:])))
                full = prompt + [int(ch) for ch in f"{x + y:0{nd + 1}d}"[::-1]]
            nxt = full[T] if not self.wrong else 0
            logits[b, -1, nxt] = 1.0
        return logits, None


def test_greedy_answers_and_accuracy(sort_sets, add_sets):
    for task in (sort_sets[1], add_sets[1]):
        oracle = Oracle(task)
        assert task_accuracy(task, oracle, max_examples=60, batch_size=25) == 1.0
        prompts = torch.tensor([task.sequence(i)[: task.prompt_length] for i in range(3)])
        answers = greedy_answers(oracle, prompts, task.answer_length)
        assert answers.shape == (3, task.answer_length)
    sort_test = sort_sets[1]
    always_zero = Oracle(sort_test, wrong=True)
    expected = sum(sort_test.sequence(i)[6:] == [0] * 6 for i in range(100)) / 100
    assert task_accuracy(sort_test, always_zero, max_examples=100) == expected


def test_greedy_uses_eval_mode_and_restores_it(sort_sets):
    oracle = Oracle(sort_sets[0])
    oracle.train()
    task_accuracy(sort_sets[0], oracle, max_examples=4)
    assert oracle.seen_training and not any(oracle.seen_training)
    assert oracle.training


def test_format_examples(sort_sets, add_sets):
    assert format_examples(add_sets[0], n=2) == [
        add_sets[0].format(add_sets[0].sequence(i)) for i in range(2)
    ]
    ok = format_examples(sort_sets[1], n=3, model=Oracle(sort_sets[1]))
    assert len(ok) == 3 and all(line.endswith("ok") for line in ok)
    bad = format_examples(add_sets[1], n=2, model=Oracle(add_sets[1], wrong=True), start=5)
    assert all(
        "wrong (expected " + add_sets[1].format(add_sets[1].sequence(5 + i)) in line
        for i, line in enumerate(bad)
    )
    ds = CharDataset("hello world", block_size=4)
    assert format_examples(ds, n=1) == ["'hell' -> 'ello'"]


def test_format_examples_with_a_char_model():
    ds = CharDataset("hello world", block_size=4)

    def copy_model(idx):  # predicts each input character again
        return torch.nn.functional.one_hot(idx, ds.vocab_size).float()

    assert format_examples(ds, n=1, model=copy_model) == ["'hell' -> 'ello'  model: 'hell'"]
