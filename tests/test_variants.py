"""Every check against the independent corpus in tests/variants: each correct variant passes, each mistake
raises CheckFailure (not a pass, not another exception).

A caught mistake must also be named: its message holds one of the teacher's phrases for it (the measure's
"named", `python -m tests.variants.measure`). Mistakes the checks miss or do not name today are listed in
tests/variants/missed_today.py and marked xfail (strict: once a check gets one right, the test fails until
its line is removed).
"""

from __future__ import annotations

import pytest

from tests.variants import EXERCISES, LESSONS, Variant, all_variants, run
from tests.variants.missed_today import MISSED_TODAY

try:
    import transformers  # noqa: F401 - lesson 09's checks build Hugging Face GPT-2s
except ImportError:
    LESSONS_HERE = tuple(lesson for lesson in LESSONS if lesson != "09")
else:
    LESSONS_HERE = LESSONS

VARIANTS = all_variants(LESSONS_HERE)


def _param(v: Variant):
    marks = []
    if v.id in MISSED_TODAY:
        marks.append(pytest.mark.xfail(strict=True, reason=f"missed today: {MISSED_TODAY[v.id]}"))
    return pytest.param(v, id=v.id, marks=marks)


@pytest.mark.parametrize("variant", [_param(v) for v in VARIANTS if v.kind == "correct"])
def test_correct_variant_passes(variant: Variant):
    outcome = run(variant)
    assert outcome.result == "passed", f"{variant.id} is correct, but the check said: {outcome.message}"


@pytest.mark.parametrize("variant", [_param(v) for v in VARIANTS if v.kind == "mistake"])
def test_mistake_is_caught(variant: Variant):
    outcome = run(variant)
    assert outcome.result == "caught", f"{variant.id} ({variant.teacher}) {outcome.result}" + (
        f": {outcome.message}" if outcome.message else ""
    )
    assert outcome.named(variant.words), (
        f"{variant.id} is caught but not named {variant.words}: {outcome.message}"
    )


def test_every_exercise_has_correct_variants_and_mistakes():
    for exercise in EXERCISES:
        if f"{int(exercise.split('.')[0]):02d}" not in LESSONS_HERE:
            continue
        kinds = [v.kind for v in VARIANTS if v.exercise == exercise]
        assert kinds.count("correct") >= 2 and kinds.count("mistake") >= 5, (exercise, kinds)


def test_missed_today_names_only_real_variants():
    ids = {v.id for v in VARIANTS}
    here = [i for i in MISSED_TODAY if f"{int(i.split('.')[0]):02d}" in LESSONS_HERE]
    unknown = [i for i in here if i not in ids]
    assert not unknown, f"missed_today.py lists variants that do not exist: {unknown}"
