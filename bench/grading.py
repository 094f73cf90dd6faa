"""How fast the grader grades a class: its start-up, then seconds per notebook.

    python -m bench.grading                                   # 30 solved lesson-02 notebooks, --jobs 2
    python -m bench.grading --lesson 00 --notebooks 10 --jobs 1

Two grading runs in this process, one after the other, each with its own sandbox and check server (as
`python -m gptlib.course grade` has): one notebook, then N. The second run's time minus the first's,
divided by N - 1, is the time per notebook after start-up (start-up: bubblewrap, the lesson's zygote
importing torch, the check server importing the checks). It prints both, the CPU count and the load
average over the runs (timings on a busy machine are slower: say so when you quote them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from gptlib.course.catalog import find_solutions, load_course, pick
from gptlib.course.grade import grade
from gptlib.course.sandbox import Limits


def _class(folder: Path, notebook: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    nb = nbformat.read(notebook, as_version=4)
    for i in range(n):
        nbformat.write(nb, folder / f"student{i:03d}.ipynb")
    return folder


def _run(folder: Path, solutions: Path, jobs: int) -> tuple[float, list]:
    start = time.perf_counter()
    results = grade([folder], solutions, jobs=jobs, limits=Limits(timeout=120), progress=False)
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grading", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lesson", default="02", help="the lesson of the notebooks (default 02)")
    parser.add_argument("--notebooks", type=int, default=30, help="how many notebooks (default 30)")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs for the grader (default 2)")
    parser.add_argument("--solutions", type=Path, default=None)
    args = parser.parse_args(argv)
    solutions = find_solutions(args.solutions)
    lesson = load_course(solutions)[pick(sorted(load_course(solutions)), args.lesson)]
    root = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    load_before = os.getloadavg()
    try:
        one, _ = _run(_class(root / "one", lesson.path, 1), solutions, args.jobs)
        many, results = _run(_class(root / "many", lesson.path, args.notebooks), solutions, args.jobs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    full = sum(r.total == r.max_points > 0 for r in results)
    per = (many - one) / max(args.notebooks - 1, 1)
    print(
        f"lesson {lesson.name}: {args.notebooks} solved notebooks, --jobs {args.jobs}, {os.cpu_count()} CPUs"
    )
    print(f"  1 notebook (start-up included):        {one:7.2f} s")
    print(f"  {args.notebooks} notebooks (start-up included):      {many:7.2f} s")
    print(f"  per notebook after start-up:           {per:7.2f} s   (start-up about {one - per:.1f} s)")
    print(f"  full marks: {full} of {len(results)}")
    print(f"  load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f}")
    return 0 if full == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
