"""The learner notebooks: generated from the solutions, and runnable untouched.

An untouched lesson must fail only where the learner has work to do: every
error is an exercise stub's NotImplementedError or a check's "not done yet",
never a NameError, an ImportError or any other crash.
"""

from pathlib import Path

import nbformat
import pytest

from gptlib.course.execute import execute
from gptlib.course.notebooks import build_lessons, student_version

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
ALLOWED_ERRORS = {"NotImplementedError", "NotDoneYet"}


def test_lessons_match_solutions():
    stale = build_lessons(ROOT / "solutions", ROOT / "lessons", check=True)
    assert not stale, f"lessons/ is stale for {[p.name for p in stale]}: run `python -m gptlib.course build`"


def test_every_solution_has_a_lesson():
    solutions = {p.name for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")}
    assert solutions, "no solution notebooks"
    assert solutions == {p.name for p in LESSONS}


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_untouched_lesson_fails_only_with_not_done_yet(lesson):
    nb, _ = execute(lesson, timeout=300, allow_errors=True)
    errors = []
    not_done_checks = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append((i, out.ename, out.evalue))
                if out.ename == "NotDoneYet" and "check" in cell.metadata.get("tags", []):
                    not_done_checks += 1
    crashes = [e for e in errors if e[1] not in ALLOWED_ERRORS]
    assert not crashes, f"{lesson.name}: cells that crash in the learner version: {crashes}"
    checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert len(checks) >= 2, f"{lesson.name}: a lesson needs at least two checked exercises"
    assert not_done_checks == len(checks), (
        f"{lesson.name}: {len(checks)} check cells, but only {not_done_checks} said 'not done yet'"
    )


def test_stub_replaces_solution_at_its_indentation():
    nb = nbformat.v4.new_notebook()
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "class A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 1\n        ### END SOLUTION\n"
        )
    )
    out = student_version(nb).cells[0].source
    assert (
        out == "class A:\n    def f(self):\n        # YOUR CODE HERE\n        raise NotImplementedError()\n"
    )
