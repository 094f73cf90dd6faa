"""An independent corpus of learner code, to measure the checks with: correct variants and mistakes.

Each lesson module (lesson00.py ... lesson09.py) holds code the way a class of learners writes each
exercise of lessons 00-09, written without looking at the checks' own tests:
- `@lesson.correct(exercise, name)`: right, but different from the solution (einsum instead of matmul,
  fused q/k/v, a loop, other attribute names, ...). The check must pass it.
- `@lesson.mistake(exercise, code, words, teacher)`: wrong, as learners get it wrong. The check must raise
  CheckFailure, and should name the mistake: at least one of `words` (each a phrase, or a tuple of phrases
  that must all appear; case-insensitive) in the message it gives, the way `teacher` would say it.

tests/test_variants.py asserts the first two (with the known gaps of today in missed_today.py);
`python -m tests.variants.measure` counts how many mistakes are named with the right words.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# exercise number -> the check a notebook calls on it
EXERCISES: dict[str, str] = {
    "0.1": "check_char_tokenizer",
    "0.2": "check_get_batch",
    "0.3": "check_unigram_entropy",
    "1.1": "check_one_hot_embedding",
    "1.2": "check_token_position_embedding",
    "1.3": "check_position_similarity",
    "2.1": "check_causal_average",
    "2.2": "check_masked_softmax",
    "2.3": "check_head",
    "2.4": "check_attention",
    "3.1": "check_gelu",
    "3.2": "check_mlp",
    "4.1": "check_layer_norm",
    "4.2": "check_block",
    "5.1": "check_cross_entropy",
    "5.2": "check_gpt",
    "5.3": "check_count_parameters",
    "6.1": "check_optimizer_groups",
    "6.2": "check_train_step",
    "6.3": "check_sample",
    "7.1": "check_attention_weights_by_hand",
    "7.2": "check_previous_token_score",
    "7.3": "check_induction_score",
    "8.1": "check_top_p_filter",
    "8.2": "check_sampling_strategies",
    "8.3": "check_kv_cache_attention",
    "8.4": "check_kv_cache_generate",
    "9.1": "check_split_c_attn",
    "9.2": "check_convert_block",
    "9.3": "check_convert_gpt2",
}
LESSONS = ("00", "01", "02", "03", "04", "05", "06", "07", "08", "09")

Words = tuple[str | tuple[str, ...], ...]


@dataclass(frozen=True)
class Variant:
    """One piece of learner code for one exercise, and what the check should make of it."""

    exercise: str  # "2.4"
    name: str  # a correct variant's name, or a mistake's diagnosis code ("mask-inverted")
    kind: str  # "correct" or "mistake"
    obj: Any  # the learner's function or class
    words: Words = ()  # a mistake: alternatives, one of which the message must contain
    teacher: str = ""  # a mistake: what a good teacher would say

    @property
    def id(self) -> str:
        return f"{self.exercise}/{self.kind}/{self.name}"

    @property
    def lesson(self) -> str:
        return f"{int(self.exercise.split('.')[0]):02d}"


class Lesson:
    """The registry of one lesson module's variants; the decorators return the object unchanged."""

    def __init__(self) -> None:
        self.variants: list[Variant] = []

    def _add(self, variant: Variant) -> None:
        if variant.exercise not in EXERCISES:
            raise ValueError(f"unknown exercise {variant.exercise!r}")
        if any(v.id == variant.id for v in self.variants):
            raise ValueError(f"two variants are called {variant.id!r}")
        self.variants.append(variant)

    def correct(self, exercise: str, name: str) -> Callable[[Any], Any]:
        def register(obj: Any) -> Any:
            self._add(Variant(exercise, name, "correct", obj))
            return obj

        return register

    def mistake(self, exercise: str, code: str, words: Iterable[str | tuple[str, ...]], teacher: str):
        words = tuple(words)
        if not words or not teacher:
            raise ValueError(f"mistake {code!r} needs words and what a teacher would say")

        def register(obj: Any) -> Any:
            self._add(Variant(exercise, code, "mistake", obj, words, teacher))
            return obj

        return register


def all_variants(lessons: Iterable[str] = LESSONS) -> list[Variant]:
    """Every variant of the given lessons, in the order they are written."""
    import importlib

    out: list[Variant] = []
    for lesson in lessons:
        module = importlib.import_module(f"{__name__}.lesson{lesson}")
        out.extend(module.V.variants)
    return out


@dataclass(frozen=True)
class Outcome:
    """What the check made of a variant: "passed", "caught" (CheckFailure) or "crashed" (anything else)."""

    result: str
    message: str = ""  # the CheckFailure's diagnosis (without the hint), or the crash's type and text
    full: str = ""  # everything the learner reads, hint included

    def named(self, words: Words) -> bool:
        """Whether the message holds one of the alternatives (a tuple: all of its phrases)."""
        return self.result == "caught" and said(self.message, words)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("√", "sqrt").replace("−", "-"))


def said(text: str, words: Words) -> bool:
    """True when one alternative of `words` appears in text (case and spacing ignored)."""
    text = _norm(text)
    for alt in words:
        phrases = (alt,) if isinstance(alt, str) else alt
        if all(_norm(p) in text for p in phrases):
            return True
    return False


def run(variant: Variant) -> Outcome:
    """Run the exercise's real check on the variant, in this process, as a notebook cell would."""
    import gptlib.checks
    from gptlib.checks import CheckFailure

    check = getattr(gptlib.checks, EXERCISES[variant.exercise])
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            check(variant.obj)
        except CheckFailure as e:
            return Outcome("caught", getattr(e, "message", str(e)), str(e))
        except Exception as e:  # any other exception: the check crashed (or let the learner's error through)
            return Outcome("crashed", f"{type(e).__name__}: {e}", f"{type(e).__name__}: {e}")
    return Outcome("passed")
