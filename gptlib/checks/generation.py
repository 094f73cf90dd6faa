"""Checks for lesson 08, generation and speed (part 1): top-p and the sampling strategies.

- `top_p_filter(logits, p)`: the kept tokens must be the smallest set of most likely
  tokens whose probability reaches p (ties at the edge may all stay), kept logits unchanged,
  the rest -inf.
- `choose_next(logits, temperature, top_k, top_p, generator)`: greedy at temperature 0;
  otherwise thousands of draws from a fixed generator are compared with the exact
  distribution (a chi-square test), and a mismatch with the distribution of a known slip.

As in the other lessons, a wrong answer is matched against references with one known
mistake switched on, and the failure names that mistake. The KV cache checks of the same
lesson are in kv_cache.py.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gptlib.checks.base import CheckFailure, call, isolated, max_diff, passed, reject_none_or_tuple
from gptlib.checks.hints import register_hints

__all__ = ["check_top_p_filter", "check_sampling_strategies"]

NEG_INF = float("-inf")


def _isolated(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """`isolated`, with autograd off too: the generation and KV-cache checks need no gradients."""
    return isolated(check, no_grad=True)


def _is_function(exercise: str, fn: Any, name: str) -> None:
    if not callable(fn):
        raise CheckFailure(
            exercise, "not-a-function", f"expected the function `{name}`, got {type(fn).__name__} {fn!r:.60}."
        )


def _tensor_out(exercise: str, what: str, out: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """The learner's result as a tensor of the given shape (-inf allowed, NaN not)."""
    reject_none_or_tuple(exercise, what, out, "return one tensor.")
    if not isinstance(out, torch.Tensor):
        raise CheckFailure(exercise, "not-a-tensor", f"{what} returned a {type(out).__name__}, not a tensor.")
    if tuple(out.shape) != tuple(shape):
        raise CheckFailure(
            exercise, "wrong-shape", f"{what} returned shape {tuple(out.shape)}; expected {tuple(shape)}."
        )
    if out.is_floating_point() and torch.isnan(out).any():
        raise CheckFailure(
            exercise,
            "nan",
            f"{what} returned NaN values. A NaN appears when a whole row is -inf before a softmax, or from "
            "0 * inf or inf - inf.",
        )
    return out


def _unchanged(exercise: str, what: str, before: torch.Tensor, after: torch.Tensor) -> None:
    if not torch.equal(before, after):
        raise CheckFailure(
            exercise,
            "in-place",
            f"{what} changed its input tensor in place, and the caller may still need it. Make new tensors "
            "(`y = x / t`, `masked_fill`, `torch.cat`), not `x /= t`, `masked_fill_` or `x[...] = ...`.",
        )


# ==== 8.1 top_p_filter ================================================================================

_TOP_P = "top_p_filter"

register_hints(
    _TOP_P,
    levels=[
        "Sort each row's tokens from most to least likely, add up their probabilities in that order, and "
        "keep tokens until the running total reaches p. The token that makes the total cross p stays in; "
        "every token after it gets a logit of -inf. Then put the decision back in vocabulary order.",
        "`sorted_logits, order = torch.sort(logits, dim=-1, descending=True)`, `probs = "
        "F.softmax(sorted_logits, dim=-1)`. A token must go when the probability of the tokens ranked ABOVE "
        "it already reaches p: `mass_before = probs.cumsum(-1) - probs`, `drop_sorted = mass_before >= p` "
        "(never true for the first token, so a row is never empty). `drop_sorted.scatter(-1, order, "
        "drop_sorted)` moves the decision back to vocabulary order (position order[i] gets entry i).",
        "sorted_logits, order = torch.sort(logits, dim=-1, descending=True)   # (B, V)\n"
        "probs = F.softmax(sorted_logits, dim=-1)                             # (B, V), sorted\n"
        "mass_before = probs.cumsum(dim=-1) - probs      # mass of the tokens ranked above each one\n"
        "drop_sorted = mass_before >= p                  # p already reached without this token\n"
        "drop = drop_sorted.scatter(-1, order, drop_sorted)   # back to vocabulary order\n"
        "return logits.masked_fill(drop, float('-inf'))",
    ],
    diagnoses={
        "not-a-function": "pass the function itself: check_top_p_filter(top_p_filter).",
        "not-a-tensor": "return a tensor: logits.masked_fill(drop, float('-inf')).",
        "crashed": "print the shapes of what you sort, cumsum and scatter: all of them are (B, V), and every "
        "operation works along dim=-1.",
        "wrong-shape": "return a tensor shaped like the logits, (B, V): the same logits with some set to "
        "-inf.",
        "nan": "softmax the logits once to get probabilities; never build a row that is entirely -inf.",
        "in-place": "use `logits.masked_fill(drop, float('-inf'))` (a new tensor), not masked_fill_ or "
        "item assignment on the input.",
        "crossing-dropped": "keep the token whose probability makes the running total cross p: drop a token "
        "only when the mass of the tokens ranked above it (cumsum - probs) already reaches p.",
        "keeps-none": "the most likely token must always stay, whatever p: drop a token only when the tokens "
        "ranked ABOVE it already reach p (cumsum - probs >= p), which is never true for the first.",
        "keeps-extra": "stop at the first token whose running total reaches p; the tokens after it go.",
        "not-sorted": "add up the probabilities from the most likely token down: sort first "
        "(torch.sort(..., descending=True)), not in vocabulary order.",
        "ascending": "sort with descending=True: the nucleus is made of the MOST likely tokens.",
        "mass-on-logits": "the running total must be of probabilities: apply F.softmax to the sorted logits "
        "before cumsum (logits are not probabilities and do not sum to 1).",
        "sorted-order": "the decisions are made in sorted order; put them back in vocabulary order with "
        "`drop_sorted.scatter(-1, order, drop_sorted)` before masking the original logits.",
        "unsort-gather": "to undo a sort use scatter, not gather: position order[i] of the result must get "
        "entry i of the sorted decision: `drop_sorted.scatter(-1, order, drop_sorted)`.",
        "returns-probabilities": "return logits (with -inf for the dropped tokens), not probabilities: the "
        "softmax comes later, after every filter.",
        "zeros-not-inf": "set the dropped logits to float('-inf'), not 0: a logit of 0 is still a likely "
        "token; only exp(-inf) = 0 removes it.",
        "nothing-dropped": "tokens outside the nucleus must be set to -inf; your result still holds them.",
        "values-changed": "leave the kept logits exactly as they were: only the dropped ones change (to "
        "-inf).",
        "p-one": "with p = 1 nothing may be dropped. A float32 cumsum can end at 1.0000001 > 1, so compare "
        "the mass BEFORE each token (cumsum - probs) with p rather than the cumsum itself.",
        "ties": "tokens with equal logits must be treated alike or one of them kept: check how you sort and "
        "how you map the decision back.",
        "wrong-set": "compare with: sort descending, probabilities by softmax, drop where cumsum - probs >= "
        "p, scatter back to vocabulary order.",
    },
)


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
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


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
    probs = F.softmax(x, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cum = sorted_probs.cumsum(-1)
    if p >= 1.0:
        return finite, finite, torch.zeros(x.size(0), dtype=torch.long)
    n = (cum < p).sum(-1) + 1  # (B,): tokens needed to reach p
    edge = x.gather(-1, order.gather(-1, (n - 1).unsqueeze(-1)))  # (B, 1): the n-th most likely logit
    must = x > edge
    may = x >= edge
    need_ties = n - must.sum(-1)
    return must, may, need_ties


def _top_p_variant(logits: torch.Tensor, p: float, kind: str) -> torch.Tensor:
    """The output of top_p_filter with one known mistake."""
    if kind == "not-sorted":
        probs = F.softmax(logits.double(), -1)
        return logits.masked_fill(probs.cumsum(-1) - probs >= p, NEG_INF)
    descending = kind != "ascending"
    sorted_logits, order = torch.sort(logits, dim=-1, descending=descending)
    probs = F.softmax(sorted_logits.double(), dim=-1)
    if kind == "mass-on-logits":
        probs = sorted_logits.double().masked_fill(~torch.isfinite(sorted_logits), 0.0)
    cum = probs.cumsum(-1)
    if kind == "crossing-dropped":
        drop = cum > p
    elif kind == "keeps-extra":
        drop = torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1] - probs[:, :-1]], -1) >= p
    else:
        drop = cum - probs >= p
    if kind == "sorted-order":
        return sorted_logits.masked_fill(drop, NEG_INF)
    back = drop.gather(-1, order) if kind == "unsort-gather" else drop.scatter(-1, order, drop)
    return logits.masked_fill(back, NEG_INF)


_TOP_P_MISTAKES = {
    "crossing-dropped": "dropping the token whose probability makes the total cross p (the kept mass stays "
    "below p)",
    "keeps-extra": "keeping one token more than needed (the token after the one that reaches p)",
    "not-sorted": "adding up the probabilities in vocabulary order instead of from the most likely down",
    "ascending": "sorting from the least likely up",
    "mass-on-logits": "adding up the logits instead of probabilities (no softmax before the cumsum)",
    "sorted-order": "returning the logits in sorted order (never mapped back to vocabulary order)",
    "unsort-gather": "mapping the decision back to vocabulary order with gather instead of scatter",
}


def _same_filtered(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same -inf pattern and the same finite values."""
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    return (
        a.shape == b.shape
        and torch.equal(fa, fb)
        and torch.allclose(a[fa].double(), b[fb].double(), atol=1e-5)
    )


def _describe_row(logits_row: torch.Tensor, p: float) -> str:
    probs = F.softmax(logits_row.double(), -1).sort(descending=True).values
    shown = ", ".join(f"{q:.2f}" for q in probs[:8].tolist()) + (", ..." if probs.numel() > 8 else "")
    return f"probabilities sorted {shown}; p = {p}"


def _kept_words(logits_row: torch.Tensor, keep: torch.Tensor) -> str:
    n = int(keep.sum())
    mass = F.softmax(logits_row.double(), -1)[keep].sum().item()
    return f"{n} token{'s' if n != 1 else ''} (mass {mass:.2f})"


def _nucleus_words(logits_row: torch.Tensor, p: float) -> str:
    probs = F.softmax(logits_row.double(), -1).sort(descending=True).values
    n = int((probs.cumsum(-1) < p).sum()) + 1 if p < 1 else int((probs > 0).sum())
    return f"the {n} most likely (mass {probs[:n].sum().item():.2f})"


def _top_p_failure(case: str, logits: torch.Tensor, p: float, out: torch.Tensor) -> CheckFailure:
    """Name the mistake behind a wrong set of kept tokens."""
    what = f"top_p_filter on {case}"
    kept = torch.isfinite(out)
    if p < 1.0:
        for kind, says in _TOP_P_MISTAKES.items():
            if _same_filtered(out, _top_p_variant(logits, p, kind)):
                return CheckFailure(_TOP_P, kind, f"{what} matches {says}.")
    if not kept.any(-1).all():
        row = int((~kept.any(-1)).nonzero()[0])
        return CheckFailure(
            _TOP_P,
            "keeps-none",
            f"{what}: row {row} has every logit -inf, so sampling from it gives NaN. The most likely token "
            f"must always stay ({_describe_row(logits[row], p)}).",
        )
    if p >= 1.0:
        dropped = int((~kept & torch.isfinite(logits)).sum())
        return CheckFailure(
            _TOP_P,
            "p-one",
            f"{what}: {dropped} token{'s were' if dropped != 1 else ' was'} dropped; with p = 1 every token "
            "stays (only the whole distribution has mass 1).",
        )
    must, may, need_ties = _nucleus_bounds(logits, p)
    wrong = (kept & ~may) | (must & ~kept)
    code = "wrong-set" if wrong.any() else "ties"
    row = (
        int(wrong.any(-1).nonzero()[0])
        if wrong.any()
        else int(((kept & ~must).sum(-1) < need_ties).nonzero()[0])
    )
    return CheckFailure(
        _TOP_P,
        code,
        f"{what}: row {row} ({_describe_row(logits[row], p)}) keeps {_kept_words(logits[row], kept[row])}; "
        f"the nucleus is {_nucleus_words(logits[row], p)}, the smallest set of most likely tokens whose "
        "probability reaches p.",
    )


def _check_top_p_case(top_p_filter: Callable[..., Any], case: str, logits: torch.Tensor, p: float) -> None:
    what = f"top_p_filter on {case}"
    x = logits.clone()
    out = call(_TOP_P, "top_p_filter", top_p_filter, x, p)
    _unchanged(_TOP_P, "top_p_filter", logits, x)
    out = _tensor_out(_TOP_P, what, out, tuple(logits.shape))
    if not out.is_floating_point():
        raise CheckFailure(
            _TOP_P, "wrong-shape", f"{what} returned dtype {out.dtype}; expected float logits."
        )
    must, may, need_ties = _nucleus_bounds(logits, p)
    finite_in = torch.isfinite(logits)
    if (
        not torch.isinf(out[finite_in]).any() and (finite_in & ~may).any()
    ):  # nothing dropped, yet it should be
        if torch.equal(out[may], logits[may]) and (out[finite_in & ~may] == 0).all():
            raise CheckFailure(
                _TOP_P, "zeros-not-inf", f"{what} set the dropped tokens to 0 instead of -inf."
            )
        if ((out >= 0) & (out <= 1)).all():
            raise CheckFailure(
                _TOP_P,
                "returns-probabilities",
                f"{what} returned numbers in [0, 1] (probabilities?); expected the logits, with -inf for "
                "the dropped tokens.",
            )
        if torch.equal(out, logits):
            raise CheckFailure(
                _TOP_P,
                "nothing-dropped",
                f"{what} returned the logits unchanged, but row 0 ({_describe_row(logits[0], p)}) has a "
                f"nucleus of {_nucleus_words(logits[0], p)}.",
            )
    kept = torch.isfinite(out)
    if (kept & ~may).any() or (must & ~kept).any() or ((kept & ~must).sum(-1) < need_ties).any():
        raise _top_p_failure(case, logits, p, out)
    if not torch.allclose(out[kept].double(), logits[kept].double(), atol=1e-6, rtol=0):
        if ((out[kept] >= 0) & (out[kept] <= 1)).all():
            raise CheckFailure(
                _TOP_P,
                "returns-probabilities",
                f"{what} kept the right tokens but returned their probabilities; return their logits "
                "(the softmax comes later).",
            )
        raise CheckFailure(
            _TOP_P,
            "values-changed",
            f"{what} kept the right tokens but changed their logits (by up to "
            f"{max_diff(out[kept], logits[kept]):.3g}).",
        )


@_isolated
def check_top_p_filter(top_p_filter: Any) -> None:
    """Check `top_p_filter(logits (B, V), p) -> (B, V)`: the nucleus keeps its logits, the rest is -inf."""
    _is_function(_TOP_P, top_p_filter, "top_p_filter")
    for case, logits, p in _P_CASES:
        _check_top_p_case(top_p_filter, case, logits, p)
    passed(
        _TOP_P,
        f"the smallest set of most likely tokens whose mass reaches p keeps its logits, the rest is -inf, in "
        f"{len(_P_CASES)} cases (the token that crosses p, p = 0.05 and 1, ties, -inf inputs, 50 tokens); "
        "the input is unchanged.",
    )


# ==== 8.2 choose_next: greedy, temperature, top-k, top-p ==============================================

_SAMPLING = "sampling_strategies"

register_hints(
    _SAMPLING,
    levels=[
        "Greedy first: at temperature 0 return the most likely token of each row (argmax, keeping a "
        "dimension so the shape is (B, 1)). Otherwise, in this order: divide by the temperature, keep the "
        "top k (when top_k is given), keep the nucleus (your top_p_filter, when top_p is given), softmax, "
        "and draw one token per row with torch.multinomial(..., generator=generator).",
        "Greedy: `logits.argmax(dim=-1, keepdim=True)`. Top-k: the k-th largest per row is "
        "`torch.topk(logits, k, dim=-1).values[:, [-1]]`, and `logits.masked_fill(logits < kth, "
        "float('-inf'))` removes the rest. The nucleus is computed on the distribution AFTER temperature and "
        "top-k, so apply top_p_filter last. Never change `logits` in place (no `/=`).",
        "if temperature == 0:\n"
        "    return logits.argmax(dim=-1, keepdim=True)                 # (B, 1)\n"
        "logits = logits / temperature\n"
        "if top_k is not None:\n"
        "    kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, [-1]]\n"
        "    logits = logits.masked_fill(logits < kth, float('-inf'))\n"
        "if top_p is not None:\n"
        "    logits = top_p_filter(logits, top_p)\n"
        "probs = F.softmax(logits, dim=-1)\n"
        "return torch.multinomial(probs, num_samples=1, generator=generator)   # (B, 1)",
    ],
    diagnoses={
        "not-a-function": "pass the function itself: check_sampling_strategies(choose_next).",
        "not-a-tensor": "return the (B, 1) tensor that argmax(..., keepdim=True) or torch.multinomial gives.",
        "nan": "NaN probabilities come from a row that is entirely -inf, or from dividing by a temperature "
        "of 0.",
        "crashed": "logits are (B, V): work along dim=-1, and return (B, 1) token ids.",
        "wrong-shape": "return one token id per row, shape (B, 1): argmax(dim=-1, keepdim=True) and "
        "torch.multinomial(probs, num_samples=1) both give that shape.",
        "wrong-dtype": "return integer token ids (torch.long), as argmax and torch.multinomial give.",
        "in-place": "write `logits = logits / temperature` and use masked_fill: they make new tensors, so "
        "the caller's logits stay as they were.",
        "greedy-not-argmax": "at temperature 0 return `logits.argmax(dim=-1, keepdim=True)` before any "
        "division (the limit of a temperature going to 0 puts all the mass on the most likely token).",
        "greedy-divides-by-zero": "handle temperature == 0 first, with argmax: logits / 0 gives inf and NaN "
        "probabilities.",
        "generator-ignored": "pass the generator on: torch.multinomial(probs, 1, generator=generator), so "
        "the same seed gives the same tokens.",
        "temperature-multiplied": "divide the logits by the temperature (a temperature below 1 sharpens).",
        "temperature-ignored": "divide the logits by the temperature before the softmax.",
        "topk-ignored": "when top_k is given, set every logit below the k-th largest of its row to -inf.",
        "topk-off-by-one": "keep exactly the k largest logits: the k-th largest is topk(...).values[:, "
        "[-1]], and only logits strictly below it go.",
        "topk-zero": "set the logits outside the top k to -inf, not 0: exp(0) = 1 is still a real chance.",
        "topp-ignored": "when top_p is given, pass the logits through your top_p_filter before the softmax.",
        "topp-wrong": "the top-p part draws from the wrong set of tokens: run check_top_p_filter on your "
        "top_p_filter first.",
        "topp-before-temperature": "apply the temperature first: the nucleus is the set that reaches p in "
        "the tempered distribution, the one you actually sample from.",
        "filters-swapped": "apply top-k before top-p (as Hugging Face and gptlib do): the nucleus is "
        "measured on the distribution that top-k left.",
        "softmax-twice": "apply softmax once, to the filtered logits; a softmax of probabilities flattens "
        "the distribution and gives mass back to the removed tokens.",
        "rows-mixed": "draw each row from its own distribution: softmax over dim=-1 and one multinomial call "
        "on the (B, V) probabilities.",
        "wrong-distribution": "compare your probabilities with "
        "softmax(top_p_filter(top_k(logits / temperature), p)) row by row.",
    },
)

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
    (1.0, None, None),
    (0.5, None, None),
    (2.0, None, None),
    (1.0, 3, None),
    (1.0, None, 0.8),
    (2.0, None, 0.8),
    (1.2, 4, 0.75),
]
_Z_1E6 = 4.753  # standard normal quantile for a one-in-a-million false alarm


def _chi2_limit(df: int) -> float:
    """The chi-square value a right sampler exceeds with probability ~1e-6 (Wilson-Hilferty)."""
    if df <= 0:
        return 0.5
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + _Z_1E6 * math.sqrt(a)) ** 3


def _dist(
    row: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    mistake: str = "",
) -> torch.Tensor:
    """The exact next-token distribution (V,), float64, with at most one known mistake."""
    x = row.double().unsqueeze(0)
    t = {"temperature-multiplied": 1.0 / temperature, "temperature-ignored": 1.0}.get(mistake, temperature)
    k = top_k
    if mistake == "topk-ignored":
        k = None
    elif mistake == "topk-off-by-one+" and k is not None:
        k = k + 1
    elif mistake == "topk-off-by-one-" and k is not None:
        k = max(1, k - 1)
    p = None if mistake == "topp-ignored" else top_p

    def keep_top_k(z: torch.Tensor) -> torch.Tensor:
        if k is None:
            return z
        fill = 0.0 if mistake == "topk-zero" else NEG_INF
        kth = torch.topk(z, min(k, z.size(-1)), dim=-1).values[:, [-1]]
        return z.masked_fill(z < kth, fill)

    def keep_top_p(z: torch.Tensor) -> torch.Tensor:
        if p is None or p >= 1.0:
            return z
        return _top_p_variant(z, p, mistake.removeprefix("topp:") if mistake.startswith("topp:") else "right")

    if mistake == "topp-before-temperature":
        kept = torch.isfinite(keep_top_p(keep_top_k(x)))
        z = (x / t).masked_fill(~kept, NEG_INF)
    elif mistake == "filters-swapped":
        z = keep_top_k(keep_top_p(x / t))
    else:
        z = keep_top_p(keep_top_k(x / t))
    probs = F.softmax(z, dim=-1)
    if mistake == "softmax-twice":
        probs = F.softmax(probs, dim=-1)
    return probs[0]


_S_MISTAKES = {
    "temperature-multiplied": "multiplying the logits by the temperature instead of dividing",
    "temperature-ignored": "a temperature that changes nothing",
    "topk-ignored": "top_k being ignored",
    "topk-off-by-one+": "keeping k + 1 tokens",
    "topk-off-by-one-": "keeping k - 1 tokens",
    "topk-zero": "setting the logits outside the top k to 0 instead of -inf",
    "topp-ignored": "top_p being ignored",
    **{f"topp:{kind}": f"a top_p_filter {says}" for kind, says in _TOP_P_MISTAKES.items()},
    "topp-before-temperature": "choosing the nucleus before applying the temperature",
    "filters-swapped": "applying top-p before top-k",
    "softmax-twice": "a softmax applied twice",
}
_S_CODES = {
    "topk-off-by-one+": "topk-off-by-one",
    "topk-off-by-one-": "topk-off-by-one",
    **{f"topp:{kind}": "topp-wrong" for kind in _TOP_P_MISTAKES},
}


def _chi2(counts: torch.Tensor, probs: torch.Tensor, n: int) -> float:
    """Pearson's chi-square of counts against probs; inf if a zero-probability token was drawn."""
    expected = probs * n
    if ((expected == 0) & (counts > 0)).any():
        return math.inf
    nz = expected > 0
    return float((((counts[nz] - expected[nz]) ** 2) / expected[nz]).sum())


def _setting(t: float, k: int | None, p: float | None) -> str:
    parts = [f"temperature={t}"]
    if k is not None:
        parts.append(f"top_k={k}")
    if p is not None:
        parts.append(f"top_p={p}")
    return ", ".join(parts)


def _tokens_out(exercise: str, what: str, out: Any, B: int) -> torch.Tensor:
    """The learner's token ids as a (B, 1) long tensor, or a named failure."""
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (B,):
        raise CheckFailure(
            exercise,
            "wrong-shape",
            f"{what} returned shape ({B},); expected ({B}, 1): keep the last dimension.",
        )
    out = _tensor_out(exercise, what, out, (B, 1))
    if out.dtype != torch.long:
        raise CheckFailure(
            exercise, "wrong-dtype", f"{what} returned dtype {out.dtype}; expected torch.long."
        )
    return out


def _check_greedy(choose_next: Callable[..., Any]) -> None:
    logits = _random_logits((32, 11), 21, 1.0)  # sampling would pick argmax in all 32 rows ~never
    for kwargs in ({}, {"top_k": 3, "top_p": 0.5}):
        what = f"choose_next(logits, temperature=0{''.join(f', {k}={v}' for k, v in kwargs.items())})"
        x = logits.clone()
        try:
            out = call(
                _SAMPLING, what, choose_next, x, 0.0, generator=torch.Generator().manual_seed(0), **kwargs
            )
        except CheckFailure as e:
            text = e.message.lower()
            if e.diagnosis == "crashed" and ("inf" in text or "nan" in text or "zero" in text):
                raise CheckFailure(
                    _SAMPLING,
                    "greedy-divides-by-zero",
                    f"{what} crashed dividing by the temperature 0: {e.message.split(' raised ', 1)[-1]}",
                ) from None
            raise
        _unchanged(_SAMPLING, "choose_next", logits, x)
        out = _tokens_out(_SAMPLING, what, out, logits.size(0))
        want = logits.argmax(-1, keepdim=True)
        if not torch.equal(out, want):
            wrong = int((out != want).sum())
            raise CheckFailure(
                _SAMPLING,
                "greedy-not-argmax",
                f"{what} gave {wrong} of {logits.size(0)} rows a token other than the most likely one "
                f"(got {out.flatten().tolist()}, expected {want.flatten().tolist()}).",
            )


def _draw(
    choose_next: Callable[..., Any], t: float, k: int | None, p: float | None, seed: int
) -> torch.Tensor:
    """(_S_DRAWS, rows) token ids: one batch holding _S_DRAWS copies of every row, interleaved."""
    B = _S_N_ROWS * _S_DRAWS
    logits = _S_ROWS.repeat(_S_DRAWS, 1)  # (B, V): rows 0, 1, 2, 0, 1, 2, ...
    x = logits.clone()
    what = f"choose_next(logits, {_setting(t, k, p)})"
    out = call(
        _SAMPLING, what, choose_next, x, t, top_k=k, top_p=p, generator=torch.Generator().manual_seed(seed)
    )
    _unchanged(_SAMPLING, "choose_next", logits, x)
    out = _tokens_out(_SAMPLING, what, out, B)
    V = _S_ROWS.size(1)
    if out.min() < 0 or out.max() >= V:
        raise CheckFailure(
            _SAMPLING,
            "wrong-distribution",
            f"{what} returned token ids outside 0..{V - 1}: {out.unique().tolist()}.",
        )
    return out.view(_S_DRAWS, _S_N_ROWS)


def _distribution_failure(counts: torch.Tensor, t: float, k: int | None, p: float | None) -> CheckFailure:
    """Name the slip whose exact distribution the draws follow."""
    n = _S_DRAWS
    rows = range(_S_N_ROWS)
    limit = _chi2_limit(_S_N_ROWS * (_S_ROWS.size(1) - 1))
    what = f"choose_next(logits, {_setting(t, k, p)})"
    best, best_chi = None, math.inf
    for mistake in _S_MISTAKES:
        chi = sum(_chi2(counts[r], _dist(_S_ROWS[r], t, k, p, mistake), n) for r in rows)
        if chi < best_chi:
            best, best_chi = mistake, chi
    right = [_dist(_S_ROWS[r], t, k, p) for r in rows]
    for perm in itertools.permutations(rows):
        if list(perm) != list(rows) and sum(_chi2(counts[r], right[perm[r]], n) for r in rows) < limit:
            return CheckFailure(
                _SAMPLING,
                "rows-mixed",
                f"{what}: the draws of some rows follow ANOTHER row's distribution: the rows got mixed up.",
            )
    if best is not None and best_chi < limit:
        return CheckFailure(
            _SAMPLING,
            _S_CODES.get(best, best),
            f"{what}: the {_S_N_ROWS * n} draws follow the distribution of {_S_MISTAKES[best]}.",
        )
    table = ", ".join(
        f"{i}: {c / n:.3f} vs {q:.3f}"
        for i, (c, q) in enumerate(zip(counts[0].tolist(), right[0].tolist(), strict=True))
    )
    return CheckFailure(
        _SAMPLING,
        "wrong-distribution",
        f"{what}: the draws do not follow softmax(top_p(top_k(logits / temperature))). Row 0, token: drawn "
        f"share vs exact probability: {table}.",
    )


def _check_draws(choose_next: Callable[..., Any]) -> None:
    V = _S_ROWS.size(1)
    limit = _chi2_limit(_S_N_ROWS * (V - 1))
    first = _draw(choose_next, 1.0, None, None, seed=7)
    torch.manual_seed(
        123
    )  # a different global stream: a sampler that ignores the generator gives other tokens
    again = _draw(choose_next, 1.0, None, None, seed=7)
    if not torch.equal(first, again):
        raise CheckFailure(
            _SAMPLING,
            "generator-ignored",
            "choose_next with two generators seeded alike gave different tokens: the draws do not come "
            "from the `generator` argument.",
        )
    for i, (t, k, p) in enumerate(_S_CASES):
        drawn = _draw(choose_next, t, k, p, seed=100 + i)
        counts = torch.stack([torch.bincount(drawn[:, r], minlength=V).double() for r in range(_S_N_ROWS)])
        chi = sum(_chi2(counts[r], _dist(_S_ROWS[r], t, k, p), _S_DRAWS) for r in range(_S_N_ROWS))
        if chi > limit:
            raise _distribution_failure(counts, t, k, p)


@_isolated
def check_sampling_strategies(choose_next: Any) -> None:
    """Check `choose_next(logits (B, V), temperature, top_k, top_p, generator) -> (B, 1)` token ids."""
    _is_function(_SAMPLING, choose_next, "choose_next")
    _check_greedy(choose_next)
    _check_draws(choose_next)
    passed(
        _SAMPLING,
        f"temperature 0 is greedy (argmax); {len(_S_CASES)} settings of temperature, top_k and top_p draw "
        f"with the exact frequencies ({_S_N_ROWS * _S_DRAWS} draws each, chi-square); the generator decides "
        "the draws; the logits are unchanged.",
    )
