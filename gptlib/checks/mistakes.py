"""Known mistakes, and how a check tells which one a learner's output matches.

A check that finds a wrong output recomputes it with each known mistake switched on
(a keyword of its reference, e.g. `scale=1.0`), then with each pair of independent
mistakes, and names the first that reproduces the learner's output. Shared by the
attention, attention-map, block and GPT-2 checks; nothing here is learner-facing
(no `__all__`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gptlib.checks.base import CheckFailure, max_diff, tensors_close


@dataclass(frozen=True)
class Mistake:
    """One known mistake: its diagnosis code, what it computes (in words), and the keywords that compute it."""

    code: str
    says: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def close(a: torch.Tensor, b: torch.Tensor, loose: bool = False) -> bool:
    """Same shape and values (NaN equal to NaN). loose: for matching a mistake computed another way."""
    atol, rtol = (1e-4, 1e-3) if loose else (1e-5, 1e-4)
    return tensors_close(a, b, atol, rtol, equal_nan=True)


def find_mistake(
    mistakes: list[Mistake], reproduces: Callable[..., bool], pairs: bool = True
) -> tuple[Mistake, ...] | None:
    """The first mistake whose keywords make `reproduces(**kwargs)` true, else (with pairs) the first
    pair of mistakes with disjoint keywords that does so together, else None."""
    for m in mistakes:
        if reproduces(**m.kwargs):
            return (m,)
    if pairs:
        for a, b in itertools.combinations(mistakes, 2):
            if a.kwargs.keys().isdisjoint(b.kwargs) and reproduces(**a.kwargs, **b.kwargs):
                return (a, b)
    return None


def match(
    out: torch.Tensor, compute: Callable[..., torch.Tensor], mistakes: list[Mistake], pairs: bool = True
) -> tuple[Mistake, ...] | None:
    """The mistake (or pair of mistakes) whose `compute(**kwargs)` equals `out` (loosely), or None."""
    with torch.no_grad():
        return find_mistake(mistakes, lambda **kwargs: close(compute(**kwargs), out, loose=True), pairs)


def matched_failure(exercise: str, what: str, found: tuple[Mistake, ...], note: str = "") -> CheckFailure:
    """The failure naming the mistake (or the two) that `what` matches; `note` is appended to the message."""
    if len(found) == 1:
        text = f"{what} matches {found[0].says}."
    else:
        text = f"{what} matches two mistakes at once: {found[0].says}; and {found[1].says}."
    return CheckFailure(exercise, found[0].code, text + note)


# ---- the scale of attention scores (the attention and attention-map checks) ------------------------


def scale_words(scale: float, right: float) -> str:
    """How far a scale is from the right one, in words: "off by a factor of 2.83, too large"."""
    ratio = scale / right
    size = "too small" if ratio < 1 else "too large"
    return f"off by a factor of {max(ratio, 1 / ratio):.2f}, {size}"


def scale_mistakes(n_embd: int, head_size: int) -> list[Mistake]:
    """The scales learners use for attention scores by mistake, each as a Mistake with the keyword `scale`
    (the right one is 1/sqrt(head_size); a "mistake" equal to it or to an earlier one is left out)."""
    right = 1 / math.sqrt(head_size)
    named = [
        (1.0, "missing-scale", "scores that are not scaled at all"),
        (1 / math.sqrt(n_embd), "wrong-scale", f"scores scaled by 1/sqrt(n_embd) = 1/sqrt({n_embd})"),
        (1 / head_size, "wrong-scale", f"scores scaled by 1/head_size = 1/{head_size} (no square root)"),
        (1 / n_embd, "wrong-scale", f"scores scaled by 1/n_embd = 1/{n_embd}"),
        (math.sqrt(head_size), "wrong-scale", f"scores multiplied by sqrt(head_size) = sqrt({head_size})"),
    ]
    mistakes, seen = [], {right}
    for scale, code, words in named:
        if any(math.isclose(scale, s) for s in seen):
            continue  # e.g. n_embd == head_size: that "mistake" is the right scale
        seen.add(scale)
        says = (
            f"{words} ({scale:.3g} instead of 1/sqrt(head_size) = 1/sqrt({head_size}) = {right:.3g}: "
            f"{scale_words(scale, right)})"
        )
        mistakes.append(Mistake(code, says, {"scale": scale}))
    return mistakes


def fit_scale(out: torch.Tensor, compute: Callable[..., torch.Tensor]) -> float | None:
    """The scale s for which compute(scale=s) reproduces `out`, if there is one (a log grid, then a
    golden-section search)."""

    def err(log_s: float) -> float:
        return max_diff(compute(scale=math.exp(log_s)), out)

    with torch.no_grad():
        grid = [math.log(10) * (-4 + 6 * i / 60) for i in range(61)]  # 1e-4 .. 1e2
        errors = [err(g) for g in grid]
        i = min(range(len(grid)), key=errors.__getitem__)
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        golden = (math.sqrt(5) - 1) / 2
        for _ in range(40):  # golden-section search inside the best grid cell
            a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
            if err(a) < err(b):
                hi = b
            else:
                lo = a
        best = math.exp((lo + hi) / 2)
        return best if close(compute(scale=best), out, loose=True) else None
