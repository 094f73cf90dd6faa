"""The course as the grader sees it: each lesson's exercises, the names they define, points and checks.

Everything here is read from the SOLUTION notebooks, which the grader trusts
(never from a submission):

- an exercise cell carries ``metadata.gptlib = {"exercise": id, "defines": [names]}``;
- its check cell carries ``metadata.gptlib = {"exercise": id}``, nbgrader's
  ``points``, and a source such as ``check_attention(CausalSelfAttention)``.

A submission is matched to its lesson by what it contains (exercise ids in its
cells' metadata, nbgrader grade ids, the names it defines), not by its file
name, so a renamed notebook still grades.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

LESSON_NAME = re.compile(r"^\d\d_\w+$")


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: what the learner defines, what it is worth, and the check that grades it."""

    id: str
    defines: tuple[str, ...]
    points: float
    check_source: str  # the solution's check cell: trusted code, run by the grader


@dataclass(frozen=True)
class Lesson:
    """A solution notebook's graded exercises, in notebook order."""

    name: str  # e.g. "02_attention"
    path: Path
    exercises: tuple[Exercise, ...]

    @property
    def max_points(self) -> float:
        return sum(e.points for e in self.exercises)


def _gptlib_meta(cell: nbformat.NotebookNode) -> dict:
    meta = cell.get("metadata", {}).get("gptlib", {})
    return meta if isinstance(meta, dict) else {}


def _top_level_names(source: str) -> list[str]:
    """The def/class names of a solution cell (used when its metadata lists no `defines`)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [node.name for node in tree.body if isinstance(node, kinds)]


def load_lesson(path: Path) -> Lesson:
    """Read a solution notebook's exercises. Raises ValueError when its metadata is incomplete."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    defines: dict[str, tuple[str, ...]] = {}
    checks: dict[str, tuple[str, float]] = {}
    order: list[str] = []
    for i, cell in enumerate(nb.cells):
        meta = _gptlib_meta(cell)
        ex = meta.get("exercise")
        if cell.cell_type != "code" or not ex:
            continue
        nbg = cell.get("metadata", {}).get("nbgrader", {})
        is_check = "check" in cell.get("metadata", {}).get("tags", []) or nbg.get("grade") is True
        if is_check:
            if "points" not in nbg:
                raise ValueError(
                    f"{path.name}, cell {i}: the check cell of exercise {ex!r} has no nbgrader 'points' in its "
                    "metadata; add e.g. metadata.nbgrader.points = 2."
                )
            checks[ex] = (cell.source, float(nbg["points"]))
        else:
            names = tuple(meta.get("defines") or _top_level_names(cell.source))
            if not names:
                raise ValueError(
                    f"{path.name}, cell {i}: exercise {ex!r} defines nothing; list its names in "
                    "metadata.gptlib.defines."
                )
            defines[ex] = names
            order.append(ex)
    exercises = []
    for ex in order:
        if ex not in checks:
            raise ValueError(f"{path.name}: exercise {ex!r} has no check cell (metadata.gptlib.exercise).")
        source, points = checks[ex]
        exercises.append(Exercise(ex, defines[ex], points, source))
    missing = sorted(set(checks) - set(defines))
    if missing:
        raise ValueError(f"{path.name}: check cells for exercises {missing} that have no exercise cell.")
    return Lesson(path.stem, path, tuple(exercises))


def find_solutions(explicit: Path | None = None) -> Path:
    """The solutions folder: the one given, else ./solutions, else the installed course's."""
    if explicit is not None:
        explicit = Path(explicit)
        if not any(explicit.glob("[0-9][0-9]_*.ipynb")):
            raise ValueError(
                f"no solution notebooks (NN_name.ipynb) in {explicit}; pass the course's solutions/."
            )
        return explicit
    if any(Path("solutions").glob("[0-9][0-9]_*.ipynb")):
        return Path("solutions")
    from gptlib.course.start import notebooks_folder

    try:
        return notebooks_folder("solutions")
    except FileNotFoundError as e:
        raise ValueError(f"cannot find the course's solution notebooks: {e} Or pass --solutions DIR.") from e


def load_course(solutions: Path) -> dict[str, Lesson]:
    """Every lesson with graded exercises, by name ("02_attention")."""
    lessons = {}
    for path in sorted(Path(solutions).glob("[0-9][0-9]_*.ipynb")):
        lesson = load_lesson(path)
        if lesson.exercises:
            lessons[lesson.name] = lesson
    return lessons


def pick(names: list[str], wanted: str) -> str:
    """Resolve "02", "02_attention" or "attention" to one lesson name; ValueError if none or several."""
    hits = [n for n in names if wanted in (n, n[:2], n[3:])]
    if len(hits) != 1:
        what = "matches no lesson" if not hits else f"matches several lessons ({', '.join(hits)})"
        raise ValueError(f"{wanted!r} {what}; the lessons are: {', '.join(names) or '(none)'}.")
    return hits[0]


def identify(nb: nbformat.NotebookNode, lessons: dict[str, Lesson], defined: set[str]) -> Lesson:
    """Which lesson a submission is, from its content. `defined`: the top-level names it defines.

    Exercise ids in cell metadata count most, then nbgrader grade ids, then defined names;
    a tie or no evidence at all is a ValueError that asks for --lesson."""
    ids, grade_ids = set(), set()
    for cell in nb.cells:
        ex = _gptlib_meta(cell).get("exercise")
        if isinstance(ex, str):
            ids.add(ex)
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if isinstance(gid, str):
            grade_ids.add(gid)
    scores = {}
    for name, lesson in lessons.items():
        own = {e.id for e in lesson.exercises}
        names = {n for e in lesson.exercises for n in e.defines}
        gids = {f"ex_{e}" for e in own} | {f"check_{e}" for e in own}
        scores[name] = 4 * len(ids & own) + 2 * len(grade_ids & gids) + len(defined & names)
    best = max(scores.values(), default=0)
    top = [n for n, s in scores.items() if s == best]
    if best == 0:
        raise ValueError(
            "cannot tell which lesson this notebook is (no known exercise in it); pass --lesson."
        )
    if len(top) > 1:
        raise ValueError(f"this notebook could be any of {', '.join(top)}; pass --lesson.")
    return lessons[top[0]]
