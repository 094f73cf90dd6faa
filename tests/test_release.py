"""Releasing assignments: the student notebooks are the lessons/ ones, and nbgrader makes the same."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gptlib.course.__main__ import main
from gptlib.course.catalog import load_lesson
from gptlib.course.notebooks import INSTALL_CELL, INSTALL_TAG, build_lessons, student_version
from gptlib.course.release import release

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
HIDDEN = "### BEGIN HIDDEN TESTS\nassert True  # hidden\n### END HIDDEN TESTS"


def test_released_notebooks_are_the_lessons(tmp_path):
    built = tmp_path / "lessons"
    build_lessons(SOLUTIONS, built)
    written = release(SOLUTIONS, tmp_path / "out")
    assert [p.name for p in written] == sorted(p.name for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    for p in written:
        assert p.read_bytes() == (built / p.name).read_bytes()


def test_release_a_subset_and_never_overwrite_by_accident(tmp_path):
    out = tmp_path / "ps1"
    assert (
        main(["release", str(out), "--lesson", "02", "--lesson", "attention", "--solutions", str(SOLUTIONS)])
        == 0
    )
    assert [p.name for p in out.iterdir()] == ["02_attention.ipynb"]
    with pytest.raises(ValueError, match="already exist"):
        release(SOLUTIONS, out, ["02_attention"])
    assert main(["release", str(out), "--lesson", "02", "--solutions", str(SOLUTIONS)]) == 2
    release(SOLUTIONS, out, ["02_attention"], force=True)
    with pytest.raises(ValueError, match="matches no lesson"):
        release(SOLUTIONS, tmp_path / "x", ["99"])


def test_hidden_tests_can_be_left_out_of_the_release_but_are_graded(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nb = nbformat.read(SOLUTIONS / "00_tokens_and_batches.ipynb", as_version=4)
    check = next(c for c in nb.cells if "check" in c.metadata.get("tags", []))
    check.source += "\n" + HIDDEN
    nbformat.write(nb, solutions / "00_tokens_and_batches.ipynb")

    full = release(solutions, tmp_path / "with")[0]
    lean = release(solutions, tmp_path / "without", hidden_tests=False)[0]
    text = {p: nbformat.read(p, as_version=4) for p in (full, lean)}
    checks = {
        p: [c.source for c in nb.cells if "check" in c.metadata.get("tags", [])] for p, nb in text.items()
    }
    assert HIDDEN in checks[full][0]
    assert (
        "HIDDEN" not in checks[lean][0]
        and checks[lean][0].strip() == check.source.replace(HIDDEN, "").strip()
    )
    # the grader takes the check from the solution, hidden part included
    assert HIDDEN in load_lesson(solutions / "00_tokens_and_batches.ipynb").exercises[0].check_source


def test_nbgrader_generate_assignment_gives_the_same_exercises_and_stubs(tmp_path):
    """The solutions carry nbgrader metadata: the real nbgrader (from the dev extra) makes the same student
    version as ours, cell for cell."""
    lesson = "02_attention"
    source = tmp_path / "source" / "ps1"
    source.mkdir(parents=True)
    shutil.copy(SOLUTIONS / f"{lesson}.ipynb", source)
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "ps1", f"--CourseDirectory.root={tmp_path}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = nbformat.read(tmp_path / "release" / "ps1" / f"{lesson}.ipynb", as_version=4)
    ours = student_version(nbformat.read(SOLUTIONS / f"{lesson}.ipynb", as_version=4))

    def exercises(nb: nbformat.NotebookNode) -> dict[str, str]:
        return {
            c.metadata["gptlib"]["exercise"]: c.source
            for c in nb.cells
            if "exercise" in c.metadata.get("tags", [])
        }

    assert (
        list(exercises(theirs))
        == list(exercises(ours))
        == ["causal_average", "masked_softmax", "head", "attention"]
    )
    assert exercises(theirs) == exercises(ours)
    assert all(
        "# YOUR CODE HERE\n" in s and "raise NotImplementedError()" in s for s in exercises(ours).values()
    )
    # nbgrader adds nothing; ours adds the cell that tells a learner on a hosted service how to install
    others = [c.source for c in ours.cells if INSTALL_TAG not in c.metadata.get("tags", [])]
    assert (
        [c.source for c in theirs.cells]
        == others
        == [c.source for c in ours.cells if c.source != INSTALL_CELL]
    )
