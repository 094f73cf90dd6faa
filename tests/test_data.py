"""Tests for gptlib.data: splits, batches, context/target pairs and CharDataset."""

import pytest
import torch
from torch.utils.data import DataLoader

from gptlib.data import CharDataset, context_target_pairs, get_batch, train_val_split
from gptlib.tokenizer import CharTokenizer, UnknownCharacterError

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 4


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
