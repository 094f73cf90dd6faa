"""Test-wide settings that must hold before any notebook kernel starts."""

import os
import sys
from pathlib import Path

import pytest

from gptlib.course.execute import pin_threads
from gptlib.course.pins import pins_problem

# Stored notebook outputs were made with this many threads; kernels inherit it from here.
pin_threads()

# Notebooks that are fixtures of a test, not lessons for nbval.
collect_ignore_glob = ["tests/**/*.ipynb", "lessons/*.ipynb", "docs/**/*.ipynb"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """nbval compares stored outputs, which hold only with the versions pinned in constraints.txt: say so
    once, before running, rather than as hundreds of differing cells."""
    comparing = config.getoption("nbval", default=False)  # --nbval-lax only runs the cells
    if comparing and any(item.path.suffix == ".ipynb" for item in items):
        problem = pins_problem(Path(__file__).parent)
        if problem:
            raise pytest.UsageError(f"{problem}\nOr run the library's tests only: python -m pytest tests")


# GPTLIB_MESSAGES=out.jsonl records every check's message (tests/check_messages.py runs it).
if os.environ.get("GPTLIB_MESSAGES"):
    sys.path.insert(0, str(Path(__file__).parent / "tests"))
    import check_messages

    check_messages.install()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(item: pytest.Item) -> None:
        os.environ[check_messages.TAG_VAR] = item.nodeid  # notebook kernels started now inherit it
