"""Checks for lesson 00 (tokens and batches): the character tokenizer, random batches, the unigram baseline.

Each check runs the learner's code on small inputs it builds itself, looks for
the usual mistakes first (ids in the wrong order, y not shifted, a generator
that is ignored, log base 2, ...) and only then compares with gptlib's
version (`gptlib.tokenizer.CharTokenizer`, `gptlib.data.get_batch`).
"""

from __future__ import annotations

import math
from collections import Counter
from functools import partial
from typing import Any

import torch

from gptlib.checks import codes as C
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    attribute,
    build,
    find_mistake,
    seed_learner,
    type_name,
)
from gptlib.checks.learner import Ref, Spec
from gptlib.checks.probes import expect_callable, expect_tensor, untouched
from gptlib.checks.verdict import CheckFailure
from gptlib.tokenizer import CharTokenizer as _RefTokenizer

__all__ = ["check_char_tokenizer", "check_get_batch", "check_unigram_entropy"]

# ==== char_tokenizer ================================================================================

TOKENIZER = Exercise(
    "char_tokenizer",
    [C.NOT_A_CLASS, C.INSTANCE_NOT_CLASS, C.NO_VOCAB_SIZE, C.VOCAB_SIZE_WRONG, C.NOT_SORTED, C.IDS_FROM_ONE,
     C.ENCODE_NOT_IDS, C.DECODE_NOT_STR, C.DECODE_WRONG, C.UNKNOWN_SILENT, C.UNKNOWN_KEYERROR,
     C.UNKNOWN_WRONG_ERROR, C.UNKNOWN_UNNAMED],
)  # fmt: skip
_TRAIN_TEXT = "The quick brown fox (42) jumps over the lazy dog!\nHello, world: def f(x): return x * 2"
_OTHER_TEXT = "banana split"
_UNKNOWN = "☃"


def _encode(what: str, encode: Ref, text: str) -> list[int]:
    """The learner's encode(text) as a list of ints, or a failure saying what it returned."""
    ex = TOKENIZER
    out = ex.call(what, encode, text)
    if isinstance(out, torch.Tensor):
        if out.dim() != 1 or out.is_floating_point():
            raise ex.fail(
                C.ENCODE_NOT_IDS,
                f"{what} returned a tensor of shape {tuple(out.shape)} and dtype {out.dtype}; expected a "
                "list of int ids, one per character.",
            )
        return [int(i) for i in out.tolist()]
    if isinstance(out, str):
        raise ex.fail(C.ENCODE_NOT_IDS, f"{what} returned the string {out!r}; expected a list of ints.")
    if not isinstance(out, (list, tuple)):
        raise ex.fail(C.ENCODE_NOT_IDS, f"{what} returned a {type_name(out)}; expected a list of ints.")
    ids = []
    for i in out:
        if isinstance(i, torch.Tensor) and i.dim() == 0 and not i.is_floating_point():
            i = int(i)
        if isinstance(i, bool) or not isinstance(i, int):
            raise ex.fail(
                C.ENCODE_NOT_IDS,
                f"{what} returned a list holding {i!r} ({type_name(i)}); every item should be an int id.",
            )
        ids.append(i)
    return ids


def _vocab_order(text: str, ids: list[int]) -> CheckFailure:
    chars = sorted(set(text))
    V = len(chars)
    if ids == list(range(1, V + 1)):
        return TOKENIZER.fail(
            C.IDS_FROM_ONE,
            f"the ids of the sorted characters run from 1 to {V}; they should run from 0 to {V - 1}.",
        )
    shown = ", ".join(f"{c!r}->{i}" for c, i in list(zip(chars, ids, strict=True))[:6])
    if sorted(ids) == list(range(V)):
        first_seen = list(dict.fromkeys(text))
        order = (
            "in the order they first appear in the text"
            if ids == [first_seen.index(c) for c in chars]
            else ("in no sorted order (the order of a set?)")
        )
        return TOKENIZER.fail(
            C.NOT_SORTED,
            f"the characters get ids {order}: {shown}, ... With a sorted vocabulary {chars[0]!r} would be 0, "
            f"{chars[1]!r} 1, and so on.",
        )
    return TOKENIZER.fail(
        C.NOT_SORTED,
        f"encoding the {V} distinct characters one by one gave ids {ids[:10]}{'...' if V > 10 else ''}; "
        f"expected 0..{V - 1} in sorted character order ({shown}, ...).",
    )


@TOKENIZER.check
def check_char_tokenizer(cls: Ref) -> None:
    """Check a learner's CharTokenizer class: CharTokenizer(text) with vocab_size, encode(s), decode(ids)."""
    ex = TOKENIZER
    if cls.info.kind != "class":
        if _attribute_or(None, "encode", cls, "encode") is not None:
            raise ex.fail(
                C.INSTANCE_NOT_CLASS,
                "pass the class itself, not an object made from it: check_char_tokenizer(CharTokenizer).",
            )
        raise ex.fail(C.NOT_A_CLASS, f"expected a class, got {cls!r:.80}.")
    name = cls.info.name or "CharTokenizer"
    ref = _RefTokenizer.from_text(_TRAIN_TEXT)
    tok = ex.call(f"{name}(text)", cls, _TRAIN_TEXT)

    # vocab_size: the number of distinct characters
    V = ref.vocab_size
    vs = _attribute_or(_MISSING, f"{name}(text).vocab_size", tok, "vocab_size")
    if vs is _MISSING:
        raise ex.fail(C.NO_VOCAB_SIZE, f"{name}(text) has no attribute `vocab_size`.")
    if isinstance(vs, Ref) and vs.info.callable:
        raise ex.fail(
            C.NO_VOCAB_SIZE,
            "`vocab_size` is a method; make it a number: `self.vocab_size = len(self.chars)`.",
        )
    if isinstance(vs, bool) or not isinstance(vs, int):
        raise ex.fail(C.VOCAB_SIZE_WRONG, f"vocab_size is {vs!r}; expected the int {V}.")
    if vs != V:
        why = (
            " (that is len(text): every character counted, repeats included)"
            if vs == len(_TRAIN_TEXT)
            else ""
        )
        raise ex.fail(
            C.VOCAB_SIZE_WRONG, f"the text has {V} distinct characters, but vocab_size is {vs}{why}."
        )

    # ids: each sorted character's index
    chars = sorted(set(_TRAIN_TEXT))
    encode = _method(tok, "encode")
    one_by_one = []
    for c in chars:
        ids = _encode(f"encode({c!r})", encode, c)
        if len(ids) != 1:
            raise ex.fail(
                C.ENCODE_NOT_IDS, f"encode({c!r}) returned {len(ids)} ids; one character gives one id."
            )
        one_by_one.append(ids[0])
    if one_by_one != list(range(V)):
        raise _vocab_order(_TRAIN_TEXT, one_by_one)
    whole = _encode("encode(text)", encode, _TRAIN_TEXT)
    if whole != ref.encode(_TRAIN_TEXT):
        raise ex.fail(
            C.ENCODE_NOT_IDS,
            f"encode(text) gave {len(whole)} ids that differ from one id per character ({len(_TRAIN_TEXT)}).",
        )
    empty = _encode('encode("")', encode, "")
    if empty:
        raise ex.fail(C.ENCODE_NOT_IDS, f'encode("") returned {empty}; the empty text has no ids.')

    # decode: the inverse, on text the tokenizer was not built from
    g = torch.Generator().manual_seed(0)
    unseen = "".join(chars[i] for i in torch.randint(V, (40,), generator=g).tolist())
    decode = _method(tok, "decode")
    back = ex.call("decode(ids)", decode, list(ref.encode(unseen)))
    if not isinstance(back, str):
        raise ex.fail(
            C.DECODE_NOT_STR, f"decode(ids) returned a {type_name(back)} ({back!r:.60}); expected one string."
        )
    if back != unseen:
        raise ex.fail(
            C.DECODE_WRONG,
            f"decode(encode(s)) != s for s = {unseen!r}: got {back!r}.{_separator(back, unseen)}",
        )
    if ex.call("decode([])", decode, []) != "":
        raise ex.fail(C.DECODE_WRONG, "decode([]) should give the empty string.")
    rt = ex.call("decode(encode(s))", decode, _encode("encode(s)", encode, unseen))
    if rt != unseen:
        raise ex.fail(C.DECODE_WRONG, f"decode(encode(s)) gave {rt!r} for s = {unseen!r}.")

    # the vocabulary comes from the text it is given (nothing hard-coded)
    other = ex.call(f"{name}({_OTHER_TEXT!r})", cls, _OTHER_TEXT)
    other_ref = _RefTokenizer.from_text(_OTHER_TEXT)
    got = _encode("encode", _method(other, "encode"), "tails")
    size = _attribute_or(None, "vocab_size", other, "vocab_size")
    if size != other_ref.vocab_size or got != other_ref.encode("tails"):
        raise ex.fail(
            C.VOCAB_SIZE_WRONG,
            f"a tokenizer built from {_OTHER_TEXT!r} should have vocab_size {other_ref.vocab_size} and "
            f"encode 'tails' as {other_ref.encode('tails')}; got vocab_size {size!r} and {got}. Is the "
            "vocabulary hard-coded instead of built from `text`?",
        )

    # an unknown character: a clear ValueError that names it
    probe = f"hello {_UNKNOWN}"
    out, crash = ex.attempt("encode", encode, probe)
    if crash is None:
        raise ex.fail(
            C.UNKNOWN_SILENT,
            f"encode({probe!r}) returned {out!r:.80} instead of raising a ValueError: {_UNKNOWN!r} is not in "
            "the vocabulary.",
        )
    if crash.isa("ValueError"):
        if _UNKNOWN not in crash.message:
            raise ex.fail(
                C.UNKNOWN_UNNAMED,
                f"encode({probe!r}) raised ValueError({crash.message!r}), which does not name the unknown "
                f"character {_UNKNOWN!r}.",
            )
    elif crash.isa("KeyError"):
        raise ex.fail(
            C.UNKNOWN_KEYERROR, f"encode({probe!r}) raised a bare KeyError from the dictionary lookup."
        )
    else:
        raise ex.fail(
            C.UNKNOWN_WRONG_ERROR,
            f"encode({probe!r}) raised {crash.name}: {crash.message}; expected a ValueError that names "
            f"{_UNKNOWN!r}.",
        )
    ex.passed(
        f"{V} sorted characters with ids 0..{V - 1} (the same as gptlib's CharTokenizer), decode(encode(s)) == s "
        "on unseen text, and an unknown character raises a ValueError that names it."
    )


def _separator(back: str, text: str) -> str:
    """What decode put between the characters, when that is all that differs from the text, in words."""
    for sep in (" ", ",", ", ", "\n", "|"):
        if back == sep.join(text):
            return (
                f" decode puts the separator {sep!r} between the characters (a space or comma in the join): "
                "join them with the empty string, ''.join(...)."
            )
    return ""


_MISSING = object()


def _attribute_or(missing: Any, what: str, obj: Ref, name: str) -> Any:
    """obj.name, or `missing` if obj has no such attribute (any other crash fails the check)."""
    try:
        return attribute(TOKENIZER, what, obj, name)
    except CheckFailure as e:
        if e.crash is not None and e.crash.isa("AttributeError"):
            return missing
        raise


def _method(obj: Any, name: str) -> Ref:
    """A tokenizer's bound method, to call across the boundary."""
    return attribute(TOKENIZER, f"{type_name(obj)}.{name}", obj, name)


# ==== get_batch =====================================================================================

BATCH = Exercise(
    "get_batch",
    [C.NOT_CALLABLE, C.NOT_A_PAIR, C.TRANSPOSED, C.NOT_A_SLICE, C.Y_NOT_SHIFTED, C.SHIFTED_WRONG_WAY,
     C.SHIFTED_TOO_FAR, C.NOT_RANDOM,
     C.SEPARATE_STARTS, C.SAME_WINDOW, C.GENERATOR_IGNORED, C.RESEEDS_GENERATOR, C.PAST_END,
     C.NEVER_LAST_WINDOW, C.NEVER_FIRST_WINDOW, C.IN_PLACE, C.NOT_A_TENSOR, C.WRONG_SHAPE, C.WRONG_DTYPE],
)  # fmt: skip


def _pair(what: str, out: Any) -> tuple[Any, Any]:
    if isinstance(out, torch.Tensor) or not isinstance(out, (tuple, list)) or len(out) != 2:
        kind = type_name(out) if not isinstance(out, (tuple, list)) else f"{type(out).__name__} of {len(out)}"
        raise BATCH.fail(C.NOT_A_PAIR, f"{what} returned a {kind}; expected a pair (x, y).")
    return out[0], out[1]


def _batch(fn: Ref, data: torch.Tensor, T: int, B: int, g: Ref) -> tuple[torch.Tensor, torch.Tensor]:
    what = f"get_batch(data, block_size={T}, batch_size={B}, generator)"
    call = BATCH.run(what, fn, data, T, B, g)
    x, y = _pair(what, untouched(BATCH, "get_batch", call, "`data`"))
    for label, t in (("x", x), ("y", y)):
        if isinstance(t, torch.Tensor) and tuple(t.shape) == (T, B):
            raise BATCH.fail(
                C.TRANSPOSED,
                f"{label} has shape {(T, B)} = (block_size, batch_size); expected (batch_size, block_size) = {(B, T)}.",
            )
        expect_tensor(BATCH, f"{what}'s {label}", t, shape=(B, T), dtype=torch.long, shape_names="(B, T)")
    return x, y


def _starts(where: torch.Tensor, rows: torch.Tensor, T: int) -> torch.Tensor | None:
    """Start of each row as a real slice of data (data's tokens are all distinct), or None."""
    if rows.min() < 0 or rows.max() >= len(where):
        return None
    starts = where[rows[:, 0]]  # (B,)
    return starts if torch.equal(where[rows], starts[:, None] + torch.arange(T)) else None


def _generator(seed: int) -> Ref:
    return build(Spec("Generator", (seed,)))


@BATCH.check
def check_get_batch(fn: Ref) -> None:
    """Check a learner's get_batch(data, block_size, batch_size, generator) -> (x, y), both (B, T) long."""
    ex = BATCH
    expect_callable(ex, fn, "get_batch")
    N = 3001
    # distinct tokens: a window tells where it starts
    data = torch.randperm(N, generator=torch.Generator().manual_seed(1234))
    where = torch.empty(N, dtype=torch.long)
    where[data] = torch.arange(N)  # where[token] = its position in data

    for T, B in ((8, 5), (5, 3)):
        x, y = _batch(fn, data, T, B, _generator(0))
        sx = _starts(where, x, T)
        if sx is None:
            raise ex.fail(
                C.NOT_A_SLICE,
                f"a row of x is not {T} consecutive tokens of data (x[0] = {x[0].tolist()}, which does not "
                "appear in that order in data).",
            )
        if torch.equal(x, y):
            raise ex.fail(C.Y_NOT_SHIFTED, "y is identical to x; y must be x shifted by one token.")
        sy = _starts(where, y, T)
        if sy is None:
            raise ex.fail(
                C.Y_NOT_SHIFTED, "a row of y is not a window of data: y[b] should be data[i+1 : i+1+T]."
            )
        if torch.equal(sy, sx - 1):
            raise ex.fail(
                C.SHIFTED_WRONG_WAY,
                "each y window starts one token BEFORE its x window; it should start one token after.",
            )
        shift = (sy - sx).unique()
        if len(shift) == 1 and int(shift) > 1:
            k = int(shift)
            raise ex.fail(
                C.SHIFTED_TOO_FAR,
                f"each y window starts {k} tokens after its x window (a shift of {k}): y must be shifted by "
                "exactly one token, y = data[i+1 : i+1+T], so that y[:, :-1] == x[:, 1:].",
            )
        if not torch.equal(sy, sx + 1):
            raise ex.fail(
                C.SEPARATE_STARTS,
                f"x starts at {sx.tolist()} but y at {sy.tolist()}: y must be x's window moved by exactly one "
                "token, so that y[:, :-1] == x[:, 1:].",
            )
        if B > 1 and (sx == sx[0]).all():
            raise ex.fail(C.SAME_WINDOW, f"all {B} rows of x are the same window (start {int(sx[0])}).")

    # the generator decides everything: same seed -> same batch, whatever the global RNG does
    T, B = 6, 4
    seed_learner(11)
    a = _batch(fn, data, T, B, _generator(7))
    seed_learner(12)
    b = _batch(fn, data, T, B, _generator(7))
    c = _batch(fn, data, T, B, _generator(8))
    if not (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])):
        raise ex.fail(
            C.GENERATOR_IGNORED,
            "two generators seeded alike gave different batches: the windows come from some other random "
            "source (torch's global generator, or Python's random), not from `generator`.",
        )
    if torch.equal(a[0], c[0]):
        starts = _starts(where, a[0], T)
        steps = starts.diff().unique() if starts is not None and B > 1 else None
        if starts is not None and steps is not None and len(steps) == 1 and int(starts[0]) == 0:
            raise ex.fail(
                C.NOT_RANDOM,
                f"the windows are fixed: every call gives the same consecutive chunks from the start of data "
                f"(starts {starts.tolist()}), whatever the generator. Draw random starts with "
                "torch.randint(..., generator=generator).",
            )
        raise ex.fail(
            C.RESEEDS_GENERATOR,
            "generators seeded 7 and 8 gave the same batch: get_batch seems to seed or make its own generator.",
        )
    g = _generator(7)
    if torch.equal(_batch(fn, data, T, B, g)[0], _batch(fn, data, T, B, g)[0]):
        raise ex.fail(
            C.RESEEDS_GENERATOR,
            "two calls with the same generator returned the same batch; each call should draw new windows.",
        )

    # every start from 0 to len(data) - T - 1 can be drawn, and nothing past it
    T, B = 4, 5
    small = data[: T + 3]  # starts 0, 1, 2
    sw = torch.full((N,), -1, dtype=torch.long)  # position in `small`, -1 for tokens not in it
    sw[small] = torch.arange(T + 3)
    seen: set[int] = set()
    g = _generator(3)
    what = f"get_batch(data of {len(small)} tokens, block_size={T}, batch_size={B}, generator)"
    for _ in range(12):
        out, crash = ex.attempt("get_batch", fn, small, T, B, g)
        if crash is not None and not (crash.isa("IndexError") or crash.isa("RuntimeError")):
            raise ex.crashed(what, crash)
        problem = (
            f"{crash.name}: {crash.message.splitlines()[0][:120] if crash.message else ''}" if crash else ""
        )
        try:
            if not problem:
                x, y = _pair(what, out)
                expect_tensor(ex, what + "'s x", x, shape=(B, T), dtype=torch.long)
                expect_tensor(ex, what + "'s y", y, shape=(B, T), dtype=torch.long)
        except CheckFailure as e:
            problem = f"CheckFailure: {str(e).splitlines()[0][:120]}"
        if problem:
            raise ex.fail(
                C.PAST_END,
                f"with {len(small)} tokens and block_size={T}, {what} failed ({problem}): a start was drawn too "
                "close to the end, so y's window ran off the data.",
            )
        seen.update(sw[x[:, 0]].tolist())
    valid = set(range(len(small) - T))
    if not seen <= valid:
        raise ex.fail(C.PAST_END, f"starts {sorted(seen - valid)} leave no room for y's last token.")
    if max(valid) not in seen:
        raise ex.fail(
            C.NEVER_LAST_WINDOW,
            f"with {len(small)} tokens and block_size={T} the starts can be {sorted(valid)}, but 60 windows "
            f"never started at {max(valid)}: the last window of the text is never drawn.",
        )
    if 0 not in seen:
        raise ex.fail(
            C.NEVER_FIRST_WINDOW,
            f"60 windows of {sorted(valid)} never started at 0: the first window is missed.",
        )
    ex.passed(
        "x and y are (B, T) long, y is x shifted by one token, every window is a real slice of data (the first "
        "and the last included), the generator alone decides the batch, and each call draws new windows."
    )


# ==== unigram_entropy ===============================================================================

ENTROPY = Exercise(
    "unigram_entropy",
    [C.NOT_CALLABLE, C.RETURNED_NONE, C.NAN, C.LOG2, C.LOG10, C.SIGN, C.COUNTS_NOT_PROBS, C.UNIFORM, C.NOT_A_NUMBER, C.IN_PLACE,
     C.MEAN_NOT_SUM, C.INTEGER_DIVISION, C.WRONG_VALUES],
)  # fmt: skip


def _entropy(counts: list[int], kind: str = "right") -> float:
    """The entropy of the token frequencies in nats, or one of the usual mistakes."""
    n = sum(counts)
    if kind == "uniform":
        return math.log(len(counts))
    if kind == "counts":
        return -sum(c * math.log(c) for c in counts if c)
    if kind == "integer":  # counts // total: every probability 0 (or 1 for a single id)
        return -sum(c // n * math.log(c // n) for c in counts if c // n > 0)
    log = {"log2": math.log2, "log10": math.log10}.get(kind, math.log)
    h = -sum(c / n * log(c / n) for c in counts if c > 0)
    if kind == "mean_seen":  # -(p ln p).mean() over the ids that occur
        return h / sum(1 for c in counts if c > 0)
    if kind == "mean_all":  # -(p ln p).mean() over the whole vocabulary
        return h / len(counts)
    return -h if kind == "sign" else h


def _is_entropy(value: float, counts: list[int], kind: str = "right") -> bool:
    return math.isclose(value, _entropy(counts, kind), rel_tol=1e-5, abs_tol=1e-6)


_ENTROPY_MISTAKES = [
    Mistake(C.LOG2, "is the entropy in bits (log base 2), not nats", {"kind": "log2"}),
    Mistake(C.LOG10, "uses log base 10, not the natural log", {"kind": "log10"}),
    Mistake(C.SIGN, "has the wrong sign", {"kind": "sign"}),
    Mistake(C.UNIFORM, "is ln(vocab_size): every token treated as equally likely", {"kind": "uniform"}),
    Mistake(C.COUNTS_NOT_PROBS, "uses raw counts instead of probabilities", {"kind": "counts"}),
    Mistake(C.MEAN_NOT_SUM, "is the mean of -p ln p over the ids that occur, not its sum", {"kind": "mean_seen"}),
    Mistake(C.MEAN_NOT_SUM, "is the mean of -p ln p over the vocabulary, not its sum", {"kind": "mean_all"}),
    Mistake(
        C.INTEGER_DIVISION,
        "is 0: counts // total is integer division, so every probability becomes 0; divide as floats",
        {"kind": "integer"},
    ),
]  # fmt: skip


def _as_float(what: str, out: Any) -> float:
    if out is None:
        raise ENTROPY.fail(C.RETURNED_NONE, f"{what} returned None: is the `return` line missing?")
    if isinstance(out, torch.Tensor):
        if out.numel() != 1:
            raise ENTROPY.fail(
                C.NOT_A_NUMBER, f"{what} returned a tensor of shape {tuple(out.shape)}; expected one number."
            )
        return float(out.item())
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise ENTROPY.fail(C.NOT_A_NUMBER, f"{what} returned a {type_name(out)}; expected a float.")
    return float(out)


@ENTROPY.check
def check_unigram_entropy(fn: Ref) -> None:
    """Check a learner's unigram_entropy(data, vocab_size) -> float, in nats."""
    ex = ENTROPY
    expect_callable(ex, fn, "unigram_entropy")
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.tensor([0, 1, 1, 2, 2, 2, 2, 5]), 7),  # ids 3, 4 and 6 never occur
        (torch.randint(5, (200,), generator=g) * 2, 11),
        (torch.tensor([3, 1, 4, 1, 5, 9, 2, 6]), 10),
    ]
    for data, V in cases:
        counts = Counter(data.tolist())
        full = [counts.get(i, 0) for i in range(V)]
        want = _entropy(full)
        vals = data.tolist()
        what = f"unigram_entropy({f'tensor({vals})' if len(vals) <= 8 else f'<{len(vals)} ids>'}, vocab_size={V})"
        call = ex.run(what, fn, data, V)
        got = _as_float(what, untouched(ex, what, call, "`data`"))
        if math.isnan(got):
            raise ex.fail(
                C.NAN, f"{what} returned nan; ids {[i for i in range(V) if not full[i]]} never occur."
            )
        if _is_entropy(got, full):
            continue
        found = find_mistake(_ENTROPY_MISTAKES, partial(_is_entropy, got, full), False)
        if found:
            raise ex.fail(
                found[0].code, f"{what} returned {got:.4f}, expected {want:.4f}: your value {found[0].says}."
            )
        raise ex.fail(
            C.WRONG_VALUES, f"{what} returned {got:.4f}; the entropy of the token frequencies is {want:.4f}."
        )
    ex.passed("matches -sum(p ln p) of the token frequencies (in nats), ids that never occur included.")
