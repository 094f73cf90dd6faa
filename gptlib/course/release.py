"""Release an assignment: the student notebooks of some or all lessons, written into a folder to hand out.

They are made exactly as lessons/ is (`gptlib.course.notebooks.student_version`),
optionally without the check cells' hidden tests (``### BEGIN HIDDEN TESTS`` ...
``### END HIDDEN TESTS``). Grading always runs the full checks, hidden tests
included, from the solutions, whatever the released copy shows.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from gptlib.course.catalog import pick
from gptlib.course.notebooks import dumps, student_version


def release(
    solutions: Path,
    out: Path,
    lessons: list[str] | None = None,
    hidden_tests: bool = True,
    force: bool = False,
) -> list[Path]:
    """Write the student versions of `lessons` ("02", "02_attention" or "attention"; all when None) into `out`.

    Refuses to replace a notebook already in `out` unless force=True (a released folder may hold work)."""
    sources = {p.stem: p for p in sorted(Path(solutions).glob("[0-9][0-9]_*.ipynb"))}
    if not sources:
        raise ValueError(f"no solution notebooks (NN_name.ipynb) in {solutions}.")
    names = [pick(sorted(sources), w) for w in lessons] if lessons else sorted(sources)
    names = list(dict.fromkeys(names))
    out = Path(out)
    targets = [out / f"{name}.ipynb" for name in names]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise ValueError(
            f"{', '.join(str(t) for t in existing)} already exist; release into a new folder, or pass --force "
            "to replace them."
        )
    out.mkdir(parents=True, exist_ok=True)
    for name, target in zip(names, targets, strict=True):
        nb = nbformat.read(sources[name], as_version=4)
        text = dumps(student_version(nb, sources[name].name, hidden_tests=hidden_tests))
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, target)
    return targets
