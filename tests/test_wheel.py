"""The wheel is the course: built with PyPA build, nothing missing or stray, and installed in a fresh venv that
already holds other versions of numpy and matplotlib (it keeps them), where the course runs from outside the
source tree.

Slow (a venv and torch, ~1-2 minutes) and needs pip to reach the package index or its cache: marked `wheel`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from packaging.version import Version
from test_lessons import untouched_lesson_problems
from test_packaging import LOWEST, PROJECT, PYPROJECT

from gptlib.course.pins import normalize, read_pins

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "[0-9][0-9]_*.ipynb"
LESSON = "03_mlp.ipynb"  # short, no training: one lesson untouched and its solution
ALREADY_THERE = ("numpy", "matplotlib")  # a learner's own versions, which the install must keep


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """python -m build: the sdist, then the wheel built from it (so the sdist is complete too)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl


def expected_files() -> dict[str, Path]:
    """Path in the wheel -> the file in the repository it must be a copy of."""
    files = {
        p.relative_to(ROOT).as_posix(): p
        for p in (ROOT / "gptlib").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    for kind in ("lessons", "solutions"):
        files.update({f"gptlib/{kind}/{p.name}": p for p in (ROOT / kind).glob(NOTEBOOK)})
    return files


def test_the_wheel_holds_the_library_the_corpus_and_the_notebooks_and_nothing_else(wheel):
    done = subprocess.run(
        [sys.executable, "-m", "check_wheel_contents", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if ".dist-info/" not in n]
        expected = expected_files()
        assert sorted(names) == sorted(expected), (
            f"missing: {sorted(set(expected) - set(names))}; stray: {sorted(set(names) - set(expected))}"
        )
        for name, source in expected.items():
            assert zf.read(name) == source.read_bytes(), f"{name} differs from {source}"
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        licenses = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses and zf.read(licenses[0]) == (ROOT / "LICENSE").read_bytes(), "the wheel lacks LICENSE"
    assert f"Name: {PROJECT['name']}\n" in meta
    assert f"Requires-Python: {PROJECT['requires-python']}\n" in meta
    assert "gptlib/corpora/pydoc.txt.gz" in names
    assert sum(n.startswith("gptlib/lessons/") for n in names) == len(list((ROOT / "lessons").glob(NOTEBOOK)))


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = str(Path(cmd[0]).parent) + os.pathsep + env.get("PATH", "")
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd[:4]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _freeze(python: str, cwd: Path) -> dict[str, str]:
    lines = _run([python, "-m", "pip", "list", "--format=freeze"], cwd).split()
    return {normalize(n): v for n, v in (line.split("==") for line in lines)}


def test_the_wheel_installs_beside_other_versions_and_the_course_runs_from_it(wheel, tmp_path):
    learner = tmp_path / "learner"  # no source tree here, nor on sys.path
    learner.mkdir()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = str(bin_dir / "python")

    # A learner's environment: torch, and numpy and matplotlib at versions other than the pins (the lowest in
    # range). The pins keep pip to known versions (and its cache), except for what is already there.
    pins = read_pins(ROOT / "constraints.txt")
    theirs = {
        normalize(r.name): LOWEST.lower_bound(r)
        for r in LOWEST.declared(PYPROJECT)
        if normalize(r.name) in ALREADY_THERE
    }
    assert all(theirs[n] != pins[n] for n in ALREADY_THERE), "versions other than the pins"

    def pip_install(*what: str, keep: set[str]) -> None:
        constraints = tmp_path / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in pins.items() if n not in keep))
        _run(
            [python, "-m", "pip", "install", "--disable-pip-version-check", "-c", str(constraints), *what],
            learner,
        )

    already = [f"torch=={pins['torch']}", *(f"{n}=={v}" for n, v in theirs.items())]
    pip_install(*already, keep=set(ALREADY_THERE))
    before = _freeze(python, learner)
    pip_install(f"{wheel}[course]", keep=set(before))
    after = _freeze(python, learner)
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    assert not changed, f"installing the course changed packages that were already there: {changed}"
    assert all(Version(after[n]) == Version(theirs[n]) for n in ALREADY_THERE)
    assert normalize(PROJECT["name"]) in after and after["jupyterlab"] == pins["jupyterlab"]
    assert not {"nbgrader", "playwright", "ruff", "transformers", "pytest"} & set(after), (
        "a learner's install"
    )

    where = _run([python, "-c", "import gptlib; print(gptlib.__file__)"], learner).strip()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(ROOT)

    # the main job, on a tiny setting
    out = _run(
        [python, "-m", "gptlib", "train", "--max-iters", "20", "--eval-interval", "10", "--eval-iters", "2",
         "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
         "--sample-tokens", "20", "--num-samples", "1", "--no-progress", "--out", "run.pt"],
        learner,
    )  # fmt: skip
    assert (learner / "run.pt").is_file() and "trained 20 steps" in out and "final validation loss" in out

    # the learner's copy of the lessons; a second start keeps what is there
    course = bin_dir / ("gptlib-course.exe" if os.name == "nt" else "gptlib-course")
    _run([str(course), "start", "lessons", "--no-open"], learner)
    copied = sorted((learner / "lessons").glob(NOTEBOOK))
    assert [p.name for p in copied] == sorted(p.name for p in (ROOT / "lessons").glob(NOTEBOOK))
    assert all(p.read_bytes() == (ROOT / "lessons" / p.name).read_bytes() for p in copied)
    mine = learner / "lessons" / copied[0].name
    mine.write_text("{}", encoding="utf-8")  # the learner's own work
    assert f"kept {Path('lessons') / mine.name}" in _run(
        [str(course), "start", "lessons", "--no-open"], learner
    )
    assert mine.read_text(encoding="utf-8") == "{}"

    # one lesson untouched (fails only with "not done yet") and its solution (runs clean), in the venv's kernel
    run_both = (
        "import shutil, sys, nbformat\n"
        "from pathlib import Path\n"
        "from gptlib.course.execute import execute\n"
        "from gptlib.course.start import notebooks_folder\n"
        f"nb, _ = execute(Path('lessons/{LESSON}'), timeout=300, allow_errors=True)\n"
        "nbformat.write(nb, 'lesson_run.ipynb')\n"
        f"shutil.copy(notebooks_folder('solutions') / '{LESSON}', 'solution.ipynb')\n"
        "execute(Path('solution.ipynb'), timeout=300)\n"
    )
    _run([python, "-c", run_both], learner)
    lesson_run = nbformat.read(learner / "lesson_run.ipynb", as_version=4)
    assert not untouched_lesson_problems(lesson_run, LESSON)
