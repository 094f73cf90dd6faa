"""The course's notebooks where they are installed, and `gptlib-course start`: a learner's own copy, opened.

A wheel carries the notebooks inside the package (gptlib/lessons, gptlib/solutions); a clone of the repository
has them beside it (lessons/, solutions/). `start` copies the learner notebooks into a folder of the learner's
and opens JupyterLab there. It never replaces a file that is already there: that is the learner's work.
This module needs nothing but the standard library (and JupyterLab to open the folder), so it works in a
learner's install without the teacher tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # gptlib/
NOTEBOOK = "[0-9][0-9]_*.ipynb"
DEFAULT_FOLDER = Path("gptlib-lessons")


def notebooks_folder(kind: str) -> Path:
    """The installed course's "lessons" or "solutions" folder: in the package (a wheel), else beside it (a clone)."""
    if kind not in ("lessons", "solutions"):
        raise ValueError(f"kind must be 'lessons' or 'solutions', not {kind!r}")
    candidates = [PACKAGE / kind, PACKAGE.parent / kind]
    for folder in candidates:
        if any(folder.glob(NOTEBOOK)):
            return folder
    raise FileNotFoundError(
        f"the course's {kind} notebooks are not installed (looked in {', '.join(map(str, candidates))}); "
        'reinstall the course: pip install "gptlib-course[course]".'
    )


def copy_lessons(dest: Path) -> tuple[list[Path], list[Path]]:
    """Copy every learner notebook into `dest` (made if missing). Returns (copied, kept): a notebook already in
    `dest` is kept as it is, never overwritten."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for src in sorted(notebooks_folder("lessons").glob(NOTEBOOK)):
        target = dest / src.name
        data = src.read_bytes()
        try:
            out = open(target, "xb")  # "x": fails if the file exists, with no window to overwrite it
        except FileExistsError:
            kept.append(target)
            continue
        with out:
            try:
                out.write(data)
            except BaseException:
                out.close()
                target.unlink()  # our own half-written file, not the learner's
                raise
        copied.append(target)
    return copied, kept


def run_lab(folder: Path, options: Sequence[str] = ()) -> int:
    """Run JupyterLab on `folder` (with JupyterLab's own `options`) until it is stopped (Ctrl+C)."""
    try:
        from jupyterlab.labapp import LabApp
    except ImportError:
        print(
            'JupyterLab is not installed here: pip install "gptlib-course[course]", or open the notebooks in '
            f"{folder} with the Jupyter you use."
        )
        return 1
    LabApp.launch_instance(argv=[f"--ServerApp.root_dir={Path(folder).resolve()}", *options])
    return 0


def start(dest: Path = DEFAULT_FOLDER, open_lab: bool = True, lab_options: Sequence[str] = ()) -> int:
    """Copy the lessons into `dest`, say what was copied and what was kept, then open JupyterLab there."""
    copied, kept = copy_lessons(dest)
    if copied:
        print(f"copied {len(copied)} lessons into {dest}: {', '.join(p.name for p in copied)}")
    for p in kept:
        print(f"kept {p}: it is already there (your work is never overwritten)")
    if not open_lab:
        print(f"to open them: jupyter lab {dest}")
        return 0
    return run_lab(dest, lab_options)
