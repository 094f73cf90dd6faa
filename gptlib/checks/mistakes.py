"""Known mistakes, and how a check tells which one a learner's output matches.

A check that finds a wrong output recomputes it with each known mistake switched on
(a keyword of its reference, e.g. `scale=1.0`), then with each pair of independent
mistakes, and names the first that reproduces the learner's output. Shared by the
attention, attention-map, block and GPT-2 checks; nothing here is learner-facing
(no `__all__`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gptlib.checks.base import CheckFailure, tensors_close


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
