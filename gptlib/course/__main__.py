"""The course's commands: gptlib-course {start,build,store,release,grade} ... (or python -m gptlib.course)

start    copy the lessons into a folder of your own and open JupyterLab there (for learners)
build    write lessons/ (learner notebooks) from solutions/
store    run solution notebooks and store their outputs (for nbval)
time     time the solution notebooks as CI runs them, quiet and next to one CPU-bound process
release  write the student notebooks of an assignment into a folder to hand out
grade    grade submitted notebooks: scores.csv, per-student feedback, a class summary
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gptlib.course",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    st = sub.add_parser("start", help="copy the lessons into a folder of your own and open JupyterLab there")
    st.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=None,
        help="where to put the lessons (default: gptlib-lessons in the current folder); files already there "
        "are kept, never overwritten",
    )
    st.add_argument("--no-open", action="store_true", help="copy the lessons only; do not start JupyterLab")
    st.epilog = "Other options go to JupyterLab, e.g. --port 8890 or --no-browser."

    b = sub.add_parser("build", help="write lessons/ (learner notebooks) from solutions/")
    b.add_argument("--solutions", type=Path, default=Path("solutions"))
    b.add_argument("--lessons", type=Path, default=Path("lessons"))
    b.add_argument("--check", action="store_true", help="write nothing; fail if lessons/ is stale")

    s = sub.add_parser("store", help="run solution notebooks and store their outputs (for nbval)")
    s.add_argument("notebooks", nargs="+", type=Path)
    s.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    s.add_argument(
        "--ignore-pins",
        action="store_true",
        help="store even when the installed versions differ from constraints.txt (CI's nbval will then fail)",
    )

    t = sub.add_parser("time", help="time the solutions as CI runs them; --busy: also next to a busy process")
    t.add_argument("notebooks", nargs="*", type=Path, help="default: every solutions/NN_*.ipynb")
    t.add_argument("--busy", action="store_true", help="also run each next to one CPU-bound process")
    t.add_argument("--rounds", type=int, default=1, help="runs of each notebook (medians are shown)")
    t.add_argument(
        "--threads",
        default=None,
        metavar="N",
        help="torch threads in the kernels (default: as CI and store; 'default': torch's own choice)",
    )
    t.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the kernels' environment, e.g. GOMP_SPINCOUNT=300000 (GNU OpenMP's default spinning)",
    )
    t.add_argument("--timeout", type=int, default=600, help="seconds per cell")

    r = sub.add_parser("release", help="write student notebooks to hand out (some or all lessons)")
    r.add_argument("out", type=Path, help="folder to write the notebooks into")
    r.add_argument(
        "--lesson",
        action="append",
        dest="lessons",
        metavar="NN_name",
        help="a lesson to release (02, 02_attention or attention); repeat for several; default: all",
    )
    r.add_argument(
        "--no-hidden-tests",
        action="store_true",
        help="drop the check cells' ### BEGIN/END HIDDEN TESTS parts (grading still runs them)",
    )
    r.add_argument("--solutions", type=Path, default=None, help="the course's solutions/ (default: found)")
    r.add_argument("--force", action="store_true", help="replace notebooks already in the folder")

    g = sub.add_parser("grade", help="grade submitted notebooks in a sandbox; write scores and feedback")
    g.add_argument(
        "submissions",
        nargs="+",
        type=Path,
        help="notebooks, or folders of them (one per student, or one subfolder per student)",
    )
    g.add_argument("--out", type=Path, required=True, help="folder for scores.csv, summary.md, feedback/")
    g.add_argument(
        "--lesson",
        default=None,
        metavar="NN_name",
        help="grade every submission as this lesson (default: recognised from each notebook)",
    )
    g.add_argument("--solutions", type=Path, default=None, help="the course's solutions/ (default: found)")
    g.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time (default 1)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per exercise (default 60)")
    g.add_argument(
        "--memory",
        type=float,
        default=2.0,
        help="GB of address space per exercise, torch's ~0.6 GB included (default 2)",
    )
    g.add_argument("--format", choices=["md", "html"], default="md", help="feedback files (default md)")
    g.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing results")
    g.add_argument(
        "--unsafe",
        action="store_true",
        help="grade without the sandbox where bubblewrap cannot run (the student's code can then read and write "
        "your files and use the network; see docs/teachers.md)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    args, lab_options = parser.parse_known_args(argv)
    if args.command == "start":
        from gptlib.course.start import DEFAULT_FOLDER, start

        return start(args.folder or DEFAULT_FOLDER, open_lab=not args.no_open, lab_options=lab_options)
    if lab_options:
        parser.error(f"unrecognized arguments: {' '.join(lab_options)}")
    if args.command in ("release", "grade"):
        try:
            return _teacher(args)
        except (ValueError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.command == "build":
        from gptlib.course.notebooks import build_lessons

        stale = build_lessons(args.solutions, args.lessons, check=args.check)
        if args.check:
            for p in stale:
                print(f"stale: {p} (run: python -m gptlib.course build)")
            return 1 if stale else 0
        for p in stale:
            print(f"wrote {p}" if p.exists() else f"missing solution for {p}")
        return 0
    if args.command == "store":
        from gptlib.course.execute import store
        from gptlib.course.pins import pins_problem

        problem = None if args.ignore_pins else pins_problem(args.notebooks[0].parent)
        if problem:
            print(f"error: {problem}\nOr pass --ignore-pins to store anyway.", file=sys.stderr)
            return 2

        for nb in args.notebooks:
            seconds = store(nb, timeout=args.timeout)
            print(f"stored {nb} ({seconds:.1f} s)")
        return 0
    if args.command == "time":
        return _time(args)
    return 2


def _time(args: argparse.Namespace) -> int:
    from gptlib.course.execute import NUM_THREADS
    from gptlib.course.timing import kernel_env, machine_line, table, time_notebooks

    notebooks = args.notebooks or sorted(Path("solutions").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print("error: no notebooks given and none in ./solutions", file=sys.stderr)
        return 2
    extra = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"error: --env takes NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        extra[name] = value
    threads = None if args.threads == "default" else (args.threads or NUM_THREADS)
    env = kernel_env(threads, extra)
    print(machine_line(env), flush=True)
    timings = time_notebooks(
        notebooks, args.busy, args.rounds, env, args.timeout, report=lambda s: print(s, flush=True)
    )
    print()
    print(table(timings))
    return 0


def _teacher(args: argparse.Namespace) -> int:
    from gptlib.course.catalog import find_solutions

    solutions = find_solutions(args.solutions)
    if args.command == "release":
        from gptlib.course.release import release

        for p in release(solutions, args.out, args.lessons, not args.no_hidden_tests, args.force):
            print(f"wrote {p}")
        return 0
    from gptlib.course import submissions
    from gptlib.course.grade import check_out_dir, grade
    from gptlib.course.report import Reports, summary
    from gptlib.course.sandbox import UNSAFE_NOTE, Limits, SandboxUnavailable, unavailable

    limits = Limits(timeout=args.timeout, memory=int(args.memory * 2**30))
    found = submissions.collect(args.submissions)
    check_out_dir(args.out, found, args.submissions, args.force)
    if args.unsafe and unavailable():
        print(f"warning: {UNSAFE_NOTE}", file=sys.stderr)
    reports = Reports(args.out, [s.student for s in found], args.format)
    try:
        results = grade(
            args.submissions, solutions, args.lesson, args.jobs, limits, progress=not args.no_progress,
            unsafe=args.unsafe, on_result=reports.add, found=found,
        )  # fmt: skip
    except SandboxUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reports.finish(results)
    print(summary(results))
    print(
        f"wrote {args.out / 'scores.csv'}, {args.out / 'summary.md'} and {len(results)} feedback files in "
        f"{args.out / 'feedback'}"
    )
    regrade = sum(e.regrade for r in results for e in r.exercises)
    if regrade:
        print(f"warning: {regrade} exercises were not graded because the grader itself failed (see the flags "
              "in scores.csv); grade those submissions again.", file=sys.stderr)  # fmt: skip
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
