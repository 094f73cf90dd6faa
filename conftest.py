"""Test-wide settings that must hold before any notebook kernel starts."""

import os
import sys
from pathlib import Path

import pytest

from gptlib.course.execute import pin_threads

# Stored notebook outputs were made with this many threads; kernels inherit it from here.
pin_threads()

# Notebooks that are fixtures of a test, not lessons for nbval.
collect_ignore_glob = ["tests/**/*.ipynb", "lessons/*.ipynb", "docs/**/*.ipynb"]


# GPTLIB_MESSAGES=out.jsonl records every check's message (tests/check_messages.py runs it).
if os.environ.get("GPTLIB_MESSAGES"):
    sys.path.insert(0, str(Path(__file__).parent / "tests"))
    import check_messages

    check_messages.install()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(item: pytest.Item) -> None:
        os.environ[check_messages.TAG_VAR] = item.nodeid  # notebook kernels started now inherit it
