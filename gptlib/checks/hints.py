"""Hints of increasing detail for each exercise, and the hint for each mistake a check can diagnose.

Each lesson's check module registers its hints here. In a notebook,
`show_hints("attention")` shows them folded (the learner opens only what they
want); a failed check names the hint for the mistake it found.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class ExerciseHints:
    """levels: a nudge first, then more detail (pseudocode last). diagnoses: mistake code -> hint."""

    levels: list[str]
    diagnoses: dict[str, str] = field(default_factory=dict)


_HINTS: dict[str, ExerciseHints] = {}

# Mistakes every check can find, whatever the exercise.
_COMMON = {
    "returned-none": "the last line of forward (or your function) should be `return <result>`.",
    "returned-tuple": "a trailing comma turns `return y,` into a tuple; return the tensor itself.",
    "no-super-init": "an nn.Module's __init__ starts with `super().__init__()`, before any layer is created.",
    "not-done": "run the exercise cell after replacing `raise NotImplementedError()` with your code.",
}


def register_hints(exercise: str, levels: list[str], diagnoses: dict[str, str] | None = None) -> None:
    """Called by the check modules, once per exercise."""
    _HINTS[exercise] = ExerciseHints(list(levels), dict(diagnoses or {}))


def exercises() -> list[str]:
    return sorted(_HINTS)


def hint_for(exercise: str, diagnosis: str) -> str | None:
    """The hint for one diagnosed mistake, or None."""
    entry = _HINTS.get(exercise)
    if entry is not None and diagnosis in entry.diagnoses:
        return entry.diagnoses[diagnosis]
    return _COMMON.get(diagnosis)


class HintsView:
    """Folded hints: HTML <details> in JupyterLab, plain text elsewhere."""

    def __init__(self, exercise: str, entry: ExerciseHints):
        self.exercise = exercise
        self.entry = entry

    def _title(self, i: int) -> str:
        n = len(self.entry.levels)
        kind = "a nudge" if i == 0 else ("pseudocode" if i == n - 1 else "more detail")
        return f"Hint {i + 1} of {n}: {kind}"

    def _repr_html_(self) -> str:
        parts = []
        for i, text in enumerate(self.entry.levels):
            body = html.escape(text)
            parts.append(
                f"<details><summary>{self._title(i)}</summary>"
                f"<pre style='white-space: pre-wrap'>{body}</pre></details>"
            )
        return "\n".join(parts)

    def __repr__(self) -> str:
        return f"<{len(self.entry.levels)} hints for {self.exercise!r}: click to open>"


def show_hints(exercise: str) -> HintsView:
    """Hints for an exercise, folded until opened. Use as the last line of a cell."""
    # Every exercise's hints are registered: importing this module ran gptlib/checks/__init__.py first,
    # which imports every check module.
    if exercise not in _HINTS:
        raise ValueError(f"no hints for {exercise!r}; exercises with hints: {', '.join(exercises())}.")
    return HintsView(exercise, _HINTS[exercise])
