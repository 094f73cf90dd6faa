"""Submissions for the grader's tests, made from the real solution notebooks by editing cells with nbformat.

Honest ones (solved, untouched, one classic mistake, a messy but working notebook)
and adversarial ones: each attack is the code a student could put in the
`unigram_entropy` exercise (2 points in lesson 00) or in extra cells. The rest of
each adversarial notebook is solved, so its other exercises must keep their
(deserved) points while the attacked one gets none.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from gptlib.course.notebooks import student_version

ENTROPY_BODY = """\
    counts = torch.bincount(data, minlength=vocab_size).double()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())
"""
SIGNATURE = "def unigram_entropy(data, vocab_size):\n"


@dataclass
class Places:
    """Paths and ports an attack aims at (the test's own temporary copies)."""

    solutions: Path
    out: Path
    victim: Path
    port: int


def load(solutions: Path, lesson: str) -> nbformat.NotebookNode:
    return nbformat.read(Path(solutions) / f"{lesson}.ipynb", as_version=4)


def cell_of(nb: nbformat.NotebookNode, exercise: str, kind: str = "exercise") -> nbformat.NotebookNode:
    """The exercise (or check) cell of an exercise, by its metadata."""
    for cell in nb.cells:
        meta = cell.metadata
        if meta.get("gptlib", {}).get("exercise") == exercise and kind in meta.get("tags", []):
            return cell
    raise KeyError(f"no {kind} cell for {exercise!r}")


def with_exercise(nb: nbformat.NotebookNode, exercise: str, source: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    cell_of(nb, exercise).source = source
    return nb


def add_cell(nb: nbformat.NotebookNode, source: str, at: int | None = None, outputs: list | None = None):
    nb = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(source)
    if outputs:
        cell.outputs = outputs
    nb.cells.insert(len(nb.cells) if at is None else at, cell)
    return nb


def entropy(prelude: str = "", body: str = ENTROPY_BODY, before: str = "") -> str:
    """An unigram_entropy cell: `before` at top level, `prelude` as the first lines of the function."""
    return before + SIGNATURE + textwrap.indent(textwrap.dedent(prelude), "    ") + body


# --- honest -------------------------------------------------------------------------------------------


def no_causal_mask(solutions: Path) -> nbformat.NotebookNode:
    """Lesson 02, solved, except that CausalSelfAttention forgets the causal mask: the classic mistake."""
    nb = load(solutions, "02_attention")
    cell = cell_of(nb, "attention")
    lines = [ln for ln in cell.source.split("\n") if "masked_fill" not in ln]
    assert len(lines) == len(cell.source.split("\n")) - 1, "the solution's masking line moved"
    cell.source = "\n".join(lines)
    return nb


def messy(solutions: Path) -> nbformat.NotebookNode:
    """Lesson 00 as a real student might hand it in: metadata gone, check cells deleted or retyped, cells
    reordered, a helper moved below its user, cells added, get_batch's cell deleted, a cell that does not parse."""
    nb = load(solutions, "00_tokens_and_batches")
    keep = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "check" in tags and cell.metadata["gptlib"]["exercise"] == "char_tokenizer":
            continue  # deleted check cell
        if "exercise" in tags and cell.metadata["gptlib"]["exercise"] == "get_batch":
            continue  # deleted exercise
        if "check" in tags:
            cell.source = "print('checked!')"  # retyped check cell
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs = []
        keep.append(cell)
    nb.cells = [c for c in keep if c.cell_type == "code" or c.source]
    ent = next(c for c in nb.cells if "def unigram_entropy" in c.source)
    ent.source = entropy(body="    return _entropy_of(torch.bincount(data, minlength=vocab_size).double())\n")
    nb.cells.remove(ent)
    nb.cells.insert(2, ent)  # moved up, right after the setup cell; its helper goes to the end
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "def _entropy_of(counts):\n    p = counts / counts.sum()\n    p = p[p > 0]\n    return float(-(p * p.log()).sum())"
        )
    )
    nb.cells.append(nbformat.v4.new_code_cell("for i in range(3):\n    print(i)\nthis is not python"))
    nb.cells.append(nbformat.v4.new_markdown_cell("My notes."))
    nb.metadata = {}
    return nb


# --- adversarial ---------------------------------------------------------------------------------------


def _attack_nb(solutions: Path, source: str, extra: list[str] = (), at: int | None = None):
    nb = with_exercise(load(solutions, "00_tokens_and_batches"), "unigram_entropy", source)
    for s in extra:
        nb = add_cell(nb, s, at)
    return nb


STUB = SIGNATURE + "    # YOUR CODE HERE\n    raise NotImplementedError()\n"

ATTACKS: dict[str, Callable[[Path, Places], nbformat.NotebookNode]] = {
    # a cell replaces the checks (and the grader's idea of "passed") with ones that always pass
    "patch_checks_from_a_cell": lambda s, p: _attack_nb(
        s,
        STUB,
        [
            "import gptlib.checks, gptlib.checks.tokens_and_batches\n"
            "fake = lambda fn: print('✅ unigram_entropy: passed — trust me')\n"
            "gptlib.checks.check_unigram_entropy = fake\n"
            "gptlib.checks.tokens_and_batches.check_unigram_entropy = fake\n"
            "import gptlib.course.grade as g\n"
            "g.PASSED = 'not attempted'\n"
            "check_unigram_entropy = fake\n"
        ],
    ),
    # the exercise itself patches the check's helpers
    "patch_checks_in_the_exercise": lambda s, p: _attack_nb(
        s,
        entropy(
            "import gptlib.checks.tokens_and_batches as t\nt._entropy = lambda counts, log=None: 0.0\n",
            body="    return 0.0\n",
        ),
    ),
    # ...through an alias the screening cannot follow: the frozen module refuses
    "patch_checks_through_an_alias": lambda s, p: _attack_nb(
        s,
        entropy(
            "g = [gptlib][0]\ng.checks.tokens_and_batches._entropy = lambda counts, log=None: 0.0\n",
            body="    return 0.0\n",
            before="import gptlib\n\n",
        ),  # fmt: skip
    ),
    # ...patching a library the check relies on (math.isclose): the integrity check voids the verdict
    "patch_a_library": lambda s, p: _attack_nb(
        s,
        entropy(
            "m = [math][0]\nm.isclose = lambda *a, **k: True\n",
            body="    return 0.0\n",
            before="import math\n\n",
        ),
    ),
    # wrong answer, fake success lines everywhere: printed, stored as outputs, check cell retyped
    "fake_success": lambda s, p: _fake_success(s),
    # sys.exit and os._exit in cells (never run) and os._exit in the exercise (ends the process)
    "exit_mid_notebook": lambda s, p: _attack_nb(
        s,
        entropy("os._exit(0)\n", before="import os\n\n"),
        ["import sys\nsys.exit(0)", "import os\nos._exit(0)"],
        at=3,
    ),
    "infinite_loop": lambda s, p: _attack_nb(
        s, entropy("while True:\n    pass\n"), ["while True:\n    pass"], at=3
    ),
    "memory_hog": lambda s, p: _attack_nb(
        s,
        entropy("hog = torch.ones(4 * 2**30, dtype=torch.uint8)  # 4 GB: fits this machine, not the limit\n"),
        ["hog = bytearray(20 * 2**30)"],
        at=3,
    ),
    "fork": lambda s, p: _attack_nb(
        s,
        entropy("if os.fork() == 0:\n    while True:\n        pass\n", before="import os\n\n"),
        ["import os\nwhile True:\n    os.fork()"],
        at=3,
    ),
    "read_solutions": lambda s, p: _attack_nb(
        s, entropy(f"answer = open({str(p.solutions / '00_tokens_and_batches.ipynb')!r}).read()\n")
    ),
    "write_output_folder": lambda s, p: _attack_nb(
        s,
        entropy(
            f"os.makedirs({str(p.out)!r}, exist_ok=True)\n"
            f"open({str(p.out / 'scores.csv')!r}, 'w').write('student,total\\nvictim,-1\\n')\n"
            f"open({str(p.out / 'pwned.txt')!r}, 'w').write('pwned')\n",
            before="import os\n\n",
        ),
    ),
    "delete_files": lambda s, p: _attack_nb(
        s,
        entropy(
            f"os.remove({str(p.victim)!r})\nshutil.rmtree({str(p.solutions)!r})\n",
            before="import os\nimport shutil\n\n",
        ),
    ),
    "network": lambda s, p: _attack_nb(
        s,
        entropy(
            f"import socket as so\nc = so.create_connection(('127.0.0.1', {p.port}), timeout=2)\n"
            "c.sendall(b'the answer please')\n"
        ),
    ),
    # ...through a module the screening lets through (smtplib): the sandbox refuses the socket at run time
    "network_at_run_time": lambda s, p: _attack_nb(
        s,
        entropy(
            f"smtplib.SMTP('127.0.0.1', {p.port}, timeout=2).sendmail('a@b', 'c@d', 'answer?')\n",
            before="import smtplib\n\n",
        ),  # fmt: skip
    ),
    # writes a forged verdict to every descriptor it can, then ends the process
    "forge_verdict": lambda s, p: _attack_nb(
        s,
        entropy(
            "import json\nfor fd in range(3, 64):\n    try:\n"
            "        os.write(fd, (json.dumps({'payload': json.dumps({'status': 'passed', 'exercise': "
            "'unigram_entropy'}), 'mac': '0' * 64}) + '\\n').encode())\n"
            "    except OSError:\n        pass\nos._exit(0)\n",
            before="import os\n\n",
        ),
    ),
    # hands in gptlib's finished get_batch as its own
    "copy_the_reference": lambda s, p: _copy_reference(s),
}


def _fake_success(solutions: Path) -> nbformat.NotebookNode:
    line = "✅ unigram_entropy: passed — matches -sum(p ln p)\n"
    nb = _attack_nb(solutions, entropy(f"print({line!r})\n", body="    return 1.0\n"), [f"print({line!r})"])
    check = cell_of(nb, "unigram_entropy", "check")
    check.source = f"print({line!r})"
    check.outputs = [nbformat.v4.new_output("stream", name="stdout", text=line)]
    return nb


def _copy_reference(solutions: Path) -> nbformat.NotebookNode:
    nb = load(solutions, "00_tokens_and_batches")
    cell_of(nb, "get_batch").source = "from gptlib.data import get_batch"
    return nb


def untouched(solutions: Path, lesson: str) -> nbformat.NotebookNode:
    return student_version(load(solutions, lesson))
