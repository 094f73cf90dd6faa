"""Lesson 00, tokens and batches: CharTokenizer (0.1), get_batch (0.2), unigram_entropy (0.3)."""

import collections
import math
import random

import torch

from tests.variants import Lesson

V = Lesson()

# ---------------------------------------------------------------- 0.1 CharTokenizer


@V.correct("0.1", "dicts")
class TokDicts:
    def __init__(self, text):
        self.chars = sorted(set(text))
        self.vocab_size = len(self.chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.itos = {i: c for i, c in enumerate(self.chars)}

    def encode(self, s):
        for c in s:
            if c not in self.stoi:
                raise ValueError(f"unknown character {c!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.itos[int(i)] for i in ids)


@V.correct("0.1", "itos-list-and-keyerror")
class TokList:
    def __init__(self, text):
        self.itos = sorted(set(text))  # a list is a fine id -> char lookup
        self.stoi = dict(zip(self.itos, range(len(self.itos)), strict=True))
        self.vocab_size = len(self.itos)

    def encode(self, s):
        try:
            return [self.stoi[c] for c in s]
        except KeyError as e:
            raise ValueError(f"{e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids):
        return "".join([self.itos[i] for i in ids])


@V.correct("0.1", "str-index")
class TokIndex:
    def __init__(self, text):
        self.vocab = "".join(sorted(set(text)))
        self.vocab_size = len(self.vocab)
        self.stoi = {c: self.vocab.index(c) for c in self.vocab}
        self.itos = dict(enumerate(self.vocab))

    def encode(self, s):
        missing = [c for c in s if c not in self.stoi]
        if missing:
            raise ValueError("cannot encode " + ", ".join(repr(c) for c in missing))
        return list(map(self.stoi.__getitem__, s))

    def decode(self, ids):
        out = ""
        for i in ids:
            out += self.itos[int(i)]
        return out


@V.correct("0.1", "property-vocab-size")
class TokProperty:
    def __init__(self, text):
        chars = sorted(list(set(text)))
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.itos = {i: ch for ch, i in self.stoi.items()}

    @property
    def vocab_size(self):
        return len(self.stoi)

    def encode(self, s):
        ids = []
        for ch in s:
            if ch not in self.stoi:
                raise ValueError(f"character {ch!r} not in vocabulary")
            ids.append(self.stoi[ch])
        return ids

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


@V.mistake(
    "0.1",
    "unsorted-vocabulary",
    ["sort"],
    "Your ids depend on the order of set(), which changes from run to run: sort the characters.",
)
class TokUnsorted:
    def __init__(self, text):
        chars = list(set(text))
        self.vocab_size = len(chars)
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.itos = {i: c for i, c in enumerate(chars)}

    def encode(self, s):
        if any(c not in self.stoi for c in s):
            raise ValueError(f"unknown characters in {s!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


@V.mistake(
    "0.1",
    "first-appearance-order",
    ["sort", "first appear"],
    "Ids follow the order in which characters first appear in the text; they must follow sorted order.",
)
class TokFirstSeen:
    def __init__(self, text):
        chars = list(dict.fromkeys(text))
        self.vocab_size = len(chars)
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.itos = {i: c for i, c in enumerate(chars)}

    def encode(self, s):
        for c in s:
            if c not in self.stoi:
                raise ValueError(f"unknown character {c!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


class _TokBase:
    def __init__(self, text):
        self.chars = sorted(set(text))
        self.vocab_size = len(self.chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.itos = {i: c for i, c in enumerate(self.chars)}

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


@V.mistake(
    "0.1",
    "unknown-skipped",
    ["silent", "vanish", "skip", "dropped", "left out", "ValueError"],
    "An unknown character silently disappears from encode's output: raise a ValueError that names it.",
)
class TokSkipsUnknown(_TokBase):
    def encode(self, s):
        return [self.stoi[c] for c in s if c in self.stoi]


@V.mistake(
    "0.1",
    "unknown-keyerror",
    ["KeyError", "ValueError"],
    "An unknown character raises a bare KeyError; the exercise asks for a ValueError that names it.",
)
class TokKeyError(_TokBase):
    def encode(self, s):
        return [self.stoi[c] for c in s]


@V.mistake(
    "0.1",
    "unknown-not-named",
    ["name", "which character"],
    "The ValueError does not say which character is unknown: put it in the message.",
)
class TokErrorUnnamed(_TokBase):
    def encode(self, s):
        if any(c not in self.stoi for c in s):
            raise ValueError("the text holds a character that is not in the vocabulary")
        return [self.stoi[c] for c in s]


@V.mistake(
    "0.1",
    "unknown-mapped-to-0",
    ["unknown", "ValueError", "silent"],
    "An unknown character becomes id 0 (a real character): raise a ValueError instead of guessing.",
)
class TokUnknownZero(_TokBase):
    def encode(self, s):
        return [self.stoi.get(c, 0) for c in s]


@V.mistake(
    "0.1",
    "ids-start-at-1",
    ["start at 0", "from 0", "0..", "start at 1", "starts at 1", "off by one", "shifted by one"],
    "Your ids run from 1 to vocab_size; they must run from 0 to vocab_size - 1 (enumerate starts at 0).",
)
class TokFromOne:
    def __init__(self, text):
        chars = sorted(set(text))
        self.vocab_size = len(chars)
        self.stoi = {c: i for i, c in enumerate(chars, start=1)}
        self.itos = {i: c for c, i in self.stoi.items()}

    def encode(self, s):
        for c in s:
            if c not in self.stoi:
                raise ValueError(f"unknown character {c!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


@V.mistake(
    "0.1",
    "vocab-size-of-text",
    ["vocab_size"],
    "vocab_size is the number of distinct characters, not the length of the text.",
)
class TokVocabLen(_TokBase):
    def __init__(self, text):
        super().__init__(text)
        self.vocab_size = len(text)

    def encode(self, s):
        for c in s:
            if c not in self.stoi:
                raise ValueError(f"unknown character {c!r}")
        return [self.stoi[c] for c in s]


@V.mistake(
    "0.1",
    "duplicates-kept",
    ["distinct", "duplicate", "set(", "unique", "repeated"],
    "sorted(text) keeps every repeated character: take the distinct characters, sorted(set(text)).",
)
class TokNoSet:
    def __init__(self, text):
        self.chars = sorted(text)
        self.vocab_size = len(self.chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.itos = {i: c for i, c in enumerate(self.chars)}

    def encode(self, s):
        for c in s:
            if c not in self.stoi:
                raise ValueError(f"unknown character {c!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


@V.mistake(
    "0.1",
    "decode-returns-list",
    ["str", "string", "join", "list"],
    "decode returns a list of characters; join them into one string.",
)
class TokDecodeList(_TokBase):
    def encode(self, s):
        for c in s:
            if c not in self.stoi:
                raise ValueError(f"unknown character {c!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return [self.itos[i] for i in ids]


@V.mistake(
    "0.1",
    "decode-joins-with-space",
    ["space", "separator", "''.join", '"".join'],
    "decode puts a space between the characters: join with the empty string.",
)
class TokDecodeSpace(_TokBase):
    def encode(self, s):
        for c in s:
            if c not in self.stoi:
                raise ValueError(f"unknown character {c!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return " ".join(self.itos[i] for i in ids)


@V.mistake(
    "0.1",
    "encode-returns-none",
    ["None", "return"],
    "encode builds the list but never returns it.",
)
class TokEncodeNoReturn(_TokBase):
    def encode(self, s):
        ids = []
        for c in s:
            if c not in self.stoi:
                raise ValueError(f"unknown character {c!r}")
            ids.append(self.stoi[c])


# ---------------------------------------------------------------- 0.2 get_batch


@V.correct("0.2", "index-arithmetic")
def batch_index_arithmetic(data, block_size, batch_size, generator):
    ix = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[ix[:, None] + offsets]  # (B, T) by broadcasting
    y = data[ix[:, None] + offsets + 1]
    return x, y


@V.correct("0.2", "unfold-windows")
def batch_unfold(data, block_size, batch_size, generator):
    windows = data.unfold(0, block_size + 1, 1)  # every window of block_size + 1 tokens
    ix = torch.randint(windows.size(0), (batch_size,), generator=generator)
    w = windows[ix]
    return w[:, :-1], w[:, 1:]


@V.correct("0.2", "python-loop")
def batch_loop(data, block_size, batch_size, generator):
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator).tolist()
    xs, ys = [], []
    for i in starts:
        chunk = data[i : i + block_size + 1]
        xs.append(chunk[:-1])
        ys.append(chunk[1:])
    return torch.stack(xs), torch.stack(ys)


@V.correct("0.2", "tuple-comprehension")
def batch_tuple(data, block_size, batch_size, generator):
    n = data.size(0)
    ix = torch.randint(high=n - block_size, size=(batch_size,), generator=generator)
    x = torch.stack(tuple(data[i : i + block_size] for i in ix))
    y = torch.stack(tuple(data[i + 1 : i + block_size + 1] for i in ix))
    return (x, y)


@V.mistake(
    "0.2",
    "last-start-never-drawn",
    ["last"],
    "randint's upper bound is exclusive: with len(data) - block_size - 1 the last window is never drawn.",
)
def batch_last_missing(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "start-past-the-end",
    ["end", "room", "out of range", "too far", "past", "short", "block_size + 1"],
    "Starts go up to len(data) - block_size, so the last y window runs off the end of data.",
)
def batch_past_end(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "y-not-shifted",
    ["shift"],
    "y is the same window as x; it must be shifted one token to the left (data[i + 1 : i + 1 + block_size]).",
)
def batch_not_shifted(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i : i + block_size] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "y-shifted-by-two",
    [("shift", "2"), ("shift", "two"), ("one", "further")],
    "y is shifted by two tokens; the next token is one further on.",
)
def batch_shift_two(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 2 : i + block_size + 2] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "x-y-swapped",
    ["swap", "other way", "reversed", "before"],
    "You return (y, x): x is the window, y the window one token further on.",
)
def batch_swapped(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return y, x


@V.mistake(
    "0.2",
    "generator-ignored",
    ["generator"],
    "torch.randint without generator= draws from the global random state: pass the generator.",
)
def batch_no_generator(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "python-random",
    ["generator"],
    "Python's random module ignores the generator you were given: draw with torch.randint(..., generator=...).",
)
def batch_python_random(data, block_size, batch_size, generator):
    ix = [random.randint(0, len(data) - block_size - 1) for _ in range(batch_size)]
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "own-generator",
    ["generator", "same batch", "same windows", "every call"],
    "A new generator seeded inside the function gives the same batch at every call: use the one passed in.",
)
def batch_own_generator(data, block_size, batch_size, generator):
    g = torch.Generator().manual_seed(1337)
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=g)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "sizes-swapped",
    ["batch_size", "shape"],
    "You draw block_size windows of batch_size tokens: the batch is (batch_size, block_size).",
)
def batch_sizes_swapped(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - batch_size, (block_size,), generator=generator)
    x = torch.stack([data[i : i + batch_size] for i in ix])
    y = torch.stack([data[i + 1 : i + batch_size + 1] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "float-dtype",
    ["dtype", "long", "float"],
    "The batch is float; token ids must stay torch.long (an embedding is indexed with them).",
)
def batch_float(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix]).float()
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix]).float()
    return x, y


@V.mistake(
    "0.2",
    "stacked-pair",
    ["tuple", "pair", "two tensors", "(x, y)", "x, y"],
    "You return one (2, B, T) tensor; return the pair x, y.",
)
def batch_stacked(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return torch.stack((x, y))


@V.mistake(
    "0.2",
    "not-random",
    ["random", "same windows", "every call", "consecutive"],
    "The windows are fixed (consecutive chunks from the start): draw random starts.",
)
def batch_fixed(data, block_size, batch_size, generator):
    ix = torch.arange(batch_size) * block_size
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "x-too-long",
    ["shape", "length", "block_size + 1"],
    "x holds block_size + 1 tokens: x is data[i : i + block_size].",
)
def batch_x_long(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size + 1] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 2] for i in ix])
    return x, y


@V.mistake(
    "0.2",
    "one-start-for-all-rows",
    ["same start", "same window", "every row", "identical", "one start", "rows"],
    "You draw one start and repeat its window batch_size times: draw batch_size starts.",
)
def batch_one_start(data, block_size, batch_size, generator):
    i = int(torch.randint(len(data) - block_size, (1,), generator=generator))
    x = data[i : i + block_size].repeat(batch_size, 1)
    y = data[i + 1 : i + block_size + 1].repeat(batch_size, 1)
    return x, y


# ---------------------------------------------------------------- 0.3 unigram_entropy


@V.correct("0.3", "torch-where")
def entropy_where(data, vocab_size):
    counts = torch.bincount(data, minlength=vocab_size).double()
    p = counts / counts.sum()
    terms = torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))
    return -terms.sum().item()


@V.correct("0.3", "counter-and-math")
def entropy_counter(data, vocab_size):
    counts = collections.Counter(data.tolist())
    n = len(data)
    return -sum(c / n * math.log(c / n) for c in counts.values())


@V.correct("0.3", "xlogy")
def entropy_xlogy(data, vocab_size):
    p = torch.bincount(data, minlength=vocab_size).float()
    p = p / p.sum()
    return float(-torch.xlogy(p, p).sum())


@V.correct("0.3", "unique-counts-log-inverse")
def entropy_unique(data, vocab_size):
    _, counts = torch.unique(data, return_counts=True)
    p = counts.double() / len(data)
    return float((p * torch.log(1 / p)).sum())


def _probs(data, vocab_size):
    counts = torch.bincount(data, minlength=vocab_size).double()
    return counts / counts.sum()


@V.mistake(
    "0.3",
    "log-base-2",
    ["log2", "base 2", "bits", "ln 2", "log base"],
    "log2 gives bits; the loss is in nats: use the natural log.",
)
def entropy_log2(data, vocab_size):
    p = _probs(data, vocab_size)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


@V.mistake(
    "0.3",
    "sign-missing",
    ["sign", "negative", "minus"],
    "sum(p ln p) is negative: the entropy is minus that.",
)
def entropy_no_sign(data, vocab_size):
    p = _probs(data, vocab_size)
    p = p[p > 0]
    return float((p * p.log()).sum())


@V.mistake(
    "0.3",
    "counts-not-normalised",
    ["probabilit", "normalis", "normaliz", "counts", "divide by the total"],
    "You use the raw counts: divide them by the total to get probabilities first.",
)
def entropy_counts(data, vocab_size):
    c = torch.bincount(data, minlength=vocab_size).double()
    c = c[c > 0]
    return float(-(c * c.log()).sum())


@V.mistake(
    "0.3",
    "nan-from-zero-log-zero",
    ["nan", "0 · log 0", "0 * log 0", "0 log 0", "never occur"],
    "An id that never occurs gives 0 * log 0 = nan: leave those ids out.",
)
def entropy_nan(data, vocab_size):
    p = _probs(data, vocab_size)
    return float(-(p * p.log()).sum())


@V.mistake(
    "0.3",
    "divided-by-vocab-size",
    ["vocab_size", "total", "number of tokens", "sum to 1", "sums to"],
    "The probabilities are counts / len(data), not counts / vocab_size.",
)
def entropy_by_vocab(data, vocab_size):
    p = torch.bincount(data, minlength=vocab_size).double() / vocab_size
    p = p[p > 0]
    return float(-(p * p.log()).sum())


@V.mistake(
    "0.3",
    "mean-instead-of-sum",
    ["mean"],
    "The entropy sums -p ln p over the ids; you take the mean.",
)
def entropy_mean(data, vocab_size):
    p = _probs(data, vocab_size)
    p = p[p > 0]
    return float(-(p * p.log()).mean())


@V.mistake(
    "0.3",
    "uniform-entropy",
    ["uniform", "ln(vocab_size)", "log(vocab_size)", "frequenc"],
    "ln(vocab_size) is the blind guess; the exercise asks for the entropy of the actual frequencies.",
)
def entropy_uniform(data, vocab_size):
    return math.log(vocab_size)


@V.mistake(
    "0.3",
    "integer-division",
    ["integer", "//", "division"],
    "counts // total is integer division: every probability becomes 0. Divide as floats.",
)
def entropy_int_div(data, vocab_size):
    counts = torch.bincount(data, minlength=vocab_size)
    p = counts // counts.sum()
    p = p[p > 0].double()
    return float(-(p * p.log()).sum())


@V.mistake(
    "0.3",
    "returns-none",
    ["None", "return"],
    "The function computes the entropy but does not return it.",
)
def entropy_no_return(data, vocab_size):
    p = _probs(data, vocab_size)
    p = p[p > 0]
    _ = float(-(p * p.log()).sum())


@V.mistake(
    "0.3",
    "log10",
    ["log10", "base 10", "log base", "natural log"],
    "log10 is the wrong base: the loss is in nats, the natural log.",
)
def entropy_log10(data, vocab_size):
    p = _probs(data, vocab_size)
    p = p[p > 0]
    return float(-(p * p.log10()).sum())
