"""Grade a class's submitted notebooks: each exercise by the course's own checks, in a sandbox.

For every submission the grader reads the file once (it is never modified),
works on a temporary copy, finds which lesson it is from its content, extracts
the learner's definitions for each exercise (`gptlib.course.extract`), and runs
the solution's trusted check cell on them in a separate process
(`gptlib.course.sandbox`). It never runs the notebook itself, its outputs or its
check cells. Points come from the solutions' nbgrader metadata.
"""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from gptlib.course.catalog import Exercise, Lesson, identify, load_course, pick
from gptlib.course.extract import Parsed, exercise_code, parse_notebook
from gptlib.course.sandbox import ForkServer, Limits, Sandbox, can_fork

PASSED, FAILED, NOT_ATTEMPTED, NOT_FOUND, NOT_GRADED = (
    "passed",
    "failed",
    "not attempted",
    "not found",
    "not graded",
)


@dataclass
class ExerciseResult:
    """One exercise of one submission: points, status, and what the student reads."""

    exercise: str
    points: float
    max_points: float
    status: str  # passed, failed, not attempted, not found, not graded
    message: str  # the check's own words (what the notebook shows), or why it was not graded
    diagnosis: str | None = None  # the check's code for the mistake, e.g. "missing-mask"
    flags: list[str] = field(default_factory=list)  # for the teacher: what the sandbox refused, notes


@dataclass
class SubmissionResult:
    """One submitted notebook."""

    student: str
    path: Path
    lesson: str | None
    exercises: list[ExerciseResult]
    error: str | None = None  # the notebook could not be graded at all (unreadable, unknown lesson)
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        return sum(e.max_points for e in self.exercises)


# --- which files, which students -----------------------------------------------------------------


def collect_submissions(paths: Iterable[Path]) -> list[tuple[str, Path]]:
    """(student, notebook) pairs. A file is one student (its name); a folder holds either notebooks
    (one per student, named after the student) or one subfolder per student."""
    found: list[tuple[str, Path]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for nb in sorted(p.rglob("*.ipynb")):
                rel = nb.relative_to(p)
                if ".ipynb_checkpoints" in rel.parts:
                    continue
                found.append((rel.parts[0] if len(rel.parts) > 1 else nb.stem, nb))
        elif p.is_file():
            found.append((p.stem, p))
        else:
            raise ValueError(f"no such submission file or folder: {p}")
    if not found:
        raise ValueError("no notebooks (.ipynb) among the submissions given.")
    return found


def check_out_dir(out: Path, submissions: list[Path], inputs: list[Path], force: bool) -> None:
    """Refuse an output folder that holds submissions, lies inside a submissions folder, or is not empty."""
    out = Path(out).resolve()
    for sub in submissions:
        if out in Path(sub).resolve().parents:
            raise ValueError(f"--out {out} contains the submission {sub}; choose a folder of its own.")
    for given in inputs:
        given = Path(given).resolve()
        if given.is_dir() and (out == given or given in out.parents):
            raise ValueError(
                f"--out {out} is inside the submissions folder {given}; choose a folder elsewhere."
            )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder.")
    if out.exists() and any(out.iterdir()) and not force:
        raise ValueError(
            f"--out {out} is not empty; give an empty or new folder, or --force to replace its results."
        )


# --- one submission ------------------------------------------------------------------------------


def _not_found(parsed: Parsed, nb: nbformat.NotebookNode, missing: list[str]) -> str:
    names = ", ".join(f"`{n}`" for n in missing)
    notes = []
    for n in missing:
        for ci, err in parsed.unparsable.items():
            if re.search(rf"^\s*(def|class)\s+{re.escape(n)}\b", nb.cells[ci].source, re.M):
                notes.append(f"cell {ci + 1} defines `{n}` but is not valid Python ({err})")
        if n in parsed.not_run:
            ci, line = parsed.not_run[n]
            notes.append(
                f"`{n}` is set by a statement the grader does not run (cell {ci + 1}, line {line}); "
                "define it with `def` or `class`"
            )
    text = f"not found: the notebook has no definition of {names} (was the exercise cell deleted or renamed?)"
    return text + ("; " + "; ".join(notes) if notes else "") + "."


def _job(parsed: Parsed, ex: Exercise, segments: list) -> dict:
    cells = sorted({c for c, _, _ in segments})
    return {
        "exercise": ex.id,
        "cells": {str(c): parsed.sources[c] for c in cells},
        "segments": [list(s) for s in segments],
        "future_annotations": parsed.future_annotations,
        "defines": list(ex.defines),
        "check": ex.check_source,
    }


def grade_exercise(box: Sandbox, parsed: Parsed, nb: nbformat.NotebookNode, ex: Exercise) -> ExerciseResult:
    """Find the exercise's code, screen it, run the check on it in the sandbox, turn the verdict into points."""
    code = exercise_code(parsed, ex.defines, ex.id)

    def result(status: str, message: str, **kw: object) -> ExerciseResult:
        points = ex.points if status == PASSED else 0.0
        return ExerciseResult(ex.id, points, ex.points, status, message, **kw)

    if code.missing:
        return result(NOT_FOUND, _not_found(parsed, nb, code.missing))
    if code.refused:
        return result(
            NOT_GRADED,
            "not graded: your code "
            + "; ".join(code.refused[:5])
            + ". Graded code may not reach into the checks, the interpreter or other processes; remove that "
            "and resubmit.",
            flags=["refused: " + r for r in code.refused],
        )
    if code.copied:
        return result(
            NOT_GRADED,
            "not graded: "
            + "; ".join(code.copied)
            + ". Write your own version; gptlib's is the finished answer.",
            flags=["copied: " + c for c in code.copied],
        )
    outcome = box.run(_job(parsed, ex, code.segments))
    if outcome.verdict is None:
        return result(NOT_GRADED, f"not graded: {outcome.problem}", flags=[f"sandbox: {outcome.problem}"])
    v = outcome.verdict
    flags = [f"blocked: {b}" for b in v.get("blocked", [])]
    status, message = v["status"], v.get("message", "")
    if status == PASSED:
        line = next((ln for ln in reversed(v.get("output", "").splitlines()) if ln.startswith("✅ ")), "")
        return result(PASSED, line.removeprefix("✅ ") or "passed", flags=flags)
    if status in ("not attempted", "failed"):
        message += _name_note(message, code.not_run)
        return result(status, message, diagnosis=v.get("diagnosis"), flags=flags)
    if status == "copied":
        return result(
            NOT_GRADED, f"not graded: {message}. Write your own version.", flags=["copied: " + message]
        )
    if status == "tampered":
        return result(NOT_GRADED, f"not graded: {message}", flags=["tampered: " + message, *flags])
    return result(FAILED, message + _name_note(message, code.not_run), flags=flags)


def _name_note(message: str, not_run: dict[str, tuple[int, int]]) -> str:
    m = re.search(r"NameError: name '(\w+)' is not defined", message)
    if m and m.group(1) in not_run:
        ci, line = not_run[m.group(1)]
        return (
            f"\nNote: `{m.group(1)}` is set in cell {ci + 1}, line {line}, by a statement the grader does not run "
            "(it runs only imports, def, class and simple constants). Define it inside your function or class."
        )
    return ""


def grade_submission(
    path: Path,
    student: str,
    lessons: dict[str, Lesson],
    work: Path,
    lesson: str | None = None,
    limits: Limits | None = None,
    server: ForkServer | None = None,
    data: bytes | None = None,
) -> SubmissionResult:
    """Grade one notebook in `work` (a fresh folder of its own). The submitted file is only read, once.

    With a fork server each exercise runs in a fork of this submission's own session server; without one,
    in a fresh Python process each."""
    start = time.perf_counter()
    path = Path(path)
    work.mkdir(parents=True)
    try:
        data = path.read_bytes() if data is None else data
        (work / "submission.ipynb").write_bytes(data)  # the copy the grader works on
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        return _ungraded(
            student, path, lessons, lesson, f"cannot read this notebook: {type(e).__name__}: {e}"
        )
    parsed = parse_notebook(nb)
    try:
        chosen = lessons[lesson] if lesson else identify(nb, lessons, parsed.defined)
    except ValueError as e:
        return _ungraded(student, path, lessons, lesson, str(e))
    with Sandbox(work, limits, server) as box:
        results = [grade_exercise(box, parsed, nb, ex) for ex in chosen.exercises]
    return SubmissionResult(student, path, chosen.name, results, seconds=time.perf_counter() - start)


def _ungraded(
    student: str, path: Path, lessons: dict[str, Lesson], lesson: str | None, why: str
) -> SubmissionResult:
    exercises = []
    if lesson:
        exercises = [
            ExerciseResult(e.id, 0.0, e.points, NOT_GRADED, f"not graded: {why}")
            for e in lessons[lesson].exercises
        ]
    return SubmissionResult(student, path, lesson, exercises, error=why)


# --- a class -------------------------------------------------------------------------------------


def grade(
    submissions: list[Path],
    solutions: Path,
    lesson: str | None = None,
    jobs: int = 1,
    limits: Limits | None = None,
    progress: bool = True,
    fork: bool | None = None,
) -> list[SubmissionResult]:
    """Grade every notebook in `submissions` (files or folders), `jobs` at a time, in input order.

    fork: use one fork server for the run (default: where the platform has fork, i.e. Linux)."""
    limits = limits or Limits()
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}.")
    lessons = load_course(solutions)
    if not lessons:
        raise ValueError(f"no lesson in {solutions} has graded exercises (check cells with nbgrader points).")
    name = pick(sorted(lessons), lesson) if lesson else None
    pairs = collect_submissions(submissions)
    contents: list[bytes | None] = []
    for _, path in pairs:  # read every submission before any code runs: what is graded is what was handed in
        try:
            contents.append(path.read_bytes())
        except OSError:
            contents.append(None)  # reported by grade_submission
    root = Path(tempfile.mkdtemp(prefix="gptlib-grade-"))
    server = ForkServer(root / "server") if (can_fork() if fork is None else fork) else None
    results: list[SubmissionResult | None] = [None] * len(pairs)
    try:
        if server is not None:
            server.start()  # fail now, not once per exercise
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(
                    grade_submission, p, s, lessons, root / f"{i:04d}", name, limits, server, contents[i]
                ): i
                for i, (s, p) in enumerate(pairs)
            }
            from tqdm.auto import tqdm

            with tqdm(total=len(pairs), desc="grading", unit="notebook", disable=not progress) as bar:
                for fut in concurrent.futures.as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(root, ignore_errors=True)
    return [r for r in results if r is not None]
