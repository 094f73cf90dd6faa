"""Teacher and maintainer commands: python -m gptlib.course {build,store} ..."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlib.course.notebooks import build_lessons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gptlib.course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="write lessons/ (learner notebooks) from solutions/")
    b.add_argument("--solutions", type=Path, default=Path("solutions"))
    b.add_argument("--lessons", type=Path, default=Path("lessons"))
    b.add_argument("--check", action="store_true", help="write nothing; fail if lessons/ is stale")

    s = sub.add_parser("store", help="run solution notebooks and store their outputs (for nbval)")
    s.add_argument("notebooks", nargs="+", type=Path)
    s.add_argument("--timeout", type=int, default=600, help="seconds per cell")

    args = parser.parse_args(argv)
    if args.command == "build":
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

        for nb in args.notebooks:
            seconds = store(nb, timeout=args.timeout)
            print(f"stored {nb} ({seconds:.1f} s)")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
