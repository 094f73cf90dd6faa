"""The learner notebooks: generated from the solutions, and runnable untouched.

An untouched lesson must fail only where the learner has work to do: every
error is an exercise stub's NotImplementedError or a check's "not done yet",
never a NameError, an ImportError or any other crash.
"""

import ast
import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from gptlib.course.execute import execute
from gptlib.course.notebooks import INSTALL_CELL, INSTALL_LINE, INSTALL_TAG, build_lessons, student_version

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
ALLOWED_ERRORS = {"NotImplementedError", "NotDoneYet"}


def test_lessons_match_solutions():
    stale = build_lessons(ROOT / "solutions", ROOT / "lessons", check=True)
    assert not stale, f"lessons/ is stale for {[p.name for p in stale]}: run `python -m gptlib.course build`"


def test_every_solution_has_a_lesson():
    solutions = {p.name for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")}
    assert solutions, "no solution notebooks"
    assert solutions == {p.name for p in LESSONS}


def untouched_lesson_problems(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """What is wrong with an untouched lesson, run with errors allowed: crashes other than the exercise stubs'
    NotImplementedError and the checks' NotDoneYet, or check cells that did not say 'not done yet'."""
    errors = []
    not_done_checks = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append((i, out.ename, out.evalue))
                if out.ename == "NotDoneYet" and "check" in cell.metadata.get("tags", []):
                    not_done_checks += 1
    problems = []
    crashes = [e for e in errors if e[1] not in ALLOWED_ERRORS]
    if crashes:
        problems.append(f"{name}: cells that crash in the learner version: {crashes}")
    checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
    if len(checks) < 2:
        problems.append(f"{name}: a lesson needs at least two checked exercises")
    if not_done_checks != len(checks):
        problems.append(f"{name}: {len(checks)} check cells, but only {not_done_checks} said 'not done yet'")
    return problems


@pytest.mark.notebooks
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_untouched_lesson_fails_only_with_not_done_yet(lesson):
    nb, _ = execute(lesson, timeout=300, allow_errors=True)
    assert not untouched_lesson_problems(nb, lesson.name)


def test_stub_replaces_solution_at_its_indentation():
    nb = nbformat.v4.new_notebook()
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "class A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 1\n        ### END SOLUTION\n"
        )
    )
    out = student_version(nb).cells[-1].source  # after the install cell
    assert (
        out == "class A:\n    def f(self):\n        # YOUR CODE HERE\n        raise NotImplementedError()\n"
    )


# --- what a learner sees ------------------------------------------------------------------------------

SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
# JupyterLab's output area in a 1400 x 900 window (file browser open): a wider picture is shrunk.
DISPLAY_WIDTH_PX = 968


def _code_cells(path: Path) -> list[tuple[int, nbformat.NotebookNode]]:
    nb = nbformat.read(path, as_version=4)
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_gptlib_is_imported_before_torch(solution):
    # gptlib lets torch's idle threads sleep, which torch reads once, when it loads (gptlib/threads.py).
    import ast

    _, setup = _code_cells(solution)[0]
    tree = ast.parse("\n".join(line for line in setup.source.splitlines() if not line.startswith("%")))
    modules = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules.append((node.module or "").split(".")[0])
    loads_torch = [m for m in modules if m in ("gptlib", "torch", "transformers")]
    assert loads_torch and loads_torch[0] == "gptlib", f"{solution.name}: imports {modules}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_figures_fit_the_notebook_with_text_of_8pt_or_more(solution):
    import base64
    import re
    import struct

    for i, cell in _code_cells(solution):
        sizes = [float(s) for s in re.findall(r"fontsize=(\d+(?:\.\d+)?)", cell.source)]
        assert all(s >= 8 for s in sizes), f"{solution.name} cell {i}: text at {min(sizes)} pt"
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                width = struct.unpack(">I", base64.b64decode(png)[16:20])[0]  # the PNG header's width
                assert width <= DISPLAY_WIDTH_PX, (
                    f"{solution.name} cell {i}: a {width} px wide figure is shrunk"
                )


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_no_project_words_in_what_learners_read(solution):
    import re

    nb = nbformat.read(solution, as_version=4)
    words = re.compile(r"\bthe seed\b|\bseed's\b|NBVAL|\bnbval\b|\bthe lead\b|\bmaintainers?\b", re.I)
    for i, cell in enumerate(nb.cells):
        text = (
            cell.source
            if cell.cell_type == "markdown"
            else "\n".join(line.split("#", 1)[1] for line in cell.source.splitlines() if "#" in line)
        )
        found = words.findall(text)
        assert not found, f"{solution.name} cell {i}: {found}"


def test_the_stored_explorer_shows_its_last_view_and_how_to_bring_it_back():
    """Without a kernel (or rendered elsewhere) the explorer's cell shows a picture and a line, not a repr."""
    (solution,) = (ROOT / "solutions").glob("07_*.ipynb")
    (cell,) = [c for _, c in _code_cells(solution) if c.source.rstrip().endswith("explorer")]
    picture, live = cell.outputs
    assert 'class="gptlib-attn-static"' in picture.data["text/html"]
    assert '<img src="data:image/png;base64,' in picture.data["text/html"]
    assert "run the cells above and this one again" in picture.data["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in live.data and live.data["text/plain"] == ""
    assert "nbval-ignore-output" in cell.metadata.tags  # the picture and its measured time vary


def test_every_lesson_says_how_to_install_the_course_on_a_hosted_service():
    """After the title, each lesson has the same generated cell: where gptlib cannot be imported (a hosted
    notebook service), it stops with the one line to run there. Checked by parsing: this machine is offline."""
    for path in LESSONS:
        nb = nbformat.read(path, as_version=4)
        tagged = [i for i, c in enumerate(nb.cells) if INSTALL_TAG in c.metadata.get("tags", [])]
        assert tagged == [1] and nb.cells[0].cell_type == "markdown", (
            f"{path.name}: the install cell follows the title"
        )
        assert nb.cells[1].source == INSTALL_CELL
    for path in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"):
        assert INSTALL_CELL not in path.read_text(encoding="utf-8"), (
            "generated into lessons/, not in the source"
        )
    ast.parse(INSTALL_CELL)
    # the line is pip run in the notebook's own kernel, installing the course by its name on PyPI
    name = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M).group(
        1
    )
    assert INSTALL_LINE == f"%pip install {name}"
    assert TransformerManager().transform_cell(INSTALL_LINE).strip() == (
        f"get_ipython().run_line_magic('pip', 'install {name}')"
    )


def test_the_install_cell_is_silent_where_gptlib_is_installed_and_says_the_line_where_it_is_not():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        exec(INSTALL_CELL, {})
    assert out.getvalue() == ""
    blocked = "import sys; sys.modules['gptlib'] = None\n" + INSTALL_CELL  # import gptlib now fails
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-3:] == [
        "ImportError: this lesson needs the course's library, gptlib. Run this line in a new cell:",
        f"    {INSTALL_LINE}",
        "then run the notebook again from the top (restart the kernel if pip asks you to).",
    ]


def test_no_lesson_calls_a_shell():
    """Learners use Windows and macOS: no `!command` or shell cell magics in any notebook."""
    for path in [*LESSONS, *(ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")]:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                shell = [
                    ln
                    for ln in cell.source.splitlines()
                    if re.match(r"\s*(!|%%?(bash|sh|system|sx|script)\b)", ln)
                ]
                assert not shell, f"{path.name}: {shell}"
