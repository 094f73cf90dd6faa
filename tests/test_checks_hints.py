"""Every diagnosis a check can give has a hint, every hint belongs to a diagnosis, and the hints render.

The codes come from the engine: each Exercise declares the diagnoses its check can give
(a check that raises an undeclared one fails with ValueError), and each lesson's tables
of known mistakes; the hints from gptlib/checks/hints/*.md.
"""

from __future__ import annotations

import importlib

import pytest

import gptlib.checks
from gptlib.checks import codes as C
from gptlib.checks.engine import EXERCISES, Exercise, Mistake
from gptlib.checks.hints import COMMON, SHARED, _all, as_html, hint_for, parse, show_hints

LESSON_MODULES = [importlib.import_module(f"gptlib.checks.{name}") for name in gptlib.checks.LESSONS]


def _exercises_of(module) -> list[Exercise]:
    return [v for v in vars(module).values() if isinstance(v, Exercise)]


def test_every_lesson_module_has_exercises_with_checks():
    for module in LESSON_MODULES:
        exercises = _exercises_of(module)
        assert exercises, module.__name__
        checks = [getattr(module, name) for name in module.__all__]
        assert {c.exercise for c in checks} == set(exercises), module.__name__


def test_every_diagnosis_has_a_hint():
    # "not done yet" says what to do in its own words: no hint repeats it
    missing = [
        (ex.name, code)
        for ex in EXERCISES.values()
        for code in sorted(ex.codes - {C.NOT_DONE})
        if hint_for(ex.name, code) is None
    ]
    assert not missing, f"diagnoses without a hint: {missing}"


def test_every_hint_belongs_to_a_diagnosis_of_its_exercise():
    hints = _all()
    stale = [
        (name, code)
        for name, entry in hints.items()
        if name in EXERCISES
        for code in entry.diagnoses
        if code not in EXERCISES[name].codes
    ]
    assert not stale, f"hints for diagnoses the exercise cannot give: {stale}"
    for key, entry in hints.items():  # a lesson's shared hints serve some exercise of that lesson
        if key.endswith(f"/{SHARED}"):
            lesson = key.split("/")[0]
            codes = set().union(*(e.codes for n, e in EXERCISES.items() if hints[n].lesson == lesson))
            assert set(entry.diagnoses) <= codes, (key, set(entry.diagnoses) - codes)
    assert set(hints) - set(EXERCISES) == {k for k in hints if k == COMMON or k.endswith(f"/{SHARED}")}


def test_known_mistakes_are_declared_by_their_lesson():
    for module in LESSON_MODULES:
        declared = set().union(*(ex.codes for ex in _exercises_of(module)))
        tables = [v for v in vars(module).values() if isinstance(v, (list, tuple, dict))]
        for table in tables:
            items = table.values() if isinstance(table, dict) else table
            for m in items:
                if isinstance(m, Mistake):
                    assert m.code in declared, (module.__name__, m)


def test_codes_are_distinct():
    values = [v for k, v in vars(C).items() if k.isupper() and isinstance(v, str)]
    assert len(values) == len(set(values))


def test_every_exercise_has_three_levels_of_hints():
    for name in EXERCISES:
        levels = show_hints(name).entry.levels
        assert len(levels) >= 3, name
        assert levels[-1].startswith("```"), f"{name}: the last level is pseudocode"


def test_hints_render_as_prose_with_code_as_code():
    view = show_hints("causal_average")
    html = view._repr_html_()
    assert "<details>" in html and "<p>" in html
    assert "<pre" not in html.split("Hint 3")[0], "prose levels are not <pre>"
    code = html.split("Hint 3")[1]
    assert "<pre style='white-space: pre; overflow-x: auto'><code>" in code, "pseudocode scrolls, never wraps"
    assert as_html("use `x.mean(dim=1)` here") == "<p>use <code>x.mean(dim=1)</code> here</p>"


def test_hint_files_parse_strictly():
    text = "## ex\n1. a nudge\n   more\n2. ```\n   code()\n   ```\n- `a-code`: first\n  second\n"
    entry = parse(text, "99_test")["ex"]
    assert entry.levels == ["a nudge more", "```\ncode()\n```"]
    assert entry.diagnoses == {"a-code": "first second"}
    with pytest.raises(ValueError, match="cannot read"):
        parse("## ex\nstray line\n", "99_test")


def test_learner_facing_text_names_mingpt_not_the_seed():
    for name, entry in _all().items():
        for text in [*entry.levels, *entry.diagnoses.values()]:
            assert "the seed" not in text and "seed's" not in text, (name, text)
