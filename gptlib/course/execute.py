"""Run a notebook top to bottom and store its outputs, the way the tests will compare them.

Stored outputs are only reproducible with the same thread count, so every run
(storing here, nbval in tests, timing in timing.py) uses NUM_THREADS threads.
How idle threads wait is left to gptlib itself (gptlib/threads.py), as in a
learner's kernel: it changes the speed, never the numbers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import nbformat

NUM_THREADS = "2"
THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads() -> None:
    """Make kernels started from this process use NUM_THREADS threads (set before they start)."""
    for name in THREAD_SETTINGS:
        os.environ[name] = NUM_THREADS


def execute(
    path: Path,
    timeout: int = 600,
    allow_errors: bool = False,
    env: Mapping[str, str] | None = None,
    record_timing: bool = False,
) -> tuple[nbformat.NotebookNode, float]:
    """Execute a notebook in its own folder; return it with outputs, and the seconds it took.

    env: the kernel's whole environment (default: this process's, threads pinned).
    record_timing: keep each cell's start and end times in its metadata (cell_seconds reads them).
    """
    from nbclient import NotebookClient

    pin_threads()
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=allow_errors,
        store_widget_state=False,
        record_timing=record_timing,  # off when storing: a re-run with the same outputs leaves the file unchanged
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    start = time.perf_counter()
    client.execute(**({"env": dict(env)} if env is not None else {}))
    return nb, time.perf_counter() - start


def cell_seconds(nb: nbformat.NotebookNode) -> list[tuple[int, float]]:
    """(cell index, seconds) for each code cell of a notebook executed with record_timing=True."""
    times = []
    for i, cell in enumerate(nb.cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        start, end = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
        if cell.cell_type == "code" and start and end:
            # "Z" for UTC: Python 3.10's fromisoformat wants "+00:00"
            start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
            seconds = (end - start).total_seconds()
            times.append((i, seconds))
    return times


def store(path: Path, timeout: int = 600) -> float:
    """Execute a solution notebook and write it back with its outputs (atomically)."""
    path = Path(path)
    nb, seconds = execute(path, timeout=timeout)
    nb.metadata.pop("widgets", None)
    tmp = path.with_suffix(".ipynb.tmp")
    tmp.write_text(nbformat.writes(nb) + "\n", encoding="utf-8", newline="\n")
    tmp.replace(path)
    return seconds
