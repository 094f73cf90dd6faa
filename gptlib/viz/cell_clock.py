"""How long a notebook's cells took the last time each ran: what bringing a live widget back costs.

A widget needs its kernel: reopen a notebook the next day and it is gone until
the cells that built it run again. The explorer's picture says how long that
takes, measured here: importing gptlib.viz in IPython (a notebook's kernel)
registers two event hooks that time every cell, keyed by the cell's id (so a
cell run three times counts once, with its latest time). Outside IPython this
module does nothing.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

_last_run: dict[str, float] = {}  # cell id -> seconds its latest run took
_current: dict[str, Any] = {}  # the running cell: its key and start time
_runs = itertools.count()
_watching = False


def watch() -> bool:
    """Start timing cells if this is an IPython kernel (once); True if cells are being timed."""
    global _watching
    if _watching:
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.events.register("pre_run_cell", _started)
    shell.events.register("post_run_cell", _finished)
    _watching = True
    return True


def _started(info: Any) -> None:
    # Runs without a cell id (a console, nbval) are each their own entry.
    key = getattr(info, "cell_id", None) or f"run {next(_runs)}"
    _current.update(key=key, start=time.perf_counter())


def _finished(result: Any) -> None:
    if "key" in _current:
        _last_run[_current.pop("key")] = time.perf_counter() - _current.pop("start")


def seconds_to_rerun() -> float | None:
    """The seconds the cells run so far took (each cell's latest run), the running one included; None if not timed."""
    if not _watching:
        return None
    running = time.perf_counter() - _current["start"] if "start" in _current else 0.0
    return sum(_last_run.values()) + running


def about(seconds: float) -> str:
    """'about 40 s', 'about 3 min': a duration as a reader wants it."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    return f"about {round(seconds / 60)} min"
