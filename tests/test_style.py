"""The code, notebooks included, passes the project's linter and formatter (ruff, configured in pyproject), and
needs no Python newer than the oldest one the course supports (vermin, a static check: only 3.11 is run here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
OLDEST = "3.10"  # pyproject.toml's requires-python (tests/test_packaging.py keeps them equal)
VERMIN = "import sys; from vermin.main import main; sys.exit(main())"  # vermin has no `python -m vermin`


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, f"ruff {' '.join(command)} found problems:\n{done.stdout}{done.stderr}"


def _notebook_code(tmp: Path) -> list[Path]:
    """Each notebook's code cells as one .py file (IPython magics turned into the calls they stand for)."""
    to_python = TransformerManager().transform_cell
    files = []
    for nb_path in sorted([*ROOT.glob("solutions/*.ipynb"), *ROOT.glob("lessons/*.ipynb")]):
        nb = nbformat.read(nb_path, as_version=4)
        code = "\n\n".join(to_python(c.source) for c in nb.cells if c.cell_type == "code")
        out = tmp / nb_path.parent.name / f"{nb_path.stem}.py"
        out.parent.mkdir(exist_ok=True)
        out.write_text(code, encoding="utf-8")
        files.append(out)
    return files


def test_code_needs_no_python_newer_than_the_oldest_supported(tmp_path):
    notebooks = _notebook_code(tmp_path)
    assert len(notebooks) >= 20, "the solutions and the lessons"
    paths = ["gptlib", "bench", "tests", "conftest.py", ".ci", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", VERMIN, "--no-config-file", "--no-tips", "--eval-annotations", "--violations",
         f"-t={OLDEST}-", *paths],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    analyzed = re.search(r"Analyzing (\d+) files", done.stdout)
    assert analyzed and int(analyzed.group(1)) > len(notebooks) + 50, done.stdout
    assert done.returncode == 0, f"code that needs a Python newer than {OLDEST}:\n{done.stdout}{done.stderr}"
