"""Lesson 00's checks: correct tokenizers, batchers and entropies pass; each classic mistake gets its diagnosis."""

from __future__ import annotations

import math
import random

import pytest
import torch

from gptlib.checks import CheckFailure, NotDoneYet
from gptlib.checks.tokens_and_batches import check_char_tokenizer, check_get_batch, check_unigram_entropy
from gptlib.data import get_batch as gptlib_get_batch
from gptlib.tokenizer import CharTokenizer as GptlibTokenizer

# --- char_tokenizer ---------------------------------------------------------------------------


class DictTokenizer:
    def __init__(self, text):
        self.chars = sorted(set(text))
        self.vocab_size = len(self.chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.itos = {i: c for i, c in enumerate(self.chars)}

    def encode(self, s):
        unknown = [c for c in s if c not in self.stoi]
        if unknown:
            raise ValueError(f"not in the vocabulary: {unknown}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.itos[int(i)] for i in ids)


class ListTokenizer:
    """itos as a list, a tensor from encode, KeyError turned into ValueError."""

    def __init__(self, text):
        self.itos = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    def encode(self, s):
        try:
            return torch.tensor([self.stoi[c] for c in s], dtype=torch.long)
        except KeyError as e:
            raise ValueError(f"unknown character {e.args[0]!r}") from None

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


class PropertyTokenizer:
    """vocab_size as a property; an error subclass of ValueError; decode takes any iterable."""

    class Unknown(ValueError):
        pass

    def __init__(self, text):
        self._chars = "".join(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self._chars)

    def encode(self, s):
        bad = {c for c in s if c not in self._chars}
        if bad:
            raise self.Unknown(f"unknown: {sorted(bad)}")
        return [self._chars.index(c) for c in s]

    def decode(self, ids):
        return "".join(map(self._chars.__getitem__, ids))


def wrapped_gptlib(text):
    """Not a class: used to prove a function is refused with a clear message."""
    return GptlibTokenizer.from_text(text)


class GptlibSubclass(GptlibTokenizer):
    def __init__(self, text):
        super().__init__(sorted(set(text)))


@pytest.mark.parametrize("cls", [DictTokenizer, ListTokenizer, PropertyTokenizer, GptlibSubclass])
def test_correct_tokenizers_pass(cls, capsys):
    threads = torch.get_num_threads()
    check_char_tokenizer(cls)
    assert torch.get_num_threads() == threads
    assert "passed" in capsys.readouterr().out


class Stub:
    def __init__(self, text):
        raise NotImplementedError()

    def encode(self, s):
        raise NotImplementedError()

    def decode(self, ids):
        raise NotImplementedError()


class StubbedEncode(DictTokenizer):
    def encode(self, s):
        raise NotImplementedError()


class FirstSeen(DictTokenizer):
    def __init__(self, text):
        super().__init__(text)
        self.chars = list(dict.fromkeys(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.itos = {i: c for i, c in enumerate(self.chars)}


class FromOne(DictTokenizer):
    def __init__(self, text):
        super().__init__(text)
        self.stoi = {c: i + 1 for i, c in enumerate(self.chars)}
        self.itos = {i + 1: c for i, c in enumerate(self.chars)}


class CountsAll(DictTokenizer):
    def __init__(self, text):
        super().__init__(text)
        self.vocab_size = len(text)


class NoVocabSize(DictTokenizer):
    def __init__(self, text):
        super().__init__(text)
        del self.vocab_size


class DecodeList(DictTokenizer):
    def decode(self, ids):
        return [self.itos[i] for i in ids]


class DecodeWrong(DictTokenizer):
    def decode(self, ids):
        return "".join(self.chars[i - 1] for i in ids)


class EncodeStr(DictTokenizer):
    def encode(self, s):
        return "".join(str(self.stoi[c]) for c in s)


class Silent(DictTokenizer):
    def encode(self, s):
        return [self.stoi[c] for c in s if c in self.stoi]


class RawKeyError(DictTokenizer):
    def encode(self, s):
        return [self.stoi[c] for c in s]


class Unnamed(DictTokenizer):
    def encode(self, s):
        if any(c not in self.stoi for c in s):
            raise ValueError("bad input")
        return [self.stoi[c] for c in s]


class WrongErrorType(DictTokenizer):
    def encode(self, s):
        if any(c not in self.stoi for c in s):
            raise TypeError("unknown characters")
        return [self.stoi[c] for c in s]


class HardCoded(DictTokenizer):
    def __init__(self, text):
        super().__init__(
            "The quick brown fox (42) jumps over the lazy dog!\nHello, world: def f(x): return x * 2"
        )


@pytest.mark.parametrize(
    "cls, diagnosis",
    [
        (FirstSeen, "not-sorted"),
        (FromOne, "ids-from-one"),
        (CountsAll, "vocab-size-wrong"),
        (NoVocabSize, "no-vocab-size"),
        (DecodeList, "decode-not-str"),
        (DecodeWrong, "decode-wrong"),
        (EncodeStr, "encode-not-ids"),
        (Silent, "unknown-silent"),
        (RawKeyError, "unknown-keyerror"),
        (Unnamed, "unknown-unnamed"),
        (WrongErrorType, "unknown-wrong-error"),
        (HardCoded, "vocab-size-wrong"),
        (wrapped_gptlib, "not-a-class"),
        (DictTokenizer("abc"), "instance-not-class"),
    ],
)
def test_tokenizer_mistakes_are_diagnosed(cls, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_char_tokenizer(cls)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)
    assert 'show_hints("char_tokenizer")' in str(excinfo.value)


def test_set_order_is_called_not_sorted():
    class SetOrder(DictTokenizer):
        def __init__(self, text):
            super().__init__(text)
            chars = sorted(set(text))
            self.chars = chars[1::2] + chars[::2]  # a fixed but unsorted order
            self.stoi = {c: i for i, c in enumerate(self.chars)}
            self.itos = {i: c for i, c in enumerate(self.chars)}

    with pytest.raises(CheckFailure) as excinfo:
        check_char_tokenizer(SetOrder)
    assert excinfo.value.diagnosis == "not-sorted"
    assert "no sorted order" in str(excinfo.value)


@pytest.mark.parametrize("cls", [Stub, StubbedEncode])
def test_stubbed_tokenizer_is_not_done_yet(cls):
    with pytest.raises(NotDoneYet):
        check_char_tokenizer(cls)


# --- get_batch --------------------------------------------------------------------------------


def batch_stack(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


def batch_index(data, block_size, batch_size, generator=None):
    starts = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)
    pos = starts[:, None] + torch.arange(block_size)
    return data[pos], data[pos + 1]


def batch_unfold(data, block_size, batch_size, generator):
    windows = data.unfold(0, block_size + 1, 1)  # (N - T, T + 1)
    ix = torch.randint(windows.shape[0], (batch_size,), generator=generator)
    chunk = windows[ix]
    return chunk[:, :-1], chunk[:, 1:]


def batch_list(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator).tolist()
    return [
        torch.stack([data[i : i + block_size] for i in ix]),
        torch.stack([data[i + 1 : i + block_size + 1] for i in ix]),
    ]


@pytest.mark.parametrize("fn", [batch_stack, batch_index, batch_unfold, batch_list, gptlib_get_batch])
def test_correct_batchers_pass(fn, capsys):
    state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    check_get_batch(fn)
    assert torch.get_num_threads() == threads
    assert "passed" in capsys.readouterr().out
    assert torch.equal(torch.random.get_rng_state(), state), "the check must leave the global RNG alone"


def batch_stub(data, block_size, batch_size, generator):
    raise NotImplementedError()


def batch_transposed(data, block_size, batch_size, generator):
    x, y = batch_stack(data, block_size, batch_size, generator)
    return x.T, y.T


def batch_float(data, block_size, batch_size, generator):
    x, y = batch_stack(data, block_size, batch_size, generator)
    return x.float(), y.float()


def batch_not_shifted(data, block_size, batch_size, generator):
    x, _ = batch_stack(data, block_size, batch_size, generator)
    return x, x.clone()


def batch_wrong_way(data, block_size, batch_size, generator):
    ix = torch.randint(1, len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i - 1 : i - 1 + block_size] for i in ix])
    return x, y


def batch_two_starts(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    iy = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in iy])
    return x, y


def batch_random_tokens(data, block_size, batch_size, generator):
    x = data[torch.randint(len(data), (batch_size, block_size), generator=generator)]
    return x, torch.roll(x, -1, dims=1)


def batch_one_start(data, block_size, batch_size, generator):
    i = int(torch.randint(len(data) - block_size, (1,), generator=generator))
    x = data[i : i + block_size].repeat(batch_size, 1)
    y = data[i + 1 : i + 1 + block_size].repeat(batch_size, 1)
    return x, y


def batch_global_rng(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,))
    return batch_index_at(data, block_size, ix)


def batch_python_random(data, block_size, batch_size, generator):
    ix = torch.tensor([random.randrange(len(data) - block_size) for _ in range(batch_size)])
    return batch_index_at(data, block_size, ix)


def batch_reseeds(data, block_size, batch_size, generator):
    generator.manual_seed(0)
    return batch_stack(data, block_size, batch_size, generator)


def batch_past_end(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


def batch_past_end_indexing(data, block_size, batch_size, generator):
    starts = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    pos = starts[:, None] + torch.arange(block_size)
    return data[pos], data[pos + 1]


def batch_minus_one(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    return batch_index_at(data, block_size, ix)


def batch_from_one(data, block_size, batch_size, generator):
    ix = torch.randint(1, len(data) - block_size, (batch_size,), generator=generator)
    return batch_index_at(data, block_size, ix)


def batch_in_place(data, block_size, batch_size, generator):
    x, y = batch_index(data, block_size, batch_size, generator)
    data[:1] = 0
    return x, y


def batch_only_x(data, block_size, batch_size, generator):
    return batch_stack(data, block_size, batch_size, generator)[0]


def batch_index_at(data, block_size, ix):
    pos = ix[:, None] + torch.arange(block_size)
    return data[pos], data[pos + 1]


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (batch_transposed, "transposed"),
        (batch_float, "wrong-dtype"),
        (batch_not_shifted, "y-not-shifted"),
        (batch_wrong_way, "shifted-wrong-way"),
        (batch_two_starts, "separate-starts"),
        (batch_random_tokens, "not-a-slice"),
        (batch_one_start, "same-window"),
        (batch_global_rng, "generator-ignored"),
        (batch_python_random, "generator-ignored"),
        (batch_reseeds, "reseeds-generator"),
        (batch_past_end, "past-end"),
        (batch_past_end_indexing, "past-end"),
        (batch_minus_one, "never-last-window"),
        (batch_from_one, "never-first-window"),
        (batch_in_place, "in-place"),
        (batch_only_x, "not-a-pair"),
    ],
)
def test_batch_mistakes_are_diagnosed(fn, diagnosis):
    state = torch.random.get_rng_state()
    with pytest.raises(CheckFailure) as excinfo:
        check_get_batch(fn)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_stubbed_batch_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_get_batch(batch_stub)


# --- unigram_entropy --------------------------------------------------------------------------


def entropy_bincount(data, vocab_size):
    counts = torch.bincount(data, minlength=vocab_size).double()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def entropy_xlogy(data, vocab_size):
    p = torch.bincount(data, minlength=vocab_size).float() / len(data)
    return -torch.special.xlogy(p, p).sum()  # a 0-d tensor


def entropy_python(data, vocab_size):
    n = len(data)
    counts = {}
    for t in data.tolist():
        counts[t] = counts.get(t, 0) + 1
    return -sum(c / n * math.log(c / n) for c in counts.values())


@pytest.mark.parametrize("fn", [entropy_bincount, entropy_xlogy, entropy_python])
def test_correct_entropies_pass(fn, capsys):
    threads = torch.get_num_threads()
    check_unigram_entropy(fn)
    assert torch.get_num_threads() == threads
    assert "passed" in capsys.readouterr().out


def entropy_nan(data, vocab_size):
    p = torch.bincount(data, minlength=vocab_size).double() / len(data)
    return float(-(p * p.log()).sum())


def entropy_log2(data, vocab_size):
    p = torch.bincount(data).double() / len(data)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def entropy_no_minus(data, vocab_size):
    return -entropy_bincount(data, vocab_size)


def entropy_uniform(data, vocab_size):
    return math.log(vocab_size)


def entropy_counts(data, vocab_size):
    c = torch.bincount(data).double()
    c = c[c > 0]
    return float(-(c * c.log()).sum())


def entropy_vector(data, vocab_size):
    p = torch.bincount(data).double() / len(data)
    p = p[p > 0]
    return -(p * p.log())


def entropy_stub(data, vocab_size):
    raise NotImplementedError()


def entropy_none(data, vocab_size):
    entropy_bincount(data, vocab_size)


def entropy_sorts_in_place(data, vocab_size):
    data.copy_(data.sort().values)
    return entropy_bincount(data, vocab_size)


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (entropy_nan, "nan"),
        (entropy_log2, "log2"),
        (entropy_no_minus, "sign"),
        (entropy_uniform, "uniform"),
        (entropy_counts, "counts-not-probs"),
        (entropy_vector, "not-a-number"),
        (entropy_none, "returned-none"),
        (entropy_sorts_in_place, "in-place"),
    ],
)
def test_entropy_mistakes_are_diagnosed(fn, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_unigram_entropy(fn)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_stubbed_entropy_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_unigram_entropy(entropy_stub)


def test_diagnosis_hint_is_in_the_message():
    with pytest.raises(CheckFailure) as excinfo:
        check_unigram_entropy(entropy_log2)
    assert "natural log" in str(excinfo.value)
