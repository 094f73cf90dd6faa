"""Hints: a nudge, more detail and pseudocode for each exercise, and one hint per mistake a check names.

They are data, one Markdown file per lesson in gptlib/checks/hints/ (`NN_lesson.md`):

    ## exercise_name            (## * : diagnoses shared by every exercise of the file)
    1. the nudge, prose with `code`
    2. more detail
    3. ```
       pseudocode
       ```
    - `diagnosis-code`: the hint for that mistake, one paragraph
      (continued on lines indented by two spaces)

`hints/common.md` holds the hints every check shares. In a notebook, `show_hints("attention")`
shows an exercise's levels folded, as prose with code set as code; a failed check quotes the
hint for the mistake it found.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass, field
from importlib import resources

SHARED, COMMON = "*", "common"


@dataclass
class ExerciseHints:
    """levels: a nudge first, then more detail (pseudocode last). diagnoses: mistake code -> hint."""

    levels: list[str] = field(default_factory=list)
    diagnoses: dict[str, str] = field(default_factory=dict)
    lesson: str = ""


_ITEM = re.compile(r"^(\d+)\. (.*)$")
_DIAGNOSIS = re.compile(r"^- `([^`]+)`: (.*)$")


def parse(text: str, lesson: str) -> dict[str, ExerciseHints]:
    """A lesson's hints file -> {exercise: ExerciseHints} (SHARED for the '## *' section)."""
    out: dict[str, ExerciseHints] = {}
    current: ExerciseHints | None = None
    target: list[str] | None = None  # the lines of the item being read
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("## "):
            current = out.setdefault(line[3:].strip(), ExerciseHints(lesson=lesson))
            target = None
        elif current is None or line.startswith("# "):
            continue
        elif m := _ITEM.match(line):
            target = [m.group(2)]
            current.levels.append(target)  # type: ignore[arg-type]  # joined below
        elif m := _DIAGNOSIS.match(line):
            target = [m.group(2)]
            current.diagnoses[m.group(1)] = target  # type: ignore[assignment]
        elif target is not None and (line.startswith("  ") or not line):
            target.append(line)
        elif line:
            raise ValueError(f"hints for lesson {lesson}: cannot read the line {line!r}")
    for entry in out.values():
        entry.levels = [_level(lines) for lines in entry.levels]  # type: ignore[arg-type]
        entry.diagnoses = {k: " ".join(s.strip() for s in v if s.strip()) for k, v in entry.diagnoses.items()}
    return out


def _level(lines: list[str]) -> str:
    """An item's text: prose lines joined by spaces, a fenced block kept line by line (indent removed)."""
    body = "\n".join(s[3:] if s.startswith("   ") else s.strip() for s in lines).strip()
    parts = re.split(r"(```\n.*?\n```)", body, flags=re.S)
    return "\n".join(p if p.startswith("```") else " ".join(p.split()) for p in parts if p.strip())


@functools.cache
def _all() -> dict[str, ExerciseHints]:
    """Every lesson's hints, by exercise; the '## *' sections under 'NN_lesson/*'; common.md under 'common'."""
    out: dict[str, ExerciseHints] = {}
    for file in sorted(resources.files("gptlib.checks").joinpath("hints").iterdir(), key=lambda f: f.name):
        if not file.name.endswith(".md"):
            continue
        lesson = file.name.removesuffix(".md")
        for name, entry in parse(file.read_text(encoding="utf-8"), lesson).items():
            key = COMMON if lesson == COMMON else (f"{lesson}/{SHARED}" if name == SHARED else name)
            if key in out:
                raise ValueError(f"hints for {key!r} are written twice ({out[key].lesson} and {lesson})")
            out[key] = entry
    return out


def exercises() -> list[str]:
    return sorted(k for k, v in _all().items() if v.levels)


def hint_for(exercise: str, diagnosis: str) -> str | None:
    """The hint for one diagnosed mistake: the exercise's own, else its lesson's shared one, else common."""
    hints = _all()
    entry = hints.get(exercise)
    for source in (entry, hints.get(f"{entry.lesson}/{SHARED}") if entry else None, hints.get(COMMON)):
        if source is not None and diagnosis in source.diagnoses:
            return source.diagnoses[diagnosis]
    return None


def as_html(text: str) -> str:
    """A hint as HTML: prose in paragraphs with `code` set as code; a fenced block as a block of code that
    scrolls rather than wraps."""
    parts = []
    for chunk in re.split(r"(```\n.*?\n```)", text, flags=re.S):
        if chunk.startswith("```"):
            code = html.escape(chunk.strip("`").strip("\n"))
            parts.append(f"<pre style='white-space: pre; overflow-x: auto'><code>{code}</code></pre>")
        elif chunk.strip():
            prose = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(chunk.strip(), quote=False))
            parts.append(f"<p>{prose}</p>")
    return "".join(parts)


class HintsView:
    """Folded hints: HTML <details> in JupyterLab, a one-line summary elsewhere."""

    def __init__(self, exercise: str, entry: ExerciseHints):
        self.exercise = exercise
        self.entry = entry

    def _title(self, i: int) -> str:
        n = len(self.entry.levels)
        kind = "a nudge" if i == 0 else ("pseudocode" if i == n - 1 else "more detail")
        return f"Hint {i + 1} of {n}: {kind}"

    def _repr_html_(self) -> str:
        return "\n".join(
            f"<details><summary>{self._title(i)}</summary>{as_html(text)}</details>"
            for i, text in enumerate(self.entry.levels)
        )

    def __repr__(self) -> str:
        return f"<{len(self.entry.levels)} hints for {self.exercise!r}: click to open>"


def show_hints(exercise: str) -> HintsView:
    """Hints for an exercise, folded until opened. Use as the last line of a cell."""
    entry = _all().get(exercise)
    if entry is None or not entry.levels:
        raise ValueError(f"no hints for {exercise!r}; exercises with hints: {', '.join(exercises())}.")
    return HintsView(exercise, entry)
