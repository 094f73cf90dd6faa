"""Tests for gptlib.data: splits, batches, context/target pairs, CharDataset and the synthetic tasks."""

import pytest
import torch
from torch.utils.data import DataLoader

from gptlib.data import (
    IGNORE_INDEX,
    AdditionDataset,
    CharDataset,
    SortDataset,
    context_target_pairs,
    format_examples,
    get_batch,
    greedy_answers,
    task_accuracy,
    train_val_split,
)
from gptlib.tokenizer import CharTokenizer, UnknownCharacterError

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 4


@pytest.fixture(scope="module")
def sort_sets():
    return SortDataset("train", size=2000), SortDataset("test", size=500)


@pytest.fixture(scope="module")
def add_sets():
    return AdditionDataset("train"), AdditionDataset("test")


# --- train_val_split ------------------------------------------------------------------------


def test_split_is_contiguous_nanogpt_style():
    data = torch.arange(100)
    train, val = train_val_split(data)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))
    train, val = train_val_split(data, val_fraction=0.25, block_size=8)
    assert len(train) == 75 and len(val) == 25
    assert torch.equal(torch.cat([train, val]), data)


def test_split_errors_say_what_to_change():
    data = torch.arange(100)
    with pytest.raises(ValueError, match=r"validation part of 100 tokens would hold 10 tokens.*needs 17"):
        train_val_split(data, val_fraction=0.1, block_size=16)
    with pytest.raises(ValueError, match="training part"):
        train_val_split(data, val_fraction=0.95, block_size=8)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(data, val_fraction=0.0)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(data, val_fraction=1.0)
    with pytest.raises(ValueError, match="encode_tensor"):
        train_val_split(list(range(100)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        train_val_split(torch.zeros(10, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        train_val_split(torch.zeros(100))


# --- get_batch ------------------------------------------------------------------------------


def test_batch_shapes_and_shift():
    data = torch.arange(1000) * 3  # distinct values, so a window's position is recoverable
    x, y = get_batch(data, block_size=8, batch_size=5)
    assert x.shape == (5, 8) and y.shape == (5, 8)
    assert x.dtype == torch.long and y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    starts = x[:, 0] // 3
    for b in range(5):
        s = int(starts[b])
        assert torch.equal(x[b], data[s : s + 8]) and torch.equal(y[b], data[s + 1 : s + 9])
    assert x.is_contiguous() and y.is_contiguous()


def test_batch_reaches_both_ends_of_the_data():
    data = torch.arange(12)
    x, y = get_batch(data, block_size=10, batch_size=200, generator=torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == {0, 1}  # the only two windows
    assert int(y.max()) == 11


def test_batch_is_reproducible_with_a_seeded_generator():
    data = torch.randint(50, (5000,), generator=torch.Generator().manual_seed(1))
    a = get_batch(data, 16, 4, generator=torch.Generator().manual_seed(42))
    b = get_batch(data, 16, 4, generator=torch.Generator().manual_seed(42))
    c = get_batch(data, 16, 4, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_batch_accepts_narrow_integer_dtypes():
    data = torch.arange(100, dtype=torch.int16)
    x, y = get_batch(data, 4, 2)
    assert x.dtype == torch.long and y.dtype == torch.long


def test_batch_goes_to_the_requested_device():
    x, y = get_batch(torch.arange(100), 4, 2, device="meta")  # "meta": a device every machine has
    assert x.device.type == "meta" and y.device.type == "meta"


def test_batch_errors():
    data = torch.arange(8)
    with pytest.raises(ValueError, match=r"8 tokens.*block_size=8.*needs block_size \+ 1 = 9"):
        get_batch(data, 8, 2)
    get_batch(data, 7, 2)  # exactly one window fits
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        get_batch(data, 0, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        get_batch(data, 4, 2.0)  # type: ignore[arg-type]


# --- context_target_pairs -------------------------------------------------------------------


def test_every_context_length():
    ids = [18, 47, 56, 57, 58, 1, 15, 47, 58, 99]
    pairs = context_target_pairs(ids, block_size=8)
    assert len(pairs) == 8
    assert pairs[0] == ([18], 47)
    assert pairs[-1] == ([18, 47, 56, 57, 58, 1, 15, 47], 58)
    for t, (context, target) in enumerate(pairs):
        assert len(context) == t + 1 and context == ids[: t + 1] and target == ids[t + 1]


def test_pairs_match_a_batch_row():
    data = torch.arange(100) + 1000
    x, y = get_batch(data, 6, 1, generator=torch.Generator().manual_seed(0))
    window = torch.cat([x[0], y[0, -1:]])
    pairs = context_target_pairs(window, 6)
    assert [target for _, target in pairs] == y[0].tolist()
    assert [context[-1] for context, _ in pairs] == x[0].tolist()


def test_pairs_errors():
    with pytest.raises(ValueError, match=r"3 tokens.*block_size \+ 1 = 4"):
        context_target_pairs([1, 2, 3], 3)
    with pytest.raises(ValueError, match="block_size"):
        context_target_pairs([1, 2, 3], 0)


# --- CharDataset ----------------------------------------------------------------------------


def test_char_dataset_windows():
    ds = CharDataset(TEXT, block_size=8)
    tok = ds.tokenizer
    assert ds.vocab_size == tok.vocab_size == len(set(TEXT))
    assert ds.block_size == ds.get_block_size() == 8 and ds.get_vocab_size() == ds.vocab_size
    assert len(ds) == len(TEXT) - 8
    x, y = ds[3]
    assert x.shape == (8,) and y.shape == (8,) and x.dtype == torch.long
    assert tok.decode(x) == TEXT[3:11] and tok.decode(y) == TEXT[4:12]
    last_x, last_y = ds[-1]
    assert tok.decode(last_y)[-1] == TEXT[-1]
    assert torch.equal(last_x, ds[len(ds) - 1][0])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_char_dataset_items_do_not_share_storage():
    ds = CharDataset(TEXT, block_size=8)
    x, _ = ds[0]
    x.zero_()
    assert ds.tokenizer.decode(ds[0][0]) == TEXT[:8]


def test_char_dataset_with_a_dataloader():
    ds = CharDataset(TEXT, block_size=8)
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    x, y = next(iter(loader))
    assert x.shape == (4, 8) and y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_char_dataset_shared_tokenizer_and_errors():
    tok = CharTokenizer.from_text(TEXT)
    val = CharDataset("hear me speak", 4, tokenizer=tok)
    assert val.vocab_size == tok.vocab_size
    with pytest.raises(UnknownCharacterError):
        CharDataset("hear me, Zeus", 4, tokenizer=tok)
    with pytest.raises(ValueError, match="too short"):
        CharDataset("abc", 3)
    with pytest.raises(ValueError, match="empty"):
        CharDataset("", 3)


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
