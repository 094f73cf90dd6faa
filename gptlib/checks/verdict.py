"""What a check says: one line when it passes, a CheckFailure when it finds a mistake.

A failure's text (str) is whole everywhere: the exercise, what is wrong, the hint
for that mistake, and where more help is. In IPython (JupyterLab) the failure
renders itself instead of a traceback (`_render_traceback_`): the same four parts,
in that order, and no frame of gptlib or the standard library; when the learner's
own code crashed inside the check, the frames of THEIR code and the error, with
what the check was doing. "Not done yet" is one line.
"""

from __future__ import annotations

import textwrap

from gptlib.checks.codes import CRASHED, NOT_DONE
from gptlib.checks.hints import hint_for
from gptlib.checks.learner import Crash

WIDTH = 110  # columns: the output area of a 1400-pixel-wide JupyterLab shows them without wrapping
RED, BOLD, DIM, RESET = "\x1b[1;31m", "\x1b[1m", "\x1b[2m", "\x1b[0m"


class CheckFailure(AssertionError):
    """A check found a mistake. `diagnosis` is a short code for it (e.g. "missing-scale"); `crash`, when the
    learner's code raised, holds their frames; `doing` is what the check was running then."""

    def __init__(
        self, exercise: str, diagnosis: str, message: str, crash: Crash | None = None, doing: str = ""
    ) -> None:
        self.exercise, self.diagnosis, self.message = exercise, diagnosis, message
        self.crash, self.doing = crash, doing
        self.hint = hint_for(exercise, diagnosis)
        text = f"[{exercise}] {message}"
        if self.hint:
            text += f"\nHint: {self.hint}"
        super().__init__(text + f'\nMore help: show_hints("{exercise}")')

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows in place of the traceback."""
        head = f"{RED}✗ {self.exercise}{RESET}: "
        if self.crash is not None and self.diagnosis == CRASHED:
            lines = _wrap(f"{head}your code raised {self.crash.name} while the check ran {self.doing}:")
            lines += _frames(self.crash)
        else:
            lines = _wrap(head + self.message)
            if self.crash is not None:
                lines += _frames(self.crash)
        if self.hint:
            lines += _wrap(f"{BOLD}Hint:{RESET} {self.hint}")
        return lines + [f'{DIM}More help: show_hints("{self.exercise}"){RESET}']


class NotDoneYet(CheckFailure):
    """The exercise still raises NotImplementedError: nothing to check yet."""

    def __init__(self, exercise: str, what: str):
        self.what = what
        super().__init__(
            exercise,
            NOT_DONE,
            f"not done yet: {what} still raises NotImplementedError. Replace the "
            "`raise NotImplementedError()` line with your code, run that cell, then run this check again.",
        )

    def _render_traceback_(self) -> list[str]:
        return [f"⏳ {self.exercise}: not done yet ({self.what} still raises NotImplementedError)."]


def passed(exercise: str, verified: str) -> None:
    """The one line a check prints on success."""
    print(f"✅ {exercise}: passed — {verified}")


def _wrap(text: str) -> list[str]:
    """Each line of `text` wrapped at WIDTH columns (the browser then never breaks a word)."""
    out = []
    for line in text.splitlines() or [""]:
        indent = " " * (len(line) - len(line.lstrip(" ")))
        out += textwrap.wrap(
            line, WIDTH, subsequent_indent=indent + "  ", break_long_words=False, break_on_hyphens=False
        ) or [""]
    return out


def _frames(crash: Crash) -> list[str]:
    """The learner's frames (where in their code), then the error."""
    lines = []
    for f in crash.frames[-3:]:
        lines.append(f"  {f.place}, line {f.line}, in {f.function}")
        if f.code:
            lines.append(f"    {BOLD}{f.code}{RESET}")
    return lines + _wrap(f"  {RED}{crash.name}{RESET}: {crash.message}")
