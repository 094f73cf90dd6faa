"""Learner notebooks from solution notebooks: the code between solution markers becomes a stub.

The markers are nbgrader's, so a teacher who uses nbgrader can take solutions/
as its source:

    ### BEGIN SOLUTION
    ...the answer...
    ### END SOLUTION

becomes, at the same indentation,

    # YOUR CODE HERE
    raise NotImplementedError()

Markdown answers become "YOUR ANSWER HERE". Outputs are cleared, metadata kept. After the title comes one
cell more, the same in every lesson: on a hosted notebook service, where gptlib is not installed yet, it
stops with the one line to run there (INSTALL_CELL).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
TEXT_STUB = ["YOUR ANSWER HERE"]
INSTALL_LINE = "%pip install gptlib-course"
INSTALL_CELL = f"""\
# On a hosted notebook service (Colab, Kaggle, Binder, ...) the course's library may not be installed yet:
# this cell then says what to run. Where gptlib is installed, it does nothing.
try:
    import gptlib
except ImportError:
    raise ImportError(
        "this lesson needs the course's library, gptlib. Run this line in a new cell:\\n"
        "    {INSTALL_LINE}\\n"
        "then run the notebook again from the top (restart the kernel if pip asks you to)."
    ) from None"""
INSTALL_TAG = "install"


class MarkerError(ValueError):
    """A solution marker without its partner, or nested markers."""


def _replace_regions(lines: list[str], begin: str, end: str, stub: list[str] | None, where: str) -> list[str]:
    out: list[str] = []
    inside = False
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise MarkerError(f"{where}: line {n}: '{begin}' inside another one.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in (stub or []))
        elif stripped == end:
            if not inside:
                raise MarkerError(f"{where}: line {n}: '{end}' without a '{begin}' before it.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{begin}' is never closed by '{end}'.")
    return out


def strip_cell(source: str, cell_type: str, where: str, hidden_tests: bool = True) -> str:
    """One cell's learner version. hidden_tests=False also removes the hidden-test regions."""
    lines = source.split("\n")
    stub = CODE_STUB if cell_type == "code" else TEXT_STUB
    lines = _replace_regions(lines, BEGIN, END, stub, where)
    if not hidden_tests:
        lines = _replace_regions(lines, BEGIN_HIDDEN, END_HIDDEN, None, where)
    return "\n".join(lines)


def install_cell() -> nbformat.NotebookNode:
    """The cell that tells a learner on a hosted service how to install the course (fixed id: stable output)."""
    cell = nbformat.v4.new_code_cell(INSTALL_CELL, metadata={"tags": [INSTALL_TAG]})
    cell.id = "install-gptlib"
    return cell


def student_version(nb: nbformat.NotebookNode, name: str = "notebook", hidden_tests: bool = True):
    """A copy of a solution notebook with every solution replaced by a stub, no outputs, and the install
    cell after the title."""
    nb = nbformat.from_dict(nb)  # deep copy
    for i, cell in enumerate(nb.cells):
        if cell.cell_type in ("code", "markdown"):
            cell.source = strip_cell(cell.source, cell.cell_type, f"{name}, cell {i}", hidden_tests)
        cell.metadata.pop("execution", None)  # timestamps of the run that stored the solution's outputs
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    title = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(title, install_cell())
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    """The notebook as JSON text, byte-for-byte stable for the same content."""
    return nbformat.writes(nb) + "\n"


def build_lessons(solutions: Path, lessons: Path, check: bool = False) -> list[Path]:
    """Write lessons/NN_*.ipynb from solutions/NN_*.ipynb. With check=True write nothing and
    return the lessons that are missing or differ from what the solutions give."""
    solutions, lessons = Path(solutions), Path(lessons)
    sources = sorted(p for p in solutions.glob("*.ipynb") if re.match(r"\d\d_", p.name))
    if not sources:
        raise FileNotFoundError(f"no solution notebooks (NN_name.ipynb) in {solutions}.")
    stale = []
    for src in sources:
        nb = nbformat.read(src, as_version=4)
        text = dumps(student_version(nb, src.name))
        dst = lessons / src.name
        if dst.exists() and dst.read_text(encoding="utf-8") == text:
            continue
        stale.append(dst)
        if not check:
            lessons.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_suffix(".ipynb.tmp")
            tmp.write_text(text, encoding="utf-8", newline="\n")
            tmp.replace(dst)
    if not check:
        known = {s.name for s in sources}
        for extra in lessons.glob("*.ipynb"):
            if re.match(r"\d\d_", extra.name) and extra.name not in known:
                stale.append(extra)  # a lesson whose solution is gone: report it, never delete work
    return stale
