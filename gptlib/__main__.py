"""`python -m gptlib`: the command line (see gptlib/cli.py); with no arguments, the course's main job."""

from gptlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
