"""Grade a class's submitted notebooks: each exercise by the course's own checks, the student's code sandboxed.

Processes, per exercise (see docs/teachers.md, "How grading is protected"):

    grader (this process)  --job-->  check process (trusted: the check, the reference, the verdict)
                                           |  requests / plain-data answers (gptlib.course.wire)
                                     worker (the student's code only; bubblewrap + its own namespaces)

The grader reads each submission once, safely (`gptlib.course.submissions`), finds
its lesson from its content, picks each exercise's definitions
(`gptlib.course.extract`), has a fresh worker made for the exercise
(`gptlib.course.sandbox`) and the solution's check cell run against it by the
check server (`gptlib.course.checker`). It never runs the notebook, its outputs or
its check cells, and it writes every student's results as soon as they are
known (`gptlib.course.report`). A worker that dies is given one more try in a
fresh worker; a failure of the grader's own machinery is flagged for the teacher,
never blamed on the student.
"""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from gptlib.course import submissions as subs
from gptlib.course.catalog import Exercise, Lesson, identify, load_course, pick
from gptlib.course.checker import CheckServer
from gptlib.course.extract import Parsed, exercise_code, parse_notebook
from gptlib.course.sandbox import STARTUP_SECONDS, Limits, Sandbox

PASSED, FAILED, NOT_ATTEMPTED, NOT_FOUND, TIMED_OUT, NOT_GRADED = (
    "passed", "failed", "not attempted", "not found", "timed out", "not graded",
)  # fmt: skip
GRADER_PROBLEM = (
    "not graded: the grader failed on this exercise (its own problem, not your code's); your teacher has been "
    "told and will grade it again."
)


@dataclass
class ExerciseResult:
    """One exercise of one submission: points, status, and what the student reads."""

    exercise: str
    points: float
    max_points: float
    status: str  # passed, failed, not attempted, not found, timed out, not graded
    message: str  # the check's own words (what the notebook shows), or why it was not graded
    diagnosis: str | None = None  # the check's code for the mistake, e.g. "missing-mask"
    flags: list[str] = field(default_factory=list)  # for the teacher
    regrade: bool = False  # the grader's own failure: grade this exercise again


@dataclass
class SubmissionResult:
    """One submitted notebook."""

    student: str
    path: Path
    lesson: str | None
    exercises: list[ExerciseResult]
    error: str | None = None  # the notebook could not be graded at all (unreadable, unknown lesson)
    flags: list[str] = field(default_factory=list)  # for the teacher: duplicates, identical files
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        return sum(e.max_points for e in self.exercises)


def check_out_dir(out: Path, found: list[subs.Submission], inputs: list[Path], force: bool) -> None:
    """Refuse an output folder that holds submissions, lies inside a submissions folder, or is not empty."""
    out = Path(out).resolve()
    for sub in found:
        if out in Path(sub.path).resolve().parents:
            raise ValueError(f"--out {out} contains the submission {sub.path}; choose a folder of its own.")
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


# --- one exercise ------------------------------------------------------------------------------------


class Machinery:
    """What grading runs on: the sandbox, the check server, the limits; and what went wrong with them."""

    def __init__(self, root: Path, limits: Limits, unsafe: bool):
        self.root, self.limits = root, limits
        self.sandbox = Sandbox(root, unsafe)
        self._lock = threading.Lock()
        self._checks: CheckServer | None = None

    def checks(self) -> CheckServer:
        with self._lock:
            if self._checks is None or not self._checks.alive():
                if self._checks is not None:
                    self.sandbox.events.append("the check server stopped and was restarted")
                self._checks = CheckServer(self.root / "checks.log")
            return self._checks

    def close(self) -> None:
        self.sandbox.close()
        if self._checks is not None:
            self._checks.close()


def _job(parsed: Parsed, ex: Exercise, segments: list, timeout: float) -> dict:
    cells = sorted({c for c, _, _ in segments})
    return {
        "exercise": ex.id,
        "cells": {str(c): parsed.sources[c] for c in cells},
        "segments": [list(s) for s in segments],
        "future": parsed.future_annotations,
        "defines": list(ex.defines),
        "check": ex.check_source,
        "timeout": timeout,
        "startup": STARTUP_SECONDS,
    }


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _ended(report: dict, limits: Limits) -> tuple[str, str] | None:
    """(status, words) for a worker that ended on its own, from its monitor's report; None if the report does
    not show that (the sandbox itself failed)."""
    status = report.get("status")
    if type(status) is not int or report.get("killed"):
        return None
    if status >= 0:
        return FAILED, (
            f"your code ended the process (exit code {status}) while it was checked: does it call os._exit() or "
            "sys.exit(), or end the process some other way?"
        )
    if -status == getattr(signal, "SIGXCPU", -1):
        return TIMED_OUT, f"timed out: your code used more than {limits.timeout:g} s of CPU time."
    if -status == signal.SIGKILL:
        return FAILED, (
            "the process running your code was killed (SIGKILL): it used too much memory, or killed itself."
        )
    return FAILED, f"the process running your code crashed ({_signal_name(-status)}) while it was checked."


def run_exercise(m: Machinery, job: dict) -> tuple[dict, list[str]]:
    """The check's verdict for one exercise, and notes for the teacher. A worker that was lost (it died, sent
    garbage, or the machinery failed) gets one more try in a fresh one: if that one is lost too, the verdict
    says how (the student's code ending its process is the student's; anything else is the grader's)."""
    first = None
    for _ in range(2):
        try:
            worker = m.sandbox.spawn(job["exercise"], m.limits)
        except RuntimeError as e:
            verdict: dict = {
                "status": "infrastructure",
                "message": f"the sandbox did not start a worker ({e})",
            }
        else:
            try:
                verdict = m.checks().run(job, worker.channel, job["timeout"] + job["startup"] + 30)
            except (OSError, RuntimeError) as e:
                verdict = {"status": "check lost", "message": f"{type(e).__name__}: {e}"}
            verdict["worker"] = worker.finish(ended=verdict["status"] == "worker gone")
        if verdict["status"] not in ("worker gone", "worker failed", "check lost", "infrastructure"):
            notes = (
                [f"the worker was lost once ({_lost(first)}); graded again in a fresh one"] if first else []
            )
            return verdict, notes
        first = first or verdict
    own = _ended(verdict.get("worker", {}), m.limits) if verdict["status"] == "worker gone" else None
    if own is not None:
        return {"status": own[0], "message": own[1], "worker": verdict["worker"]}, []
    return verdict, []


def _lost(verdict: dict) -> str:
    return f"{verdict['status']}: {verdict.get('message') or verdict.get('worker')}"[:300]


def grade_exercise(m: Machinery, parsed: Parsed, nb: nbformat.NotebookNode, ex: Exercise) -> ExerciseResult:
    """Find the exercise's code, run the check on it in the sandbox, turn the verdict into points."""
    code = exercise_code(parsed, ex.defines)

    def result(status: str, message: str, **kw: object) -> ExerciseResult:
        points = ex.points if status == PASSED else 0.0
        return ExerciseResult(ex.id, points, ex.points, status, message, **kw)

    if code.missing:
        return result(NOT_FOUND, _not_found(parsed, nb, code.missing))
    job = _job(parsed, ex, code.segments, m.limits.timeout)
    verdict, notes = run_exercise(m, job)
    status, message = verdict.get("status"), str(verdict.get("message", ""))
    if status == PASSED:
        return result(PASSED, message or "passed", flags=notes)
    if status in (FAILED, NOT_ATTEMPTED):
        return result(
            status,
            message + _name_note(message, code.not_run),
            diagnosis=verdict.get("diagnosis"),
            flags=notes,
        )
    if status == "timed out":
        words = message or (
            f"timed out: your code did not finish within {m.limits.timeout:g} s (an endless loop, or far too slow?)"
        )
        return result(TIMED_OUT, words, flags=notes)
    if status == "worker failed":
        why = f"not graded: the process running your code stopped answering properly ({message[:300]})."
        return result(NOT_GRADED, why, flags=[*notes, f"worker: {message[:300]}"])
    # the grader's own failure (a check that crashed, a sandbox that would not start): flagged, never the student's
    detail = str(verdict.get("detail") or message or status)[-600:]
    return result(
        NOT_GRADED, GRADER_PROBLEM, flags=[*notes, f"grader problem ({status}): {detail}"], regrade=True
    )


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


def _name_note(message: str, not_run: dict[str, tuple[int, int]]) -> str:
    m = re.search(r"NameError: name '(\w+)' is not defined", message)
    if m and m.group(1) in not_run:
        ci, line = not_run[m.group(1)]
        return (
            f"\nNote: `{m.group(1)}` is set in cell {ci + 1}, line {line}, by a statement the grader does not run "
            "(it runs only imports, def, class and simple constants). Define it inside your function or class."
        )
    return ""


# --- one submission ----------------------------------------------------------------------------------


@dataclass
class Read:
    """A submission as read, before grading: its notebook, or why it could not be read."""

    sub: subs.Submission
    nb: nbformat.NotebookNode | None = None
    error: str | None = None
    digest: str | None = None
    notes: list[str] = field(default_factory=list)  # what was odd in it and ignored


def read_submission(sub: subs.Submission) -> Read:
    notes: list[str] = []
    try:
        data = subs.read(sub)
        return Read(sub, subs.parse(data, notes), digest=subs.digest(data), notes=notes)
    except subs.Unreadable as e:
        return Read(sub, error=f"could not read this notebook: {e}")


def grade_submission(
    m: Machinery, item: Read, lessons: dict[str, Lesson], lesson: str | None
) -> SubmissionResult:
    """Grade one read submission (its exercises one after another)."""
    start = time.perf_counter()
    sub = item.sub
    if item.nb is None:
        return _ungraded(sub, lessons, lesson, item.error or "could not read this notebook")
    parsed = parse_notebook(item.nb)
    try:
        chosen = lessons[lesson] if lesson else identify(item.nb, lessons, parsed.defined)
    except ValueError as e:
        return _ungraded(sub, lessons, lesson, str(e))
    results = [grade_exercise(m, parsed, item.nb, ex) for ex in chosen.exercises]
    return SubmissionResult(sub.student, sub.path, chosen.name, results, seconds=time.perf_counter() - start)


def _ungraded(
    sub: subs.Submission, lessons: dict[str, Lesson], lesson: str | None, why: str
) -> SubmissionResult:
    exercises = []
    if lesson:
        exercises = [
            ExerciseResult(e.id, 0.0, e.points, NOT_GRADED, f"not graded: {why}")
            for e in lessons[lesson].exercises
        ]
    return SubmissionResult(sub.student, sub.path, lesson, exercises, error=why)


def _class_flags(items: list[Read]) -> list[list[str]]:
    """Per submission, what the teacher should know about it among the others: the same student name twice,
    byte-identical files."""
    names = Counter(i.sub.student.casefold() for i in items)
    digests = Counter(i.digest for i in items if i.digest)
    flags: list[list[str]] = []
    for item in items:
        mine = []
        if names[item.sub.student.casefold()] > 1:
            others = [
                str(o.sub.path)
                for o in items
                if o is not item and o.sub.student.casefold() == item.sub.student.casefold()
            ]
            mine.append(f"duplicate student name: also {', '.join(others[:3])}")
        if item.digest and digests[item.digest] > 1:
            twins = [o.sub.student for o in items if o is not item and o.digest == item.digest]
            mine.append(f"identical file to the submission of {', '.join(twins[:3])}")
        flags.append(mine)
    return flags


# --- a class -------------------------------------------------------------------------------------------


def grade(
    submissions: list[Path],
    solutions: Path,
    lesson: str | None = None,
    jobs: int = 1,
    limits: Limits | None = None,
    progress: bool = True,
    unsafe: bool = False,
    on_result: object = None,
    found: list[subs.Submission] | None = None,
) -> list[SubmissionResult]:
    """Grade every notebook in `submissions` (files or folders; or those already `found` there), `jobs` at a
    time. Results come back in input order; `on_result(index, result)` is called as each one finishes."""
    limits = limits or Limits()
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}.")
    lessons = load_course(solutions)
    if not lessons:
        raise ValueError(f"no lesson in {solutions} has graded exercises (check cells with nbgrader points).")
    name = pick(sorted(lessons), lesson) if lesson else None
    items = [read_submission(s) for s in (found if found is not None else subs.collect(submissions))]
    flags = _class_flags(items)
    root = Path(tempfile.mkdtemp(prefix="gptlib-grade-"))
    results: list[SubmissionResult | None] = [None] * len(items)
    m = Machinery(root, limits, unsafe)
    try:

        def one(i: int) -> SubmissionResult:
            try:
                r = grade_submission(m, items[i], lessons, name)
            except Exception as e:  # a bug of the grader must cost this row, not the batch
                r = _ungraded(
                    items[i].sub, lessons, name, f"the grader failed on it ({type(e).__name__}: {e})"
                )
                r.flags.append("grader problem: grade it again")
            r.flags = flags[i] + items[i].notes[:10] + r.flags
            return r

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(one, i): i for i in range(len(items))}
            from tqdm.auto import tqdm

            with tqdm(total=len(items), desc="grading", unit="notebook", disable=not progress) as bar:
                for fut in concurrent.futures.as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    if callable(on_result):
                        on_result(i, results[i])
                    bar.update()
    finally:
        m.close()
        events = m.sandbox.events
        shutil.rmtree(root, ignore_errors=True)
    done = [r for r in results if r is not None]
    if events and done:
        done[0].flags.extend(f"sandbox: {e}" for e in dict.fromkeys(events))
    return done
