"""Checks for lesson 08, generation and speed: top-p, the sampling strategies, and the KV cache.

- `top_p_filter(logits, p)`: the kept tokens must be the smallest set of most likely tokens
  whose probability reaches p (ties at the edge may all stay), kept logits unchanged, the
  rest -inf.
- `choose_next(logits, temperature, top_k, top_p, generator)`: greedy at temperature 0;
  otherwise thousands of draws from a fixed generator are compared with the exact
  distribution (a chi-square test), and a mismatch with the distribution of a known slip.
- `attention_with_cache(attn, x, cache)`: fed the sequence in chunks (all at once, one token
  at a time, uneven chunks), it must give gptlib's attention over the whole sequence, and
  leave every position's keys and values in the cache.
- `generate_with_cache(model, idx, max_new_tokens, **sampling)`: the same tokens as gptlib's
  generate (greedy and seeded sampling; prompts shorter than, equal to and longer than
  block_size), and no more positions run through the model than a cache needs (the model the
  learner gets records what each forward pass is fed).

A wrong answer is matched against references with one known mistake switched on, and the
failure names that mistake.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from gptlib.attention import CausalSelfAttention
from gptlib.checks import codes as C
from gptlib.checks import learner
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    attribute,
    build,
    find_mistake,
    match,
    matched,
    max_diff,
    seed_learner,
    train,
    type_name,
)
from gptlib.checks.learner import Call, Ref, Spec, config_spec, module_spec
from gptlib.checks.probes import (
    chi2,
    chi2_limit,
    expect_callable,
    expect_tensor,
    reject_none_or_tuple,
    untouched,
)
from gptlib.checks.training_and_sampling import mask_top_k
from gptlib.checks.verdict import CheckFailure
from gptlib.config import GPTConfig
from gptlib.generate import generate as _reference_generate
from gptlib.generate import next_token as _next_token
from gptlib.kvcache import KVCache
from gptlib.model import GPT

__all__ = [
    "check_top_p_filter",
    "check_sampling_strategies",
    "check_kv_cache_attention",
    "check_kv_cache_generate",
]

NEG_INF = float("-inf")


def _tensor_out(ex: Exercise, what: str, out: Any, shape: tuple[int, ...], ids: bool = False) -> torch.Tensor:
    """The learner's result as a tensor of the given shape (-inf allowed, NaN not); of token ids (torch.long)
    if `ids`."""
    reject_none_or_tuple(ex, what, out, "return one tensor.")
    out = expect_tensor(ex, what, out, shape, finite=False)
    if out.is_floating_point() and torch.isnan(out).any():
        raise ex.fail(
            C.NAN,
            f"{what} returned NaN values. A NaN appears when a whole row is -inf before a softmax, or from "
            "0 * inf or inf - inf.",
        )
    if ids and out.dtype != torch.long:
        raise ex.fail(C.WRONG_DTYPE, f"{what} returned dtype {out.dtype}; expected torch.long.")
    return out


_IN_PLACE = (
    " The caller may still need it: make new tensors (`y = x / t`, `masked_fill`, `torch.cat`), not `x /= t`, "
    "`masked_fill_` or `x[...] = ...`."
)


# ==== 8.1 top_p_filter ==============================================================================

TOP_P = Exercise(
    "top_p_filter",
    [C.NOT_CALLABLE, C.NOT_A_TENSOR, C.WRONG_SHAPE, C.NAN, C.IN_PLACE, C.CROSSING_DROPPED, C.KEEPS_NONE,
     C.KEEPS_EXTRA, C.NOT_SORTED, C.ASCENDING, C.MASS_ON_LOGITS, C.SORTED_ORDER, C.UNSORT_GATHER,
     C.PROBABILITIES, C.ZEROS_NOT_INF, C.NOTHING_DROPPED, C.VALUES_CHANGED, C.P_ONE, C.TIES, C.WRONG_SET,
     C.RETURNED_NONE, C.RETURNED_TUPLE],
)  # fmt: skip


def _logits_from_probs(probs: list[list[float]], shift: float = 1.3) -> torch.Tensor:
    # log(probs) + a constant: logits that are not log-probabilities (some positive), same softmax.
    return torch.tensor(probs, dtype=torch.float64).log().add(shift).float()


_P_ROWS = _logits_from_probs(
    [
        [0.04, 0.40, 0.06, 0.25, 0.15, 0.10],  # sorted cumsum .40 .65 .80: keeps 3 at p = 0.7
        [0.02, 0.02, 0.90, 0.02, 0.02, 0.02],  # the top token alone reaches p
        [0.12, 0.18, 0.08, 0.22, 0.25, 0.15],  # sorted cumsum .25 .47 .65 .80: keeps 4 at p = 0.7
    ]
)
_P_TIES = _logits_from_probs([[0.2, 0.4, 0.2, 0.2], [0.3, 0.1, 0.3, 0.3]], shift=0.5)
_P_AFTER_TOP_K = _P_ROWS[:1].masked_fill(_P_ROWS[:1] < _P_ROWS[0].sort(descending=True).values[3], NEG_INF)


def _random_logits(shape: tuple[int, int], seed: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# (what the case is, logits, p). The random rows' cumsums stay > 1e-3 away from p.
_P_CASES: list[tuple[str, torch.Tensor, float]] = [
    ("three rows of 6 tokens, p = 0.7", _P_ROWS, 0.7),
    ("the same rows with a small p = 0.05 (only the most likely token stays)", _P_ROWS, 0.05),
    ("rows where tokens tie (equal logits), p = 0.5", _P_TIES, 0.5),
    ("a row already filtered by top-k (two logits are -inf), p = 0.8", _P_AFTER_TOP_K, 0.8),
    ("4 random rows of 50 tokens, p = 0.9", _random_logits((4, 50), 8), 0.9),
    ("4 random rows of 50 tokens, p = 1 (nothing may be dropped)", _random_logits((4, 50), 3, 1.0), 1.0),
]


def _nucleus_bounds(logits: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(must keep, may keep, how many of the tied edge tokens must stay) per row, in float64.

    The nucleus is the n most likely tokens, n the smallest count whose mass reaches p. Tokens tied
    with the n-th (equal logits) may all stay, or only as many as n needs."""
    x = logits.double()
    finite = torch.isfinite(x)
    sorted_probs, order = F.softmax(x, dim=-1).sort(dim=-1, descending=True)
    if p >= 1.0:
        return finite, finite, torch.zeros(x.size(0), dtype=torch.long)
    n = (sorted_probs.cumsum(-1) < p).sum(-1) + 1  # (B,): tokens needed to reach p
    edge = x.gather(-1, order.gather(-1, (n - 1).unsqueeze(-1)))  # (B, 1): the n-th most likely logit
    must, may = x > edge, x >= edge
    return must, may, n - must.sum(-1)


def _top_p_variant(logits: torch.Tensor, p: float, kind: str) -> torch.Tensor:
    """The output of top_p_filter, right (kind "right") or with one known mistake."""
    if kind == "not-sorted":
        probs = F.softmax(logits.double(), -1)
        return logits.masked_fill(probs.cumsum(-1) - probs >= p, NEG_INF)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=kind != "ascending")
    probs = F.softmax(sorted_logits.double(), dim=-1)
    if kind == "mass-on-logits":
        probs = sorted_logits.double().masked_fill(~torch.isfinite(sorted_logits), 0.0)
    cum = probs.cumsum(-1)
    if kind in ("crossing-dropped", "crossing-protected"):
        drop = cum > p
        drop[:, 0] &= kind == "crossing-dropped"
    elif kind == "keeps-extra":
        drop = torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1] - probs[:, :-1]], -1) >= p
    else:
        drop = cum - probs >= p
    if kind == "sorted-order":
        return sorted_logits.masked_fill(drop, NEG_INF)
    if kind == "not-mapped-back":
        return logits.masked_fill(drop, NEG_INF)
    back = drop.gather(-1, order) if kind == "unsort-gather" else drop.scatter(-1, order, drop)
    return logits.masked_fill(back, NEG_INF)


_TOP_P_MISTAKES = [
    Mistake(C.CROSSING_DROPPED, "dropping the token whose probability makes the total cross p (the kept "
            "mass stays below p)", {"kind": "crossing-dropped"}),
    Mistake(C.CROSSING_DROPPED, "dropping the token whose probability makes the total cross p, with the "
            "most likely token always kept (drop = cumsum > p, drop[:, 0] = False): the kept mass stays "
            "below p wherever the top token alone is short of it", {"kind": "crossing-protected"}),
    Mistake(C.KEEPS_EXTRA, "keeping one token more than needed (the token after the one that reaches p)",
            {"kind": "keeps-extra"}),
    Mistake(C.NOT_SORTED, "adding up the probabilities in vocabulary order instead of from the most likely "
            "down", {"kind": "not-sorted"}),
    Mistake(C.ASCENDING, "sorting from the least likely up", {"kind": "ascending"}),
    Mistake(C.MASS_ON_LOGITS, "adding up the logits instead of probabilities (no softmax before the cumsum)",
            {"kind": "mass-on-logits"}),
    Mistake(C.SORTED_ORDER, "returning the logits in sorted order (never mapped back to vocabulary order)",
            {"kind": "sorted-order"}),
    Mistake(C.SORTED_ORDER, "applying the decision, made in sorted order, to the logits in vocabulary order: "
            "it is never mapped back (scatter it back with the sort's indices)", {"kind": "not-mapped-back"}),
    Mistake(C.UNSORT_GATHER, "mapping the decision back to vocabulary order with gather instead of scatter",
            {"kind": "unsort-gather"}),
]  # fmt: skip


def _same_filtered(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same -inf pattern and the same finite values."""
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    same_pattern = a.shape == b.shape and torch.equal(fa, fb)
    return same_pattern and torch.allclose(a[fa].double(), b[fb].double(), atol=1e-5)


def _describe_row(logits_row: torch.Tensor, p: float) -> str:
    probs = F.softmax(logits_row.double(), -1).sort(descending=True).values
    shown = ", ".join(f"{q:.2f}" for q in probs[:8].tolist()) + (", ..." if probs.numel() > 8 else "")
    return f"probabilities sorted {shown}; p = {p}"


def _kept_words(logits_row: torch.Tensor, keep: torch.Tensor) -> str:
    n, mass = int(keep.sum()), F.softmax(logits_row.double(), -1)[keep].sum().item()
    return f"{n} token{'s' if n != 1 else ''} (mass {mass:.2f})"


def _nucleus_words(logits_row: torch.Tensor, p: float) -> str:
    probs = F.softmax(logits_row.double(), -1).sort(descending=True).values
    n = int((probs.cumsum(-1) < p).sum()) + 1 if p < 1 else int((probs > 0).sum())
    return f"the {n} most likely (mass {probs[:n].sum().item():.2f})"


def _top_p_failure(
    case: str, logits: torch.Tensor, p: float, out: torch.Tensor, wrong: torch.Tensor, short: torch.Tensor
) -> CheckFailure:
    """Name the mistake behind a wrong set of kept tokens (`wrong`, `short`: see _check_top_p_case)."""
    ex, what, kept = TOP_P, f"top_p_filter on {case}", torch.isfinite(out)
    if p < 1.0:
        found = find_mistake(
            _TOP_P_MISTAKES, lambda kind: _same_filtered(out, _top_p_variant(logits, p, kind)), pairs=False
        )
        if found:
            return matched(ex, what, found)
    if not kept.any(-1).all():
        row = int((~kept.any(-1)).nonzero()[0])
        return ex.fail(
            C.KEEPS_NONE,
            f"{what}: row {row} has every logit -inf, so sampling from it gives NaN. The most likely token "
            f"must always stay ({_describe_row(logits[row], p)}).",
        )
    if p >= 1.0:
        dropped = int((~kept & torch.isfinite(logits)).sum())
        return ex.fail(
            C.P_ONE,
            f"{what}: {dropped} token{'s were' if dropped != 1 else ' was'} dropped; with p = 1 every token "
            "stays (only the whole distribution has mass 1).",
        )
    row = int((wrong.any(-1) if wrong.any() else short).nonzero()[0])
    return ex.fail(
        C.WRONG_SET if wrong.any() else C.TIES,
        f"{what}: row {row} ({_describe_row(logits[row], p)}) keeps {_kept_words(logits[row], kept[row])}; "
        f"the nucleus is {_nucleus_words(logits[row], p)}, the smallest set of most likely tokens whose "
        "probability reaches p.",
    )


def _check_top_p_case(fn: Ref, case: str, logits: torch.Tensor, p: float) -> None:
    ex, what = TOP_P, f"top_p_filter on {case}"
    call = ex.run("top_p_filter", fn, logits, p)
    untouched(ex, "top_p_filter", call, "its input tensor", _IN_PLACE)
    out = _tensor_out(ex, what, call.value, tuple(logits.shape))
    if not out.is_floating_point():
        raise ex.fail(C.WRONG_SHAPE, f"{what} returned dtype {out.dtype}; expected float logits.")
    must, may, need_ties = _nucleus_bounds(logits, p)
    finite_in = torch.isfinite(logits)
    # nothing dropped, yet it should be:
    if not torch.isinf(out[finite_in]).any() and (finite_in & ~may).any():
        if torch.equal(out[may], logits[may]) and (out[finite_in & ~may] == 0).all():
            raise ex.fail(C.ZEROS_NOT_INF, f"{what} set the dropped tokens to 0 instead of -inf.")
        if ((out >= 0) & (out <= 1)).all():
            raise ex.fail(
                C.PROBABILITIES,
                f"{what} returned numbers in [0, 1] (probabilities?); expected the logits, with -inf for "
                "the dropped tokens.",
            )
        if torch.equal(out, logits):
            raise ex.fail(
                C.NOTHING_DROPPED,
                f"{what} returned the logits unchanged, but row 0 ({_describe_row(logits[0], p)}) has a "
                f"nucleus of {_nucleus_words(logits[0], p)}.",
            )
    kept = torch.isfinite(out)
    wrong = (kept & ~may) | (must & ~kept)  # (B, V): kept outside the nucleus, or dropped inside it
    short = (kept & ~must).sum(-1) < need_ties  # (B,): fewer of the tied edge tokens kept than needed
    if wrong.any() or short.any():
        raise _top_p_failure(case, logits, p, out, wrong, short)
    if not torch.allclose(out[kept].double(), logits[kept].double(), atol=1e-6, rtol=0):
        if ((out[kept] >= 0) & (out[kept] <= 1)).all():
            raise ex.fail(
                C.PROBABILITIES,
                f"{what} kept the right tokens but returned their probabilities; return their logits "
                "(the softmax comes later).",
            )
        raise ex.fail(
            C.VALUES_CHANGED,
            f"{what} kept the right tokens but changed their logits (by up to {max_diff(out[kept], logits[kept]):.3g}).",
        )


@TOP_P.check(grad=False)
def check_top_p_filter(fn: Ref) -> None:
    """Check `top_p_filter(logits (B, V), p) -> (B, V)`: the nucleus keeps its logits, the rest is -inf."""
    expect_callable(TOP_P, fn, "top_p_filter")
    for case, logits, p in _P_CASES:
        _check_top_p_case(fn, case, logits, p)
    TOP_P.passed(
        f"the smallest set of most likely tokens whose mass reaches p keeps its logits, the rest is -inf, in "
        f"{len(_P_CASES)} cases (the token that crosses p, p = 0.05 and 1, ties, -inf inputs, 50 tokens); "
        "the input is unchanged."
    )


# ==== 8.2 choose_next: greedy, temperature, top-k, top-p ============================================

SAMPLING = Exercise(
    "sampling_strategies",
    [C.NOT_CALLABLE, C.NOT_A_TENSOR, C.NAN, C.WRONG_SHAPE, C.WRONG_DTYPE, C.IN_PLACE, C.GREEDY_NOT_ARGMAX,
     C.GREEDY_DIVIDES_BY_ZERO, C.GENERATOR_IGNORED, C.TEMPERATURE_MULTIPLIED, C.TEMPERATURE_IGNORED, C.TOPK_IGNORED,
     C.TOPK_OFF_BY_ONE, C.TOPK_ZERO, C.TOPP_IGNORED, C.TOPP_WRONG, C.TOPP_BEFORE_TEMPERATURE, C.FILTERS_SWAPPED,
     C.SOFTMAX_TWICE, C.ROWS_MIXED, C.WRONG_DISTRIBUTION, C.RETURNED_NONE, C.RETURNED_TUPLE],
)  # fmt: skip
# Three rows of logits (V = 8): no ties, negative values, the maximum not at id 0. Three, so that
# top-p before top-k differs from both "top-k ignored" (one row) and "top-p ignored" (another).
_S_ROWS = torch.tensor(
    [
        [0.3, 2.1, -1.2, 1.4, 0.0, -0.4, 0.9, -2.0],
        [-0.5, 0.2, 1.7, -1.0, 1.1, 0.6, -1.6, 0.0],
        [1.3, -0.8, 0.2, 1.0, 1.2, -0.1, -0.2, 0.9],
    ]
)
_S_N_ROWS = _S_ROWS.size(0)
_S_DRAWS = 4000  # per row: the usual slips are far outside a chi-square test at this size
# (temperature, top_k, top_p): each slip changes the distribution of at least one case a lot.
_S_CASES: list[tuple[float, int | None, float | None]] = [
    (1.0, None, None), (0.5, None, None), (2.0, None, None), (1.0, 3, None), (1.0, None, 0.8), (2.0, None, 0.8),
    (1.2, 4, 0.75),
]  # fmt: skip
_Z_1E6 = 4.753  # standard normal quantile for a one-in-a-million false alarm
_S_LIMIT = chi2_limit(_S_N_ROWS * (_S_ROWS.size(1) - 1), _Z_1E6)  # what a right sampler stays under


def _dist(temperature: float, top_k: int | None, top_p: float | None, mistake: str = "") -> torch.Tensor:
    """The exact next-token distribution of every row of _S_ROWS (rows, V), float64, with at most one known
    mistake."""
    x = _S_ROWS.double()
    t = {"temperature-multiplied": 1.0 / temperature, "temperature-ignored": 1.0}.get(mistake, temperature)
    k = {
        "topk-ignored": None,
        "topk-off-by-one+": top_k and top_k + 1,
        "topk-off-by-one-": top_k and max(1, top_k - 1),
    }.get(mistake, top_k)
    p = None if mistake == "topp-ignored" else top_p

    keep_top_k = partial(mask_top_k, k=k, fill=0.0 if mistake == "topk-zero" else NEG_INF)

    def keep_top_p(z: torch.Tensor) -> torch.Tensor:
        if p is None or p >= 1.0:
            return z
        return _top_p_variant(z, p, mistake.removeprefix("topp:") if mistake.startswith("topp:") else "right")

    if mistake == "topp-before-temperature":
        z = (x / t).masked_fill(~torch.isfinite(keep_top_p(keep_top_k(x))), NEG_INF)
    elif mistake == "filters-swapped":
        z = keep_top_k(keep_top_p(x / t))
    else:
        z = keep_top_p(keep_top_k(x / t))
    probs = F.softmax(z, dim=-1)
    return F.softmax(probs, dim=-1) if mistake == "softmax-twice" else probs


_S_MISTAKES = [
    Mistake(C.TEMPERATURE_MULTIPLIED, "multiplying the logits by the temperature instead of dividing",
            {"mistake": "temperature-multiplied"}),
    Mistake(C.TEMPERATURE_IGNORED, "a temperature that changes nothing", {"mistake": "temperature-ignored"}),
    Mistake(C.TOPK_IGNORED, "top_k being ignored", {"mistake": "topk-ignored"}),
    Mistake(C.TOPK_OFF_BY_ONE, "keeping k + 1 tokens", {"mistake": "topk-off-by-one+"}),
    Mistake(C.TOPK_OFF_BY_ONE, "keeping k - 1 tokens", {"mistake": "topk-off-by-one-"}),
    Mistake(C.TOPK_ZERO, "setting the logits outside the top k to 0 instead of -inf", {"mistake": "topk-zero"}),
    Mistake(C.TOPP_IGNORED, "top_p being ignored", {"mistake": "topp-ignored"}),
    *(Mistake(C.TOPP_WRONG, f"a top_p_filter {m.says}", {"mistake": "topp:" + m.kwargs["kind"]})
      for m in _TOP_P_MISTAKES),
    Mistake(C.TOPP_BEFORE_TEMPERATURE, "choosing the nucleus before applying the temperature",
            {"mistake": "topp-before-temperature"}),
    Mistake(C.FILTERS_SWAPPED, "applying top-p before top-k", {"mistake": "filters-swapped"}),
    Mistake(C.SOFTMAX_TWICE, "a softmax applied twice", {"mistake": "softmax-twice"}),
]  # fmt: skip


def _setting(t: float, k: int | None, p: float | None) -> str:
    return ", ".join(
        [f"temperature={t}"] + [f"{n}={v}" for n, v in (("top_k", k), ("top_p", p)) if v is not None]
    )


def _tokens_out(what: str, call: Call, B: int) -> torch.Tensor:
    """The learner's token ids as a (B, 1) long tensor, the logits untouched, or a named failure."""
    ex, out = SAMPLING, untouched(SAMPLING, "choose_next", call, "its input tensor", _IN_PLACE)
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (B,):
        raise ex.fail(
            C.WRONG_SHAPE, f"{what} returned shape ({B},); expected ({B}, 1): keep the last dimension."
        )
    return _tensor_out(ex, what, out, (B, 1), ids=True)


def _generator(seed: int) -> Ref:
    return build(Spec("Generator", (seed,)))


def _check_greedy(fn: Ref) -> None:
    ex = SAMPLING
    logits = _random_logits((32, 11), 21, 1.0)  # sampling would pick argmax in all 32 rows ~never
    for kwargs in ({}, {"top_k": 3, "top_p": 0.5}):
        what = f"choose_next(logits, temperature=0{''.join(f', {k}={v}' for k, v in kwargs.items())})"
        try:
            call = ex.run(what, fn, logits, 0.0, generator=_generator(0), **kwargs)
        except CheckFailure as e:
            text = e.message.lower()
            if e.diagnosis == C.CRASHED and ("inf" in text or "nan" in text or "zero" in text):
                raise ex.fail(
                    C.GREEDY_DIVIDES_BY_ZERO,
                    f"{what} crashed dividing by the temperature 0: {e.message.split(' raised ', 1)[-1]}",
                    e.crash,
                ) from None
            raise
        out = _tokens_out(what, call, logits.size(0))
        want = logits.argmax(-1, keepdim=True)
        if not torch.equal(out, want):
            raise ex.fail(
                C.GREEDY_NOT_ARGMAX,
                f"{what} gave {int((out != want).sum())} of {logits.size(0)} rows a token other than the most likely "
                f"one (got {out.flatten().tolist()}, expected {want.flatten().tolist()}).",
            )


def _draw(fn: Ref, t: float, k: int | None, p: float | None, seed: int) -> torch.Tensor:
    """(_S_DRAWS, rows) token ids: one batch holding _S_DRAWS copies of every row, interleaved."""
    ex, B, V = SAMPLING, _S_N_ROWS * _S_DRAWS, _S_ROWS.size(1)
    logits = _S_ROWS.repeat(_S_DRAWS, 1)  # (B, V): rows 0, 1, 2, 0, 1, 2, ...
    what = f"choose_next(logits, {_setting(t, k, p)})"
    call = ex.run(what, fn, logits, t, top_k=k, top_p=p, generator=_generator(seed))
    out = _tokens_out(what, call, B)
    if out.min() < 0 or out.max() >= V:
        raise ex.fail(
            C.WRONG_DISTRIBUTION, f"{what} returned token ids outside 0..{V - 1}: {out.unique().tolist()}."
        )
    return out.view(_S_DRAWS, _S_N_ROWS)


def _fit(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """The chi-square of draw counts (rows, V) against probabilities (rows, V), summed row by row."""
    return sum(chi2(counts[r : r + 1], probs[r : r + 1]) for r in range(_S_N_ROWS))


def _distribution_failure(counts: torch.Tensor, t: float, k: int | None, p: float | None) -> CheckFailure:
    """Name the slip whose exact distribution the draws follow."""
    ex, n = SAMPLING, _S_DRAWS
    what = f"choose_next(logits, {_setting(t, k, p)})"
    fits = [_fit(counts, _dist(t, k, p, **m.kwargs)) for m in _S_MISTAKES]
    right = _dist(t, k, p)  # (rows, V)
    for perm in itertools.permutations(range(_S_N_ROWS)):
        if list(perm) != list(range(_S_N_ROWS)) and _fit(counts, right[list(perm)]) < _S_LIMIT:
            return ex.fail(
                C.ROWS_MIXED,
                f"{what}: the draws of some rows follow ANOTHER row's distribution: the rows got mixed up.",
            )
    best = min(range(len(fits)), key=fits.__getitem__)
    if fits[best] < _S_LIMIT:
        m = _S_MISTAKES[best]
        return ex.fail(m.code, f"{what}: the {_S_N_ROWS * n} draws follow the distribution of {m.says}.")
    table = ", ".join(
        f"{i}: {c / n:.3f} vs {q:.3f}"
        for i, (c, q) in enumerate(zip(counts[0].tolist(), right[0].tolist(), strict=True))
    )
    return ex.fail(
        C.WRONG_DISTRIBUTION,
        f"{what}: the draws do not follow softmax(top_p(top_k(logits / temperature))). Row 0, token: drawn "
        f"share vs exact probability: {table}.",
    )


@SAMPLING.check(grad=False)
def check_sampling_strategies(fn: Ref) -> None:
    """Check `choose_next(logits (B, V), temperature, top_k, top_p, generator) -> (B, 1)` token ids."""
    ex, V = SAMPLING, _S_ROWS.size(1)
    expect_callable(ex, fn, "choose_next")
    _check_greedy(fn)
    first = _draw(fn, 1.0, None, None, seed=7)
    seed_learner(123)  # a different global stream: a sampler that ignores the generator gives other tokens
    if not torch.equal(first, _draw(fn, 1.0, None, None, seed=7)):
        raise ex.fail(
            C.GENERATOR_IGNORED,
            "choose_next with two generators seeded alike gave different tokens: the draws do not come "
            "from the `generator` argument.",
        )
    for i, (t, k, p) in enumerate(_S_CASES):
        drawn = _draw(fn, t, k, p, seed=100 + i)
        counts = torch.stack([torch.bincount(drawn[:, r], minlength=V).double() for r in range(_S_N_ROWS)])
        if _fit(counts, _dist(t, k, p)) > _S_LIMIT:
            raise _distribution_failure(counts, t, k, p)
    ex.passed(
        f"temperature 0 is greedy (argmax); {len(_S_CASES)} settings of temperature, top_k and top_p draw "
        f"with the exact frequencies ({_S_N_ROWS * _S_DRAWS} draws each, chi-square); the generator decides "
        "the draws; the logits are unchanged."
    )


# ==== 8.3 attention with a KV cache =================================================================

KV_ATTENTION = Exercise(
    "kv_cache_attention",
    [C.NOT_CALLABLE, C.NOT_A_TENSOR, C.NAN, C.WRONG_SHAPE, C.IN_PLACE, C.CACHE_NOT_STORED, C.CACHE_LAYOUT,
     C.CACHE_LENGTH, C.CACHE_NOT_USED, C.CACHE_OVERWRITTEN, C.MASK_NOT_OFFSET, C.NO_MASK, C.MISSING_SCALE, C.NO_PROJ,
     C.MERGE_ORDER, C.CACHE_ORDER, C.VALUES_FROM_KEY, C.WRONG_VALUES, C.RETURNED_NONE, C.RETURNED_TUPLE],
)  # fmt: skip


def _attention_setup() -> tuple[CausalSelfAttention, torch.Tensor, GPTConfig]:
    cfg = GPTConfig(
        vocab_size=11,
        block_size=16,
        n_layer=1,
        n_head=4,
        n_embd=16,
        embd_pdrop=0.0,
        resid_pdrop=0.0,
        attn_pdrop=0.0,
    )
    attn = CausalSelfAttention(cfg).eval()
    g = torch.Generator().manual_seed(5)
    for prm in attn.parameters():
        prm.copy_(torch.randn(prm.shape, generator=g) * 0.4)  # sharp, unequal weights: slips show
    return attn, torch.randn(2, 12, 16, generator=g), cfg


def _variant_attention(
    attn: CausalSelfAttention, x: torch.Tensor, cache: dict[str, torch.Tensor], mistake: str = ""
) -> torch.Tensor:
    """attention_with_cache with at most one known mistake."""
    B, T, C_ = x.shape
    nh = attn.n_head
    q, k, v = (f(x).view(B, T, nh, C_ // nh).transpose(1, 2) for f in (attn.query, attn.key, attn.value))
    if mistake == "values-from-key":
        v = k
    new_k, new_v = k, v
    if "k" in cache and mistake == "new-first":
        k, v = torch.cat([k, cache["k"]], dim=2), torch.cat([v, cache["v"]], dim=2)
    elif "k" in cache and mistake != "cache-not-used":
        k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
    cache["k"], cache["v"] = (new_k, new_v) if mistake == "cache-overwritten" else (k, v)
    past = k.size(2) - T
    att = q @ k.transpose(-2, -1) / (1.0 if mistake == "missing-scale" else math.sqrt(C_ // nh))
    if mistake != "no-mask":
        allowed = torch.ones(T, past + T, dtype=torch.bool).tril(
            diagonal=0 if mistake == "mask-not-offset" else past
        )
        att = att.masked_fill(~allowed, NEG_INF)
    y = att.softmax(dim=-1) @ v  # (B, nh, T, hs)
    y = y.reshape(B, T, C_) if mistake == "merge-order" else y.transpose(1, 2).reshape(B, T, C_)
    return y if mistake == "no-proj" else attn.proj(y)


_KV_ATT_MISTAKES = [
    Mistake(C.CACHE_NOT_USED, "new positions attending only to each other, never to the cached keys and "
            "values", {"mistake": "cache-not-used"}),
    Mistake(C.CACHE_OVERWRITTEN, "a cache that keeps only the last call's keys and values",
            {"mistake": "cache-overwritten"}),
    Mistake(C.MASK_NOT_OFFSET, "a causal mask that is not shifted by the number of cached positions "
            "(is_causal=True, or tril on the new positions only), so query i sees keys 0..i instead of "
            "0..past + i", {"mistake": "mask-not-offset"}),
    Mistake(C.NO_MASK, "no causal mask (positions in one call see the ones after them)",
            {"mistake": "no-mask"}),
    Mistake(C.CACHE_ORDER, "the new keys and values put before the cached ones (torch.cat([k, cache['k']])): "
            "append them after the cached ones, in the order of the positions", {"mistake": "new-first"}),
    Mistake(C.VALUES_FROM_KEY, "the values taken from attn.key (v = k): the value comes from attn.value",
            {"mistake": "values-from-key"}),
    Mistake(C.MISSING_SCALE, "scores not scaled by 1/sqrt(head_size)", {"mistake": "missing-scale"}),
    Mistake(C.NO_PROJ, "the output projection attn.proj left out", {"mistake": "no-proj"}),
    Mistake(C.MERGE_ORDER, "heads merged by reshape without the transpose", {"mistake": "merge-order"}),
]  # fmt: skip
_SCHEDULES: list[tuple[str, list[int]]] = [
    ("all 12 positions in one call (empty cache)", [12]),
    ("one position per call", [1] * 12),
    ("calls of 5, 1, 3, 2 and 1 positions", [5, 1, 3, 2, 1]),
]


def _chunks(sizes: list[int]) -> list[tuple[int, int]]:
    return [(e - s, e) for s, e in zip(sizes, itertools.accumulate(sizes), strict=True)]


def _learner_schedule(
    fn: Ref, attn: CausalSelfAttention, spec: Spec, x: torch.Tensor, sizes: list[int], label: str
) -> torch.Tensor:
    """Feed x to the learner's function in chunks of `sizes` positions, one cache throughout."""
    ex = KV_ATTENTION
    cache, outs = build(Spec("dict")), []
    B, T, C_ = x.shape
    heads = (B, attn.n_head, C_ // attn.n_head)
    for a, b in _chunks(sizes):
        what = f"attention_with_cache ({label}), positions {a}..{b - 1}"
        try:
            call = ex.run(what, fn, spec, x[:, a:b], cache)
        except CheckFailure as e:
            stored = learner.backend().fetch(cache)
            if e.diagnosis == C.CRASHED and isinstance(stored, dict) and "k" in stored:
                # A cache of the wrong layout explains the crash better than the crash itself.
                _check_cache(stored, heads, b, b - a, what, layout_only=True)
            raise
        untouched(ex, "attention_with_cache", call, "its input tensor", _IN_PLACE)
        outs.append(_tensor_out(ex, what, call.value, (B, b - a, C_)))
        _check_cache(learner.backend().fetch(cache), heads, b, b - a, what)
    return torch.cat(outs, dim=1)


def _reference_schedule(
    attn: CausalSelfAttention, x: torch.Tensor, sizes: list[int], mistake: str
) -> torch.Tensor:
    cache: dict[str, torch.Tensor] = {}
    return torch.cat([_variant_attention(attn, x[:, a:b], cache, mistake) for a, b in _chunks(sizes)], dim=1)


def _check_cache(
    cache: Any, heads: tuple[int, int, int], seen: int, new: int, what: str, layout_only: bool = False
) -> None:
    """The cache dict holds 'k' and 'v' of every position seen, (B, n_head, seen, head_size); heads is
    (B, n_head, head_size)."""
    ex, (B, nh, hs) = KV_ATTENTION, heads
    want = (B, nh, seen, hs)
    if not isinstance(cache, dict) or "k" not in cache or "v" not in cache:
        found = sorted(cache) if isinstance(cache, dict) else type_name(cache)
        raise ex.fail(
            C.CACHE_NOT_STORED,
            f"after {what}, the cache dict holds {found}; expected 'k' and 'v', the keys and values of "
            f"all {seen} positions so far.",
        )
    for name in ("k", "v"):
        t = cache[name]
        four_dims = isinstance(t, torch.Tensor) and t.dim() == 4
        if not (four_dims and t.size(1) == nh and t.size(3) == hs):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type_name(t)
            heads_axis = ""
            if four_dims and t.size(1) % nh == 0 and t.size(3) == hs:  # a multiple of n_head in dim 1
                heads_axis = (
                    f" Its dim 1 holds {t.size(1)} = {t.size(1) // nh} x n_head: the new keys and values were "
                    "concatenated along dim 1, the heads axis; the positions are dim 2: torch.cat(..., dim=2)."
                )
            raise ex.fail(
                C.CACHE_LAYOUT,
                f"after {what}, cache['{name}'] has shape {shape}; expected {want} "
                f"(B, n_head, positions so far, head_size).{heads_axis}",
            )
        if layout_only:
            continue
        if t.size(2) == new != seen:
            raise ex.fail(
                C.CACHE_OVERWRITTEN,
                f"after {what}, cache['{name}'] holds only the {new} new positions; {seen} have been seen so far.",
            )
        if t.size(2) != seen:
            raise ex.fail(
                C.CACHE_LENGTH,
                f"after {what}, cache['{name}'] holds {t.size(2)} positions; {seen} have been seen so far.",
            )


@KV_ATTENTION.check(grad=False)
def check_kv_cache_attention(fn: Ref) -> None:
    """Check `attention_with_cache(attn, x_new (B, T, C), cache) -> (B, T, C)` against full attention."""
    ex = KV_ATTENTION
    expect_callable(ex, fn, "attention_with_cache")
    attn, x, cfg = _attention_setup()
    spec = module_spec("CausalSelfAttention", attn, config_spec(cfg))
    full = attn(x)  # (B, 12, C): gptlib's attention over the whole sequence at once
    for label, sizes in _SCHEDULES:
        out = _learner_schedule(fn, attn, spec, x, sizes, label)
        if torch.allclose(out, full, atol=1e-5, rtol=1e-4):
            continue
        what = f"attention_with_cache with {label}"
        found = match(
            out,
            partial(_reference_schedule, attn, x, sizes),
            _KV_ATT_MISTAKES,
            pairs=False,
            same=lambda ref, got: torch.allclose(got, ref, atol=1e-4, rtol=1e-3),
        )
        if found:
            raise matched(ex, what, found)
        bad = (out - full).abs().amax(dim=(0, 2)) > 1e-4
        raise ex.fail(
            C.WRONG_VALUES,
            f"{what} differs from attention over the whole sequence at positions {bad.nonzero().flatten().tolist()} "
            f"(largest difference {max_diff(out, full):.3g}).",
        )
    ex.passed(
        "fed all at once, one position at a time, or in uneven chunks, the cached attention equals gptlib's "
        "attention over the whole sequence; the cache holds every position's keys and values, split into heads."
    )


# ==== 8.4 generate with a KV cache ==================================================================

KV_GENERATE = Exercise(
    "kv_cache_generate",
    [C.NOT_CALLABLE, C.NOT_A_TENSOR, C.NAN, C.WRONG_SHAPE, C.WRONG_DTYPE, C.IN_PLACE, C.PROMPT_CHANGED,
     C.USES_FINISHED_GENERATE, C.TRAIN_MODE, C.NOT_CROPPED, C.WINDOW_FULL, C.FRESH_CACHE, C.PREFILL_NOT_CACHED,
     C.WINDOW_SHORT, C.FIRST_POSITION, C.SAMPLING_IGNORED, C.TOKEN_TWICE, C.NO_SPEEDUP, C.RECOMPUTE_EARLY,
     C.EXTRA_WORK, C.WRONG_TOKENS, C.RETURNED_NONE, C.RETURNED_TUPLE],
)  # fmt: skip


_BS = 8  # the block_size of the generation model


def _generation_model() -> GPT:
    # dropout 0.1 (the default): eval mode matters
    model = GPT(GPTConfig(vocab_size=13, block_size=_BS, n_layer=2, n_head=2, n_embd=16))
    g = torch.Generator().manual_seed(11)
    for prm in model.parameters():
        if prm.dim() > 1:  # weights and the position table (zeros at init): random, so positions matter
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.5)
    return model.train()


def _variant_generate(
    model: GPT, idx: torch.Tensor, n: int, sampling: dict[str, Any], mistake: str = ""
) -> tuple[torch.Tensor, int]:
    """A cached generation loop in eval mode, seeded as the check seeds the learner's, with at most one known
    mistake: (tokens, positions run)."""
    bs, run, options = model.eval().block_size, 0, _seeded(sampling)

    def forward(ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        nonlocal run
        run += ids.size(1)
        return model(ids, cache=cache)[0]

    cache = KVCache(len(model.blocks), bs)
    logits = forward(idx[:, -bs:], None if mistake == "prefill-not-cached" else cache)
    for i in range(n):
        tok = _next_token(logits[:, 0 if mistake == "first-position" else -1, :], **options)
        idx = torch.cat((idx, tok), dim=1)
        if i == n - 1 and mistake != "extra-final":
            break
        if mistake == "fresh-cache":
            logits = forward(tok)
        elif mistake == "no-speedup":
            logits = forward(idx[:, -bs:])
        elif cache.length < (bs - 1 if mistake == "recompute-early" else bs):
            logits = forward(tok, cache)
        else:
            logits = forward(idx[:, -(bs - 1 if mistake == "window-short" else bs) :])
    return idx, run


_KV_GEN_MISTAKES = [
    Mistake(C.FRESH_CACHE, "running each new token with no cache (or a new one), as if it stood at "
            "position 0 with nothing before it", {"mistake": "fresh-cache"}),
    Mistake(C.PREFILL_NOT_CACHED, "running the prompt without the cache, so the new tokens never see it",
            {"mistake": "prefill-not-cached"}),
    Mistake(C.WINDOW_SHORT, "recomputing a window of block_size - 1 tokens once the cache is full",
            {"mistake": "window-short"}),
    Mistake(C.FIRST_POSITION, "choosing each token from the logits of the FIRST position instead of the "
            "last", {"mistake": "first-position"}),
]  # fmt: skip
# (what, batch of prompts (B, T), max_new_tokens, sampling options)
_GEN_CASES: list[tuple[str, tuple[int, int], int, dict[str, Any]]] = [
    ("a 3-token prompt and 12 new tokens (the window slides past block_size = 8)", (2, 3), 12, {}),
    ("a prompt of exactly block_size = 8 tokens", (2, 8), 5, {}),
    ("an 11-token prompt, longer than block_size = 8", (2, 11), 4, {}),
    ("a 1-token prompt and 1 new token", (1, 1), 1, {}),
    ("a 3-token prompt and 12 sampled tokens", (2, 3), 12, dict(do_sample=True, temperature=0.9, top_k=5)),
]


def _seeded(sampling: dict[str, Any], build_it: bool = False) -> dict[str, Any]:
    """The sampling options with a freshly seeded generator (the same draws every time)."""
    if not sampling:
        return {}
    return dict(sampling, generator=_generator(3) if build_it else torch.Generator().manual_seed(3))


def _cached_sequences(fed: list[tuple[torch.Tensor, int | None, int]]) -> list[list[torch.Tensor]]:
    """The ids fed with each KV cache, call by call, in order (a pass into an empty cache starts a new one:
    a new cache may reuse a dropped one's id)."""
    groups: list[list[torch.Tensor]] = []
    current: dict[int, list[torch.Tensor]] = {}
    for ids, cache, past in fed:
        if cache is None:
            continue
        if past == 0 or cache not in current:
            current[cache] = []
            groups.append(current[cache])
        current[cache].append(ids)
    return groups


def _fed_twice(fed: list, out: torch.Tensor | None = None) -> bool:
    """A token fed to a KV cache twice: some cached pass starts with the token the pass before it ended with,
    and (when the tokens are known) what the cache was fed is no slice of them until those repeats go."""

    def is_slice(seq: torch.Tensor) -> bool:
        L = seq.size(1)
        return any(torch.equal(out[:, s : s + L], seq) for s in range(out.size(1) - L + 1))

    for calls in _cached_sequences(fed):
        repeats = [
            i + 1
            for i, (a, b) in enumerate(zip(calls, calls[1:], strict=False))
            if torch.equal(a[:, -1:], b[:, :1])
        ]
        if not repeats:
            continue
        if out is None:
            return True
        kept = [c[:, 1:] if i in repeats else c for i, c in enumerate(calls)]
        if not is_slice(torch.cat(calls, dim=1)) and is_slice(torch.cat(kept, dim=1)):
            return True
    return False


def _learner_generate(
    fn: Ref, model: Ref, prompt: torch.Tensor, n: int, what: str, sampling: dict
) -> tuple[torch.Tensor, list]:
    """The learner's tokens (checked for shape, dtype, the prompt) and what their loop fed the model."""
    ex = KV_GENERATE
    train(ex, model, True)  # the function must put the model in eval mode itself
    start = len(attribute(ex, "model.fed", model, "fed"))
    try:
        call = ex.run(what, fn, model, prompt, n, **_seeded(sampling, build_it=True))
    except CheckFailure as e:
        if attribute(ex, "model.generate_called", model, "generate_called"):
            raise ex.fail(
                C.USES_FINISHED_GENERATE,
                "generate_with_cache called model.generate, gptlib's finished version: write the loop yourself.",
            ) from None
        error = e.message.split(" raised ", 1)[-1]
        if e.diagnosis == C.CRASHED and ("KV cache full" in e.message or " cached + " in e.message):
            if _fed_twice(attribute(ex, "model.fed", model, "fed")[start:]):
                raise ex.fail(C.TOKEN_TWICE, _TWICE, e.crash) from None
            raise ex.fail(
                C.WINDOW_FULL,
                f"{what} went on adding positions to a full KV cache (block_size = {_BS}): {error}",
                e.crash,
            ) from None
        if e.diagnosis == C.CRASHED and "Cannot forward" in e.message:
            raise ex.fail(
                C.NOT_CROPPED,
                f"{what} gave the model more than block_size = {_BS} positions: {error}",
                e.crash,
            ) from None
        raise
    untouched(ex, "generate_with_cache", call, "its input tensor", _IN_PLACE)
    B, T = prompt.shape
    out = call.value
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, n) and n != T + n:
        raise ex.fail(
            C.WRONG_SHAPE,
            f"{what} returned shape {(B, n)}, only the new tokens; return the prompt followed by them, {(B, T + n)}.",
        )
    out = _tensor_out(ex, what, out, (B, T + n), ids=True)
    if not torch.equal(out[:, :T], prompt):
        raise ex.fail(C.PROMPT_CHANGED, f"{what}: the result does not start with the prompt.")
    return out, attribute(ex, "model.fed", model, "fed")[start:]


_TWICE = (
    "generate_with_cache fed a token to the KV cache twice: a forward pass with the cache started with the token "
    "the previous one ended with, so the cache holds it at two positions and every later position is one too "
    "far (with block_size = 8 the cache also fills too soon). After the prompt, feed each new token once: "
    "model(tok, cache=cache) with the (B, 1) token just chosen."
)


def _token_failure(
    model: GPT, prompt: torch.Tensor, n: int, sampling: dict[str, Any], out: torch.Tensor, want: torch.Tensor,
    what: str, fed: list,
) -> CheckFailure:  # fmt: skip
    ex, T = KV_GENERATE, prompt.size(1)
    found = find_mistake(
        _KV_GEN_MISTAKES,
        lambda mistake: torch.equal(_variant_generate(model, prompt, n, sampling, mistake)[0], out),
        pairs=False,
    )
    if found:
        return matched(ex, what, found)
    if sampling and torch.equal(_variant_generate(model, prompt, n, {})[0], out):
        return ex.fail(
            C.SAMPLING_IGNORED, f"{what} gave the greedy tokens: the sampling options were not used."
        )
    if _fed_twice(fed, out):
        return ex.fail(C.TOKEN_TWICE, _TWICE)
    first = int((out[:, T:] != want[:, T:]).any(0).nonzero()[0])
    return ex.fail(
        C.WRONG_TOKENS,
        f"{what}: new token {first} (counting from 0) differs from gptlib's generate: got "
        f"{out[:, T:].tolist()}, expected {want[:, T:].tolist()}.",
    )


def _check_work(
    model: GPT, label: str, prompt: torch.Tensor, n: int, sampling: dict[str, Any], used: int
) -> None:
    """The learner's loop ran no more positions through the model than a cache needs.

    Allowed: exactly what gptlib's loop runs, or that plus one forward pass after the last token
    (logits that are never used)."""
    ex = KV_GENERATE

    def positions(mistake: str) -> int:
        return _variant_generate(model, prompt, n, sampling, mistake)[1]

    needed = positions("")
    if used <= needed or used == positions("extra-final"):
        return
    what = f"generate_with_cache with {label}"
    words = f"ran {used} positions through the model, where a KV cache needs {needed}"
    if used >= positions("no-speedup"):
        raise ex.fail(
            C.NO_SPEEDUP,
            f"{what} {words}: the tokens are right, but every step runs the whole context again, so the "
            "cache saves nothing.",
        )
    if used == positions("recompute-early"):
        raise ex.fail(
            C.RECOMPUTE_EARLY,
            f"{what} {words}: it recomputes the window one step before the cache is full (off by one).",
        )
    raise ex.fail(C.EXTRA_WORK, f"{what} {words}.")


@KV_GENERATE.check(grad=False)
def check_kv_cache_generate(fn: Ref) -> None:
    """Check `generate_with_cache(model, idx, max_new_tokens, **sampling)` against gptlib's generate."""
    ex = KV_GENERATE
    expect_callable(ex, fn, "generate_with_cache")
    model = _generation_model()
    learner_model = build(module_spec("lesson08:RecordingGPT", model, config_spec(model.config)))
    V = model.config.vocab_size
    for i, (label, shape, n, sampling) in enumerate(_GEN_CASES):
        prompt = torch.randint(0, V, shape, generator=torch.Generator().manual_seed(20 + i))
        what = f"generate_with_cache with {label}"
        out, fed = _learner_generate(fn, learner_model, prompt, n, what, sampling)
        want = _reference_generate(model, prompt, n, **_seeded(sampling))
        if not torch.equal(out, want):
            again, _ = _learner_generate(fn, learner_model, prompt, n, what, sampling)
            if not torch.equal(again, out):
                raise ex.fail(
                    C.TRAIN_MODE,
                    f"{what} gave different tokens on two runs with the same input: dropout is on (the "
                    "model is in training mode).",
                )
            raise _token_failure(model, prompt, n, sampling, out, want, what, fed)
        _check_work(model, label, prompt, n, sampling, sum(ids.size(1) for ids, _, _ in fed))
    ex.passed(
        f"the same tokens as gptlib's generate in {len(_GEN_CASES)} cases (greedy and seeded sampling; "
        "prompts shorter than, equal to and longer than block_size; the window sliding); after the prompt, "
        "one new position per step until the window is full."
    )
