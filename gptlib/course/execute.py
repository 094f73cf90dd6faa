"""Run a notebook top to bottom and store its outputs, the way the tests will compare them.

Stored outputs are only reproducible with the same thread count, so every run
(storing here, and nbval in tests) uses NUM_THREADS threads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat

NUM_THREADS = "2"


def pin_threads() -> None:
    """Make kernels started from this process use NUM_THREADS threads (set before they start)."""
    os.environ["OMP_NUM_THREADS"] = NUM_THREADS
    os.environ["MKL_NUM_THREADS"] = NUM_THREADS
    # Idle OpenMP threads sleep instead of spinning: on a loaded machine spinning threads
    # steal each other's core and a 2-thread kernel runs several times slower (results are
    # bit-identical either way).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def execute(
    path: Path, timeout: int = 600, allow_errors: bool = False
) -> tuple[nbformat.NotebookNode, float]:
    """Execute a notebook in its own folder; return it with outputs, and the seconds it took."""
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
        record_timing=False,  # no per-cell timestamps: a re-run with the same outputs leaves the file unchanged
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def store(path: Path, timeout: int = 600) -> float:
    """Execute a solution notebook and write it back with its outputs (atomically)."""
    path = Path(path)
    nb, seconds = execute(path, timeout=timeout)
    nb.metadata.pop("widgets", None)
    tmp = path.with_suffix(".ipynb.tmp")
    tmp.write_text(nbformat.writes(nb) + "\n", encoding="utf-8", newline="\n")
    tmp.replace(path)
    return seconds
