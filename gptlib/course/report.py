"""What grading writes: scores.csv, one feedback file per submission, and a summary of the class.

Feedback quotes each check's message exactly as the learner's notebook shows it
(the CheckFailure text with its hint), so "what is wrong" reads the same in both
places. Everything a student controls (their file name, a message their code
made) is escaped for where it lands, so nothing they write can close a code
fence or a tag, fake a score, or run as a spreadsheet formula. `Reports` writes
each student's results as soon as they are known, every file atomically, so a
crash late in a run loses nothing already graded.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import threading
from collections import Counter, defaultdict
from pathlib import Path

from gptlib.course.grade import NOT_ATTEMPTED, PASSED, SubmissionResult

FORMATS = ("md", "html")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", errors="replace", newline="\n")
    os.replace(tmp, path)


def _num(x: float) -> str:
    return f"{x:g}"


# --- escaping ----------------------------------------------------------------------------------------


def md_text(text: str) -> str:
    """Text for the middle of a Markdown line or a table cell: one line, and every character that can start
    an inline construct backslash-escaped (CommonMark then shows it as itself: no emphasis, link, image,
    tag, entity, code span, strikethrough or table column can start)."""
    one_line = re.sub(r"[\r\n\t\v\f\x00-\x1f\x7f]+", " ", text)
    return re.sub(r"([\\`*_\[\]<>|~&!])", r"\\\1", one_line)


def md_block(text: str, info: str = "text") -> list[str]:
    """A fenced code block that `text` cannot close: its fence is longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{info}", text.rstrip(), fence]


def csv_cell(text: str) -> str:
    """A CSV field a spreadsheet shows as text: one that starts like a formula gets a leading apostrophe."""
    return "'" + text if text.startswith(FORMULA_START) else text


# --- the files -----------------------------------------------------------------------------------------


def exercise_columns(results: list[SubmissionResult]) -> list[str]:
    """Every exercise id, in lesson order then notebook order."""
    seen: dict[str, None] = {}
    for r in sorted(results, key=lambda r: r.lesson or ""):
        for e in r.exercises:
            seen.setdefault(e.exercise, None)
    return list(seen)


def _flags(r: SubmissionResult) -> list[str]:
    flags = list(r.flags) + [f"{e.exercise}: {f}" for e in r.exercises for f in e.flags]
    if r.error:
        flags.insert(0, r.error)
    return flags


def scores_csv(results: list[SubmissionResult]) -> str:
    """One row per submission: student, lesson, points per exercise, total, max, file, notes for the teacher."""
    columns = exercise_columns(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "lesson", *columns, "total", "max", "submission", "flags"])
    for r in results:
        got = {e.exercise: _num(e.points) for e in r.exercises}
        w.writerow(
            [csv_cell(r.student), csv_cell(r.lesson or "?"), *(got.get(c, "") for c in columns), _num(r.total),
             _num(r.max_points), csv_cell(r.path.name), csv_cell(" | ".join(_flags(r)))]
        )  # fmt: skip
    return buf.getvalue()


def _headline(message: str, status: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = re.sub(r"^\[[\w-]+\] ", "", first).removeprefix(f"{status}: ")
    return first if len(first) <= 100 else first[:97] + "..."


def _result_text(e: object) -> str:
    status = e.status  # type: ignore[attr-defined]
    return status if status in (PASSED, NOT_ATTEMPTED) else f"{status}: {_headline(e.message, status)}"  # type: ignore[attr-defined]


FOOTER = (
    "Graded by running the course's checks (the same checks as in your notebook, hidden tests included) on your "
    "own definitions, in a separate, sandboxed process. Your notebook's outputs and check cells were not used; "
    "only its imports, defs, classes and simple constants were run."
)


def feedback_markdown(r: SubmissionResult) -> str:
    """The student's feedback: score, a table of exercises, then each check's message in full."""
    lines = [f"# {md_text(r.lesson or 'unknown lesson')} — feedback for {md_text(r.student)}", ""]
    if r.error:
        lines += [f"**Not graded:** {md_text(r.error)}", ""]
    lines += [f"**Score: {_num(r.total)} / {_num(r.max_points)}**", ""]
    if r.exercises:
        lines += ["| Exercise | Points | Result |", "| --- | --- | --- |"]
        for e in r.exercises:
            lines.append(
                f"| {md_text(e.exercise)} | {_num(e.points)} / {_num(e.max_points)} | {md_text(_result_text(e))} |"
            )
        lines.append("")
    for e in r.exercises:
        lines += [
            f"## {md_text(e.exercise)} — {_num(e.points)} / {_num(e.max_points)} points: {md_text(e.status)}",
            "",
        ]
        lines += [*md_block(e.message if e.status != PASSED else f"✅ {e.message}"), ""]
    lines += ["---", FOOTER, ""]
    return "\n".join(lines)


def feedback_html(r: SubmissionResult) -> str:
    """The same feedback as one self-contained HTML page (every piece of text escaped)."""
    esc = html.escape
    rows = "".join(
        f"<tr><td><code>{esc(e.exercise)}</code></td><td>{_num(e.points)} / {_num(e.max_points)}</td>"
        f"<td>{esc(_result_text(e))}</td></tr>"
        for e in r.exercises
    )
    sections = "".join(
        f"<h2><code>{esc(e.exercise)}</code> — {_num(e.points)} / {_num(e.max_points)} points: {esc(e.status)}</h2>"
        f"<pre>{esc(('✅ ' if e.status == PASSED else '') + e.message)}</pre>"
        for e in r.exercises
    )
    error = f"<p><strong>Not graded:</strong> {esc(r.error)}</p>" if r.error else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{esc(r.lesson or '')} — {esc(r.student)}</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}pre{white-space:pre-wrap;"
        "background:#f6f6f6;padding:1em}td,th{padding:.2em .8em;text-align:left}</style></head><body>"
        f"<h1>{esc(r.lesson or 'unknown lesson')} — feedback for {esc(r.student)}</h1>{error}"
        f"<p><strong>Score: {_num(r.total)} / {_num(r.max_points)}</strong></p>"
        f"<table><tr><th>Exercise</th><th>Points</th><th>Result</th></tr>{rows}</table>{sections}"
        f"<hr><p>{esc(FOOTER)}</p></body></html>\n"
    )


def summary(results: list[SubmissionResult]) -> str:
    """Per lesson: how many submissions, the mean score, and for each exercise its pass rate and commonest mistakes."""
    by_lesson: dict[str, list[SubmissionResult]] = defaultdict(list)
    for r in results:
        by_lesson[r.lesson or "?"].append(r)
    lines = ["# Class summary", ""]
    regrade = [(r, e) for r in results for e in r.exercises if getattr(e, "regrade", False)]
    if regrade:
        names = ", ".join(f"{md_text(r.student)} ({md_text(e.exercise)})" for r, e in regrade[:20])
        lines += [
            f"**{len(regrade)} exercises were not graded because the grader failed: grade them again.** {names}",
            "",
        ]
    for lesson in sorted(by_lesson):
        group = by_lesson[lesson]
        n = len(group)
        mean = sum(r.total for r in group) / n
        top = max((r.max_points for r in group), default=0)
        lines += [f"## {md_text(lesson)}: {n} submission{'s' * (n != 1)}, mean {mean:.1f} / {_num(top)}", ""]
        errors = [r for r in group if r.error]
        if errors:
            lines += [f"Not graded at all: {', '.join(md_text(r.student) for r in errors)}.", ""]
        exercises: dict[str, list] = defaultdict(list)
        for r in group:
            for e in r.exercises:
                exercises[e.exercise].append(e)
        if exercises:
            lines += [
                "| Exercise | Passed | Not attempted | Commonest problems |",
                "| --- | --- | --- | --- |",
            ]
        for ex, items in exercises.items():
            passed = sum(e.status == PASSED for e in items)
            idle = sum(e.status == NOT_ATTEMPTED for e in items)
            problems = Counter(
                e.diagnosis or e.status for e in items if e.status not in (PASSED, NOT_ATTEMPTED)
            ).most_common(3)
            common = ", ".join(f"{md_text(d)} ({c})" for d, c in problems) or "—"
            lines.append(
                f"| `{ex}` | {passed}/{len(items)} ({100 * passed / len(items):.0f}%) | {idle} | {common} |"
            )
        lines.append("")
    return "\n".join(lines)


def feedback_names(students: list[str]) -> list[str]:
    """A file name per submission, from the student's name; a name taken twice gets -2, -3, ..."""
    names, used = [], set()
    for student in students:
        base = re.sub(r"[^\w.-]+", "_", student).strip("._")[:100] or "student"
        k, candidate = 2, base
        while candidate.casefold() in used:
            candidate, k = f"{base}-{k}", k + 1
        used.add(candidate.casefold())
        names.append(candidate)
    return names


class Reports:
    """The results folder, written as the run goes: a submission's feedback as soon as it is graded, and
    scores.csv and summary.md rewritten (atomically) with every submission graded so far. Thread-safe."""

    def __init__(self, out: Path, students: list[str], fmt: str = "md"):
        if fmt not in FORMATS:
            raise ValueError(f"feedback format must be one of {FORMATS}, got {fmt!r}.")
        self.out, self.fmt = Path(out), fmt
        self.names = feedback_names(students)
        self.results: list[SubmissionResult | None] = [None] * len(students)
        self._lock = threading.Lock()

    def add(self, index: int, result: SubmissionResult, tables: bool = True) -> None:
        with self._lock:
            self.results[index] = result
            render = feedback_markdown if self.fmt == "md" else feedback_html
            _write(self.out / "feedback" / f"{self.names[index]}.{self.fmt}", render(result))
            if tables:
                done = [r for r in self.results if r is not None]
                _write(self.out / "scores.csv", scores_csv(done))
                _write(self.out / "summary.md", summary(done))

    def finish(self, results: list[SubmissionResult]) -> list[Path]:
        """Write everything once more with the final results; the paths written."""
        for i, r in enumerate(results):
            self.add(i, r, tables=i == len(results) - 1)
        return [self.out / "scores.csv", self.out / "summary.md"] + [
            self.out / "feedback" / f"{n}.{self.fmt}" for n in self.names
        ]


def write_reports(results: list[SubmissionResult], out: Path, fmt: str = "md") -> list[Path]:
    """scores.csv, summary.md and feedback/<student>.<fmt> in `out`; returns the paths written."""
    return Reports(out, [r.student for r in results], fmt).finish(results)
