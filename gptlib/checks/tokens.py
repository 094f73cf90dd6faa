"""Checks for lesson 00 (tokens and batches): the character tokenizer, random batches, the unigram baseline.

Each check runs the learner's code on small inputs it builds itself, looks for
the usual mistakes first (ids in the wrong order, y not shifted, a generator
that is ignored, log base 2, ...) and only then compares with gptlib's
version (`gptlib.tokenizer.CharTokenizer`, `gptlib.data.get_batch`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch

from gptlib.checks.base import CheckFailure, NotDoneYet, call, expect_tensor, one_thread, passed
from gptlib.checks.hints import register_hints
from gptlib.tokenizer import CharTokenizer as _RefTokenizer

__all__ = ["check_char_tokenizer", "check_get_batch", "check_unigram_entropy"]

# --- char_tokenizer ---------------------------------------------------------------------------

_TOK = "char_tokenizer"
_TRAIN_TEXT = "The quick brown fox (42) jumps over the lazy dog!\nHello, world: def f(x): return x * 2"
_OTHER_TEXT = "banana split"
_UNKNOWN = "☃"

register_hints(
    _TOK,
    levels=[
        "The vocabulary is every distinct character of the text, sorted: `sorted(set(text))`. A character's "
        "id is its position in that list.",
        "Keep two lookups: `stoi` (string -> int) is a dict from character to id, `itos` (int -> string) "
        "maps an id back to its character. encode looks up every character of a string in stoi; decode "
        "looks up every id in itos and joins the characters into one string. For an unknown character, "
        "raise ValueError yourself with a message that names it.",
        "__init__(self, text):\n"
        "    self.chars = sorted(set(text))\n"
        "    self.vocab_size = len(self.chars)\n"
        "    self.stoi = {c: i for i, c in enumerate(self.chars)}\n"
        "    self.itos = {i: c for i, c in enumerate(self.chars)}\n"
        "encode(self, s):\n"
        "    unknown = [c for c in s if c not in self.stoi]\n"
        "    if unknown: raise ValueError(f'characters not in the vocabulary: {unknown}')\n"
        "    return [self.stoi[c] for c in s]\n"
        "decode(self, ids):\n"
        "    return ''.join(self.itos[int(i)] for i in ids)",
    ],
    diagnoses={
        "not-a-class": "define `class CharTokenizer:` with __init__(self, text), encode and decode.",
        "instance-not-class": "pass the class (`CharTokenizer`), not a tokenizer you made from it.",
        "no-vocab-size": "set `self.vocab_size = len(self.chars)` in __init__.",
        "vocab-size-wrong": "the vocabulary holds each distinct character once: `sorted(set(text))`.",
        "not-sorted": "build the vocabulary with `sorted(set(text))`: sorting fixes the order, so the same "
        "characters always get the same ids (a set has no fixed order, and first-appearance order changes "
        "with the text).",
        "ids-from-one": "`enumerate(chars)` starts at 0; ids must run from 0 to vocab_size - 1 because they "
        "index the rows of an embedding table.",
        "encode-not-ids": "encode returns a list of ints, one per character: `[self.stoi[c] for c in s]`.",
        "decode-not-str": "decode must give back one string: `''.join(self.itos[i] for i in ids)`.",
        "decode-wrong": "decode undoes encode: look every id up in itos (the list or dict from id to character).",
        "unknown-silent": "before encoding, look for characters that are not in stoi and `raise ValueError(...)` "
        "naming them; silently dropping or replacing them corrupts the data without anyone noticing.",
        "unknown-keyerror": "a bare KeyError from the dict does not say what to do. Check first and raise "
        "`ValueError(f'character {c!r} is not in the vocabulary')`.",
        "unknown-wrong-error": "raise `ValueError` for an unknown character.",
        "unknown-unnamed": "put the unknown character itself in the message, e.g. with `{c!r}`.",
    },
)


def _is_class(exercise: str, cls: Any, example: str) -> None:
    if isinstance(cls, type):
        return
    if hasattr(cls, "encode"):
        raise CheckFailure(
            exercise, "instance-not-class", f"pass the class itself, not an object made from it: {example}."
        )
    raise CheckFailure(exercise, "not-a-class", f"expected a class, got {cls!r:.80}.")


def _as_ids(what: str, out: Any) -> list[int]:
    """A learner's encode() result as a list of ints, or a CheckFailure saying what it was."""
    if isinstance(out, torch.Tensor):
        if out.dim() != 1 or out.is_floating_point():
            raise CheckFailure(
                _TOK,
                "encode-not-ids",
                f"{what} returned a tensor of shape {tuple(out.shape)} and dtype {out.dtype}; expected a "
                "list of int ids, one per character.",
            )
        return [int(i) for i in out.tolist()]
    if isinstance(out, str):
        raise CheckFailure(
            _TOK, "encode-not-ids", f"{what} returned the string {out!r}; expected a list of ints."
        )
    if not isinstance(out, (list, tuple)):
        raise CheckFailure(
            _TOK, "encode-not-ids", f"{what} returned a {type(out).__name__}; expected a list of ints."
        )
    ids = []
    for i in out:
        if isinstance(i, bool) or not isinstance(i, int):
            if isinstance(i, torch.Tensor) and i.dim() == 0 and not i.is_floating_point():
                i = int(i)
            else:
                raise CheckFailure(
                    _TOK,
                    "encode-not-ids",
                    f"{what} returned a list holding {i!r} ({type(i).__name__}); every item should be an "
                    "int id.",
                )
        ids.append(i)
    return ids


def _vocab_order_diagnosis(text: str, ids: list[int]) -> CheckFailure:
    chars = sorted(set(text))
    V = len(chars)
    if ids == list(range(1, V + 1)):
        return CheckFailure(
            _TOK,
            "ids-from-one",
            f"the ids of the sorted characters run from 1 to {V}; they should run from 0 to {V - 1}.",
        )
    first_seen = list(dict.fromkeys(text))
    shown = ", ".join(f"{c!r}->{i}" for c, i in list(zip(chars, ids, strict=True))[:6])
    if sorted(ids) == list(range(V)):
        order = (
            "in the order they first appear in the text"
            if ids == [first_seen.index(c) for c in chars]
            else ("in no sorted order (the order of a set?)")
        )
        return CheckFailure(
            _TOK,
            "not-sorted",
            f"the characters get ids {order}: {shown}, ... With a sorted vocabulary {chars[0]!r} would be 0, "
            f"{chars[1]!r} 1, and so on.",
        )
    return CheckFailure(
        _TOK,
        "not-sorted",
        f"encoding the {V} distinct characters one by one gave ids {ids[:10]}{'...' if V > 10 else ''}; "
        f"expected 0..{V - 1} in sorted character order ({shown}, ...).",
    )


def check_char_tokenizer(cls: Any) -> None:
    """Check a learner's CharTokenizer class: CharTokenizer(text) with vocab_size, encode(s), decode(ids)."""
    with one_thread():
        _check_char_tokenizer(cls)


def _check_char_tokenizer(cls: Any) -> None:
    _is_class(_TOK, cls, "check_char_tokenizer(CharTokenizer)")
    name = getattr(cls, "__name__", "CharTokenizer")
    ref = _RefTokenizer.from_text(_TRAIN_TEXT)
    tok = call(_TOK, f"{name}(text)", cls, _TRAIN_TEXT)

    # vocab_size: the number of distinct characters
    V = ref.vocab_size
    if not hasattr(tok, "vocab_size"):
        raise CheckFailure(_TOK, "no-vocab-size", f"{name}(text) has no attribute `vocab_size`.")
    vs = tok.vocab_size
    if callable(vs):
        raise CheckFailure(
            _TOK,
            "no-vocab-size",
            "`vocab_size` is a method; make it a number: `self.vocab_size = len(self.chars)`.",
        )
    if isinstance(vs, bool) or not isinstance(vs, int):
        raise CheckFailure(_TOK, "vocab-size-wrong", f"vocab_size is {vs!r}; expected the int {V}.")
    if vs != V:
        why = (
            " (that is len(text): every character counted, repeats included)"
            if vs == len(_TRAIN_TEXT)
            else ""
        )
        raise CheckFailure(
            _TOK,
            "vocab-size-wrong",
            f"the text has {V} distinct characters, but vocab_size is {vs}{why}.",
        )

    # ids: each sorted character's index
    chars = sorted(set(_TRAIN_TEXT))
    one_by_one = []
    for c in chars:
        ids = _as_ids(f"encode({c!r})", call(_TOK, f"encode({c!r})", tok.encode, c))
        if len(ids) != 1:
            raise CheckFailure(
                _TOK, "encode-not-ids", f"encode({c!r}) returned {len(ids)} ids; one character gives one id."
            )
        one_by_one.append(ids[0])
    if one_by_one != list(range(V)):
        raise _vocab_order_diagnosis(_TRAIN_TEXT, one_by_one)

    whole = _as_ids("encode(text)", call(_TOK, "encode(text)", tok.encode, _TRAIN_TEXT))
    if whole != ref.encode(_TRAIN_TEXT):
        raise CheckFailure(
            _TOK,
            "encode-not-ids",
            f"encode(text) gave {len(whole)} ids that differ from one id per character ({len(_TRAIN_TEXT)}).",
        )
    empty = _as_ids('encode("")', call(_TOK, 'encode("")', tok.encode, ""))
    if empty:
        raise CheckFailure(_TOK, "encode-not-ids", f'encode("") returned {empty}; the empty text has no ids.')

    # decode: the inverse, on text the tokenizer was not built from
    g = torch.Generator().manual_seed(0)
    unseen = "".join(chars[i] for i in torch.randint(V, (40,), generator=g).tolist())
    unseen_ids = ref.encode(unseen)
    back = call(_TOK, "decode(ids)", tok.decode, list(unseen_ids))
    if not isinstance(back, str):
        raise CheckFailure(
            _TOK,
            "decode-not-str",
            f"decode(ids) returned a {type(back).__name__} ({back!r:.60}); expected one string.",
        )
    if back != unseen:
        raise CheckFailure(
            _TOK,
            "decode-wrong",
            f"decode(encode(s)) != s for s = {unseen!r}: got {back!r}.",
        )
    if call(_TOK, "decode([])", tok.decode, []) != "":
        raise CheckFailure(_TOK, "decode-wrong", "decode([]) should give the empty string.")
    rt = call(
        _TOK,
        "decode(encode(s))",
        tok.decode,
        _as_ids("encode(s)", call(_TOK, "encode(s)", tok.encode, unseen)),
    )
    if rt != unseen:
        raise CheckFailure(_TOK, "decode-wrong", f"decode(encode(s)) gave {rt!r} for s = {unseen!r}.")

    # the vocabulary comes from the text it is given (nothing hard-coded)
    other = call(_TOK, f"{name}({_OTHER_TEXT!r})", cls, _OTHER_TEXT)
    other_ref = _RefTokenizer.from_text(_OTHER_TEXT)
    got = _as_ids("encode", call(_TOK, "encode", other.encode, "tails"))
    if getattr(other, "vocab_size", None) != other_ref.vocab_size or got != other_ref.encode("tails"):
        raise CheckFailure(
            _TOK,
            "vocab-size-wrong",
            f"a tokenizer built from {_OTHER_TEXT!r} should have vocab_size {other_ref.vocab_size} and "
            f"encode 'tails' as {other_ref.encode('tails')}; got vocab_size "
            f"{getattr(other, 'vocab_size', None)!r} and {got}. Is the vocabulary hard-coded instead of built "
            "from `text`?",
        )

    # an unknown character: a clear ValueError that names it
    probe = f"hello {_UNKNOWN}"
    try:
        out = tok.encode(probe)
    except NotImplementedError:
        raise NotDoneYet(_TOK, "encode") from None
    except ValueError as e:
        if _UNKNOWN not in str(e):
            raise CheckFailure(
                _TOK,
                "unknown-unnamed",
                f"encode({probe!r}) raised ValueError({str(e)!r}), which does not name the unknown "
                f"character {_UNKNOWN!r}.",
            ) from None
    except KeyError:
        raise CheckFailure(
            _TOK,
            "unknown-keyerror",
            f"encode({probe!r}) raised a bare KeyError from the dictionary lookup.",
        ) from None
    except Exception as e:
        raise CheckFailure(
            _TOK,
            "unknown-wrong-error",
            f"encode({probe!r}) raised {type(e).__name__}: {e}; expected a ValueError that names {_UNKNOWN!r}.",
        ) from None
    else:
        what = f"returned {out!r:.80}"
        raise CheckFailure(
            _TOK,
            "unknown-silent",
            f"encode({probe!r}) {what} instead of raising a ValueError: {_UNKNOWN!r} is not in the vocabulary.",
        )
    passed(
        _TOK,
        f"{V} sorted characters with ids 0..{V - 1} (the same as gptlib's CharTokenizer), decode(encode(s)) == s "
        "on unseen text, and an unknown character raises a ValueError that names it.",
    )


# --- get_batch --------------------------------------------------------------------------------

_BATCH = "get_batch"

register_hints(
    _BATCH,
    levels=[
        "Pick batch_size random start positions i, each one leaving room for block_size + 1 tokens; x is "
        "data[i : i + block_size] and y is the same window moved one token to the right.",
        "`torch.randint(high, (batch_size,), generator=generator)` draws starts in 0 .. high - 1. The last "
        "start that still has a target for its last token is len(data) - block_size - 1, so high = "
        "len(data) - block_size. Stack the windows with torch.stack (one row per start).",
        "ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)\n"
        "x = torch.stack([data[i : i + block_size] for i in ix])\n"
        "y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])\n"
        "return x, y",
    ],
    diagnoses={
        "not-a-pair": "end with `return x, y`: two tensors, inputs and targets.",
        "transposed": "torch.stack(windows) stacks along a new first dimension: one row per window, (B, T).",
        "not-a-slice": "each row of x must be block_size consecutive tokens of data: `data[i : i + block_size]`.",
        "y-not-shifted": "y is the window that starts one token later: `data[i + 1 : i + 1 + block_size]`.",
        "shifted-wrong-way": "y is the NEXT token at every position, so its window starts at i + 1, not i - 1.",
        "separate-starts": "draw the starts once and use the same i for x and y; y is x's window moved by one.",
        "same-window": "draw batch_size starts: `torch.randint(high, (batch_size,), generator=generator)`.",
        "ignores-generator": "pass `generator=generator` to torch.randint (and use no other source of randomness), "
        "so a seeded generator gives the same batches every run.",
        "reseeds-generator": "do not call generator.manual_seed or make a new generator inside get_batch: the "
        "caller seeds it once, and each call must draw new windows.",
        "past-end": "the largest start is len(data) - block_size - 1 (y's last token is data[i + block_size]); "
        "`torch.randint(len(data) - block_size, ...)` never goes beyond it.",
        "never-last-window": "torch.randint's `high` is exclusive: `torch.randint(len(data) - block_size, ...)` "
        "already stops at the last valid start. Subtracting one more skips the last window.",
        "never-first-window": "starts begin at 0: `torch.randint(high, ...)` (the low end defaults to 0).",
        "modifies-data": "slicing gives views of data; do not write into them (no in-place ops on x or y).",
    },
)


def _pair(what: str, out: Any) -> tuple[Any, Any]:
    if isinstance(out, torch.Tensor) or not isinstance(out, (tuple, list)) or len(out) != 2:
        kind = (
            type(out).__name__
            if not isinstance(out, (tuple, list))
            else f"{type(out).__name__} of {len(out)}"
        )
        raise CheckFailure(_BATCH, "not-a-pair", f"{what} returned a {kind}; expected a pair (x, y).")
    return out[0], out[1]


def _batch(
    fn: Any, data: torch.Tensor, T: int, B: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    what = f"get_batch(data, block_size={T}, batch_size={B}, generator)"
    x, y = _pair(what, call(_BATCH, what, fn, data, T, B, g))
    for label, t in (("x", x), ("y", y)):
        if isinstance(t, torch.Tensor) and tuple(t.shape) == (T, B):
            raise CheckFailure(
                _BATCH,
                "transposed",
                f"{label} has shape {(T, B)} = (block_size, batch_size); expected (batch_size, block_size) = {(B, T)}.",
            )
        expect_tensor(_BATCH, f"{what}'s {label}", t, shape=(B, T), dtype=torch.long, shape_names="(B, T)")
    return x, y


def _starts(where: torch.Tensor, rows: torch.Tensor, T: int) -> torch.Tensor | None:
    """Start of each row as a real slice of data (data's tokens are all distinct), or None."""
    n = len(where)
    if rows.min() < 0 or rows.max() >= n:
        return None
    starts = where[rows[:, 0]]  # (B,)
    expected = starts[:, None] + torch.arange(T)  # (B, T)
    if not torch.equal(where[rows], expected):
        return None
    return starts


def check_get_batch(fn: Any) -> None:
    """Check a learner's get_batch(data, block_size, batch_size, generator) -> (x, y), both (B, T) long."""
    if isinstance(fn, type) or not callable(fn):
        raise CheckFailure(_BATCH, "not-a-function", f"expected the function get_batch, got {fn!r}.")
    with one_thread(), torch.random.fork_rng(devices=[]):
        _check_get_batch(fn)


def _check_get_batch(fn: Any) -> None:
    N = 3001
    perm_gen = torch.Generator().manual_seed(1234)
    data = torch.randperm(N, generator=perm_gen)  # every token distinct: a window tells where it starts
    where = torch.empty(N, dtype=torch.long)
    where[data] = torch.arange(N)  # where[token] = its position in data
    original = data.clone()

    for T, B in ((8, 5), (5, 3)):
        g = torch.Generator().manual_seed(0)
        x, y = _batch(fn, data, T, B, g)
        if not torch.equal(data, original):
            raise CheckFailure(_BATCH, "modifies-data", "get_batch changed `data` in place.")
        sx = _starts(where, x, T)
        if sx is None:
            raise CheckFailure(
                _BATCH,
                "not-a-slice",
                f"a row of x is not {T} consecutive tokens of data (x[0] = {x[0].tolist()}, which does not "
                "appear in that order in data).",
            )
        if torch.equal(x, y):
            raise CheckFailure(
                _BATCH, "y-not-shifted", "y is identical to x; y must be x shifted by one token."
            )
        sy = _starts(where, y, T)
        if sy is None:
            raise CheckFailure(
                _BATCH,
                "y-not-shifted",
                "a row of y is not a window of data: y[b] should be data[i+1 : i+1+T].",
            )
        if torch.equal(sy, sx - 1):
            raise CheckFailure(
                _BATCH,
                "shifted-wrong-way",
                "each y window starts one token BEFORE its x window; it should start one token after.",
            )
        if not torch.equal(sy, sx + 1):
            raise CheckFailure(
                _BATCH,
                "separate-starts",
                f"x starts at {sx.tolist()} but y at {sy.tolist()}: y must be x's window moved by exactly one "
                "token, so that y[:, :-1] == x[:, 1:].",
            )
        if B > 1 and (sx == sx[0]).all():
            raise CheckFailure(
                _BATCH, "same-window", f"all {B} rows of x are the same window (start {int(sx[0])})."
            )

    # the generator decides everything: same seed -> same batch, whatever the global RNG does
    T, B = 6, 4
    torch.manual_seed(11)
    a = _batch(fn, data, T, B, torch.Generator().manual_seed(7))
    torch.manual_seed(12)
    b = _batch(fn, data, T, B, torch.Generator().manual_seed(7))
    c = _batch(fn, data, T, B, torch.Generator().manual_seed(8))
    if not (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])):
        raise CheckFailure(
            _BATCH,
            "ignores-generator",
            "two generators seeded alike gave different batches: the windows come from some other random "
            "source (torch's global generator, or Python's random), not from `generator`.",
        )
    if torch.equal(a[0], c[0]):
        raise CheckFailure(
            _BATCH,
            "reseeds-generator",
            "generators seeded 7 and 8 gave the same batch: get_batch seems to seed or make its own generator.",
        )
    g = torch.Generator().manual_seed(7)
    first = _batch(fn, data, T, B, g)
    second = _batch(fn, data, T, B, g)
    if torch.equal(first[0], second[0]):
        raise CheckFailure(
            _BATCH,
            "reseeds-generator",
            "two calls with the same generator returned the same batch; each call should draw new windows.",
        )

    # every start from 0 to len(data) - T - 1 can be drawn, and nothing past it
    T, B = 4, 5
    small = data[: T + 3]  # starts 0, 1, 2
    sw = torch.full((N,), -1, dtype=torch.long)  # position in `small`, -1 for tokens not in it
    sw[small] = torch.arange(T + 3)
    seen: set[int] = set()
    g = torch.Generator().manual_seed(3)
    for _ in range(12):
        what = f"get_batch(data of {len(small)} tokens, block_size={T}, batch_size={B}, generator)"
        try:
            out = fn(small, T, B, g)
            x, y = _pair(what, out)
            expect_tensor(_BATCH, what + "'s x", x, shape=(B, T), dtype=torch.long)
            expect_tensor(_BATCH, what + "'s y", y, shape=(B, T), dtype=torch.long)
        except NotImplementedError:
            raise NotDoneYet(_BATCH, "get_batch") from None
        except (IndexError, RuntimeError, CheckFailure) as e:
            raise CheckFailure(
                _BATCH,
                "past-end",
                f"with {len(small)} tokens and block_size={T}, {what} failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120]}): a start was drawn too close to the end, so y's window ran "
                "off the data.",
            ) from None
        seen.update(sw[x[:, 0]].tolist())
    valid = set(range(len(small) - T))
    if not seen <= valid:
        raise CheckFailure(
            _BATCH, "past-end", f"starts {sorted(seen - valid)} leave no room for y's last token."
        )
    if max(valid) not in seen:
        raise CheckFailure(
            _BATCH,
            "never-last-window",
            f"with {len(small)} tokens and block_size={T} the starts can be {sorted(valid)}, but 60 windows "
            f"never started at {max(valid)}: the last window of the text is never drawn.",
        )
    if 0 not in seen:
        raise CheckFailure(
            _BATCH,
            "never-first-window",
            f"60 windows of {sorted(valid)} never started at 0: the first window is missed.",
        )
    passed(
        _BATCH,
        "x and y are (B, T) long, y is x shifted by one token, every window is a real slice of data (the first "
        "and the last included), the generator alone decides the batch, and each call draws new windows.",
    )


# --- unigram_entropy --------------------------------------------------------------------------

_ENT = "unigram_entropy"

register_hints(
    _ENT,
    levels=[
        "Count how often each token id occurs, turn the counts into probabilities p (they sum to 1), then "
        "the entropy is -sum(p * ln p) over the tokens that occur. It is the loss (in nats) of a model that "
        "always predicts these frequencies.",
        "`torch.bincount(data, minlength=vocab_size)` counts every id. Ids that never occur have p = 0, and "
        "0 * log(0) is nan in torch: keep only p > 0. Use the natural log (torch.log), like cross-entropy.",
        "counts = torch.bincount(data, minlength=vocab_size).double()\n"
        "p = counts / counts.sum()\n"
        "p = p[p > 0]\n"
        "return float(-(p * p.log()).sum())",
    ],
    diagnoses={
        "nan": "some ids never occur (p = 0) and 0 * log(0) = nan: keep only `p[p > 0]`.",
        "log2": "cross-entropy losses use the natural log (nats): torch.log, not torch.log2.",
        "log10": "cross-entropy losses use the natural log (nats): torch.log, not torch.log10.",
        "sign": "log p is negative for p < 1, so the entropy is -sum(p * log p): mind the minus sign.",
        "counts-not-probs": "divide the counts by their total first, so the probabilities sum to 1.",
        "uniform": "the unigram baseline uses how often each token actually occurs, not 1/vocab_size for all.",
        "not-a-number": "return a Python float (`float(...)`) or a 0-d tensor.",
        "modifies-data": "do not change `data` in place.",
    },
)


def _entropy(counts: list[int], log: Any = math.log) -> float:
    n = sum(counts)
    return -sum(c / n * log(c / n) for c in counts if c > 0)


def check_unigram_entropy(fn: Any) -> None:
    """Check a learner's unigram_entropy(data, vocab_size) -> float, in nats."""
    with one_thread():
        _check_unigram_entropy(fn)


def _check_unigram_entropy(fn: Any) -> None:
    if isinstance(fn, type) or not callable(fn):
        raise CheckFailure(_ENT, "not-a-function", f"expected the function unigram_entropy, got {fn!r}.")
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.tensor([0, 1, 1, 2, 2, 2, 2, 5]), 7),  # ids 3, 4 and 6 never occur
        (torch.randint(5, (200,), generator=g) * 2, 11),
        (torch.tensor([3, 1, 4, 1, 5, 9, 2, 6]), 10),
    ]
    for data, V in cases:
        original = data.clone()
        counts = Counter(data.tolist())
        full = [counts.get(i, 0) for i in range(V)]
        want = _entropy(full)
        what = f"unigram_entropy({_short(data)}, vocab_size={V})"
        out = call(_ENT, what, fn, data, V)
        if not torch.equal(data, original):
            raise CheckFailure(_ENT, "modifies-data", f"{what} changed `data` in place.")
        got = _as_float(what, out)
        if math.isnan(got):
            raise CheckFailure(
                _ENT, "nan", f"{what} returned nan; ids {[i for i in range(V) if not full[i]]} never occur."
            )
        if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6):
            continue
        candidates = [
            ("log2", _entropy(full, math.log2), "is the entropy in bits (log base 2), not nats"),
            ("log10", _entropy(full, math.log10), "uses log base 10, not the natural log"),
            ("sign", -want, "has the wrong sign"),
            ("uniform", math.log(V), "is ln(vocab_size): every token treated as equally likely"),
            (
                "counts-not-probs",
                -sum(c * math.log(c) for c in full if c),
                "uses raw counts instead of probabilities",
            ),
        ]
        for code, value, words in candidates:
            if math.isclose(got, value, rel_tol=1e-5, abs_tol=1e-6):
                raise CheckFailure(
                    _ENT, code, f"{what} returned {got:.4f}, expected {want:.4f}: your value {words}."
                )
        raise CheckFailure(
            _ENT,
            "wrong-value",
            f"{what} returned {got:.4f}; the entropy of the token frequencies is {want:.4f}.",
        )
    passed(_ENT, "matches -sum(p ln p) of the token frequencies (in nats), ids that never occur included.")


def _short(t: torch.Tensor) -> str:
    vals = t.tolist()
    return f"tensor({vals})" if len(vals) <= 8 else f"<{len(vals)} ids>"


def _as_float(what: str, out: Any) -> float:
    if out is None:
        raise CheckFailure(_ENT, "returned-none", f"{what} returned None: is the `return` line missing?")
    if isinstance(out, torch.Tensor):
        if out.numel() != 1:
            raise CheckFailure(
                _ENT,
                "not-a-number",
                f"{what} returned a tensor of shape {tuple(out.shape)}; expected one number.",
            )
        return float(out.item())
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise CheckFailure(_ENT, "not-a-number", f"{what} returned a {type(out).__name__}; expected a float.")
    return float(out)
