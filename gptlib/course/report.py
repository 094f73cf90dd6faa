"""What grading writes: scores.csv, one feedback file per submission, and a summary of the class.

Feedback quotes each check's message exactly as the learner's notebook shows it
(the CheckFailure text with its hint), so "what is wrong" reads the same in
both places. Every file is written atomically into the output folder by the
grader's own process.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

from gptlib.course.grade import NOT_ATTEMPTED, PASSED, SubmissionResult

FORMATS = ("md", "html")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def _num(x: float) -> str:
    return f"{x:g}"


def exercise_columns(results: list[SubmissionResult]) -> list[str]:
    """Every exercise id, in lesson order then notebook order."""
    seen: dict[str, None] = {}
    for r in sorted(results, key=lambda r: r.lesson or ""):
        for e in r.exercises:
            seen.setdefault(e.exercise, None)
    return list(seen)


def scores_csv(results: list[SubmissionResult]) -> str:
    """One row per submission: student, lesson, points per exercise, total, max, file, notes for the teacher."""
    columns = exercise_columns(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "lesson", *columns, "total", "max", "submission", "flags"])
    for r in results:
        got = {e.exercise: _num(e.points) for e in r.exercises}
        flags = [f"{e.exercise}: {f}" for e in r.exercises for f in e.flags]
        if r.error:
            flags.insert(0, r.error)
        w.writerow(
            [r.student, r.lesson or "?", *(got.get(c, "") for c in columns), _num(r.total), _num(r.max_points),
             r.path.name, " | ".join(flags)]
        )  # fmt: skip
    return buf.getvalue()


def _headline(message: str, status: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = re.sub(r"^\[[\w-]+\] ", "", first).removeprefix(f"{status}: ")
    return first if len(first) <= 100 else first[:97] + "..."


def feedback_markdown(r: SubmissionResult) -> str:
    """The student's feedback: score, a table of exercises, then each check's message in full."""
    title = r.lesson or "unknown lesson"
    lines = [f"# {title} — feedback for {r.student}", ""]
    if r.error:
        lines += [f"**Not graded:** {r.error}", ""]
    lines += [f"**Score: {_num(r.total)} / {_num(r.max_points)}**", ""]
    if r.exercises:
        lines += ["| Exercise | Points | Result |", "| --- | --- | --- |"]
        for e in r.exercises:
            result = (
                e.status
                if e.status in (PASSED, NOT_ATTEMPTED)
                else f"{e.status}: {_headline(e.message, e.status)}"
            )
            result = result.replace("|", "\\|")
            lines.append(f"| `{e.exercise}` | {_num(e.points)} / {_num(e.max_points)} | {result} |")
        lines.append("")
    for e in r.exercises:
        lines += [f"## `{e.exercise}` — {_num(e.points)} / {_num(e.max_points)} points: {e.status}", ""]
        body = e.message if e.status != PASSED else f"✅ {e.message}"
        fence = "````" if "```" in body else "```"
        lines += [f"{fence}text", body.rstrip(), fence, ""]
    lines += [
        "---",
        "Graded by running the course's checks (the same checks as in your notebook, hidden tests included) on "
        "your own definitions, in a separate process. Your notebook's outputs and check cells were not used; "
        "only its imports, `def`s, `class`es and simple constants were run.",
        "",
    ]
    return "\n".join(lines)


def feedback_html(r: SubmissionResult) -> str:
    """The same feedback as one self-contained HTML page."""
    esc = html.escape
    rows = "".join(
        f"<tr><td><code>{esc(e.exercise)}</code></td><td>{_num(e.points)} / {_num(e.max_points)}</td>"
        f"<td>{esc(e.status if e.status in (PASSED, NOT_ATTEMPTED) else e.status + ': ' + _headline(e.message, e.status))}"
        "</td></tr>"
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
        f"<title>{esc(r.lesson or '')} — {esc(r.student)}</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}pre{white-space:pre-wrap;"
        "background:#f6f6f6;padding:1em}td,th{padding:.2em .8em;text-align:left}</style></head><body>"
        f"<h1>{esc(r.lesson or 'unknown lesson')} — feedback for {esc(r.student)}</h1>{error}"
        f"<p><strong>Score: {_num(r.total)} / {_num(r.max_points)}</strong></p>"
        f"<table><tr><th>Exercise</th><th>Points</th><th>Result</th></tr>{rows}</table>{sections}"
        "<hr><p>Graded by running the course's checks (hidden tests included) on your own definitions, in a "
        "separate process. Your notebook's outputs and check cells were not used.</p></body></html>\n"
    )


def summary(results: list[SubmissionResult]) -> str:
    """Per lesson: how many submissions, the mean score, and for each exercise its pass rate and commonest mistakes."""
    by_lesson: dict[str, list[SubmissionResult]] = defaultdict(list)
    for r in results:
        by_lesson[r.lesson or "?"].append(r)
    lines = ["# Class summary", ""]
    for lesson in sorted(by_lesson):
        group = by_lesson[lesson]
        n = len(group)
        mean = sum(r.total for r in group) / n
        top = max((r.max_points for r in group), default=0)
        lines += [f"## {lesson}: {n} submission{'s' * (n != 1)}, mean {mean:.1f} / {_num(top)}", ""]
        errors = [r for r in group if r.error]
        if errors:
            lines += [f"Not graded at all: {', '.join(r.student for r in errors)}.", ""]
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
            common = ", ".join(f"{d} ({c})" for d, c in problems) or "—"
            lines.append(
                f"| `{ex}` | {passed}/{len(items)} ({100 * passed / len(items):.0f}%) | {idle} | {common} |"
            )
        lines.append("")
    return "\n".join(lines)


def feedback_names(results: list[SubmissionResult]) -> list[str]:
    """A file name per submission: the student, with the lesson added only when a student has several."""
    safe = [re.sub(r"[^\w.-]+", "_", r.student).strip("._") or "student" for r in results]
    counts = Counter(safe)
    names, used = [], set()
    for base, r in zip(safe, results, strict=True):
        name = base if counts[base] == 1 else f"{base}-{r.lesson or 'unknown'}"
        k, candidate = 2, name
        while candidate in used:
            candidate, k = f"{name}-{k}", k + 1
        used.add(candidate)
        names.append(candidate)
    return names


def write_reports(results: list[SubmissionResult], out: Path, fmt: str = "md") -> list[Path]:
    """scores.csv, summary.md and feedback/<student>.<fmt> in `out`; returns the paths written."""
    if fmt not in FORMATS:
        raise ValueError(f"feedback format must be one of {FORMATS}, got {fmt!r}.")
    out = Path(out)
    written = [out / "scores.csv", out / "summary.md"]
    _write(written[0], scores_csv(results))
    _write(written[1], summary(results))
    render = feedback_markdown if fmt == "md" else feedback_html
    for name, r in zip(feedback_names(results), results, strict=True):
        path = out / "feedback" / f"{name}.{fmt}"
        _write(path, render(r))
        written.append(path)
    return written
