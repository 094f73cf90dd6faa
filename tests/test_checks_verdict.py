"""What a learner sees when a check fails: in JupyterLab the verdict only (the exercise, what is wrong,
the hint, where more help is), never a frame of gptlib or the standard library; outside IPython the
whole text; "not done yet" in one line; a crash in the learner's own code shown at their line."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch

from gptlib.checks import CheckFailure, NotDoneYet, check_causal_average
from gptlib.checks.verdict import WIDTH

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
INTERNAL = re.compile(r"/gptlib/|site-packages|/lib/python3|<frozen|File \"")


def causal_average_sum(x):
    return torch.tril(torch.ones(x.size(1), x.size(1))) @ x  # the running sum, never divided


def causal_average_crash(x):
    T = x.size(1)
    wei = torch.tril(torch.ones(T, T + 1))
    return wei @ x  # (T, T + 1) @ (B, T, C): the shapes do not line up


def causal_average_stub(x):
    raise NotImplementedError()


def _render(fn) -> tuple[CheckFailure, list[str]]:
    with pytest.raises(CheckFailure) as info:
        check_causal_average(fn)
    return info.value, [ANSI.sub("", line) for line in info.value._render_traceback_()]


def test_a_failure_renders_the_exercise_the_problem_the_hint_and_more_help_in_that_order():
    failure, lines = _render(causal_average_sum)
    assert lines[0].startswith(
        "✗ causal_average: causal_average(x) for x of shape (2, 8, 3) matches the running sum"
    )
    hint = next(i for i, line in enumerate(lines) if line.startswith("Hint: "))
    assert lines[-1] == 'More help: show_hints("causal_average")' and 0 < hint < len(lines) - 1
    assert all(len(line) <= WIDTH for line in lines), "wrapped before the browser has to"
    assert not any(INTERNAL.search(line) for line in lines)
    assert str(failure).startswith("[causal_average] causal_average(x)") and "\nHint: " in str(failure)


def test_a_crash_in_the_learners_code_shows_their_line_and_the_error():
    failure, lines = _render(causal_average_crash)
    assert failure.diagnosis == "crashed"
    assert lines[0].startswith(
        "✗ causal_average: your code raised RuntimeError while the check ran causal_average(x)"
    )
    text = "\n".join(lines)
    assert "in causal_average_crash" in text and "return wei @ x  # (T, T + 1) @ (B, T, C)" in text
    assert "RuntimeError: " in text and not INTERNAL.search(text)
    assert (
        "line" in failure.message and "of your code" in failure.message
    )  # the whole text keeps the place too


def test_not_done_yet_is_one_line_said_once():
    failure, lines = _render(causal_average_stub)
    assert isinstance(failure, NotDoneYet)
    assert lines == ["⏳ causal_average: not done yet (causal_average(x) for x of shape (2, 8, 3) still raises "
                     "NotImplementedError)."]  # fmt: skip
    assert str(failure).count("NotImplementedError()") == 1 and "\nHint: " not in str(failure)


def _lesson_cells(exercise: str) -> list:
    """Lesson 02's setup cell, the given causal_average, and its check cell."""
    nb = nbformat.read(ROOT / "lessons" / "02_attention.ipynb", as_version=4)
    setup = next(c for c in nb.cells if "setup" in c.metadata.get("tags", []))
    check = next(c for c in nb.cells if c.source.strip() == "check_causal_average(causal_average)")
    return [setup, nbformat.v4.new_code_cell(exercise), check]


def test_a_lesson_shows_the_verdict_first_and_no_internal_path():
    from nbclient import NotebookClient

    from gptlib.course.execute import pin_threads

    cases = {
        "wrong": "def causal_average(x):\n    return torch.tril(torch.ones(x.size(1), x.size(1))) @ x\n",
        "crash": "def causal_average(x):\n    T = x.size(1)\n    return torch.ones(T, T + 1) @ x\n",
        "stub": "def causal_average(x):\n    raise NotImplementedError()\n",
    }
    nb = nbformat.v4.new_notebook()
    for source in cases.values():
        nb.cells += _lesson_cells(source)
    pin_threads()
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True).execute()
    errors = [
        [ANSI.sub("", line) for line in out.traceback]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]
    assert len(errors) == 3, errors
    wrong, crash, stub = errors
    assert wrong[0].startswith("✗ causal_average: causal_average(x) for x of shape (2, 8, 3) matches")
    assert crash[0].startswith("✗ causal_average: your code raised RuntimeError")
    assert any(line.strip().startswith("Cell In[") for line in crash), crash
    assert any("return torch.ones(T, T + 1) @ x" in line for line in crash), crash
    assert stub == [
        "⏳ causal_average: not done yet (causal_average(x) for x of shape (2, 8, 3) still raises NotImplementedError)."
    ]
    for lines in errors:
        assert not any(INTERNAL.search(line) for line in lines), lines
        assert len(lines) <= 12, lines
