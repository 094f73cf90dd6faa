"""Timing helpers: run competing versions interleaved in one process and keep medians.

The machine is shared and its speed drifts, so versions that are compared are
timed in alternating rounds (A B, B A, A B, ...) and each is summarised by its
median round; a ratio of two medians from the same run is the number to trust.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

# Wall-clock time by default. On a busy machine, one thread and the CPU time of this process
# ("cpu") count only the time the work itself ran, not the time it waited for a core.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


# Each version is summarised by its median round; "min" (its fastest round) suits a machine that
# others use in bursts, since sharing only ever slows a round down.
STATS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}
_stat = STATS["median"]


def set_stat(name: str) -> None:
    """Summarise rounds by "median" (the default) or "min"."""
    global _stat
    if name not in STATS:
        raise ValueError(f"stat must be one of {sorted(STATS)}, got {name!r}.")
    _stat = STATS[name]


def set_clock(name: str) -> None:
    """Time with "wall" (the default) or "cpu" (process CPU time: only meaningful with one thread)."""
    global _clock
    if name not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {name!r}.")
    _clock = CLOCKS[name]


def clock() -> float:
    """The current reading of the chosen clock, in seconds."""
    return _clock()


def time_call(fn: Callable[[], object], repeat: int = 1) -> float:
    """Seconds per call of fn, averaged over `repeat` back-to-back calls."""
    start = _clock()
    for _ in range(repeat):
        fn()
    return (_clock() - start) / repeat


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int, repeat: int = 1, warmup: int = 1
) -> dict[str, float]:
    """Seconds per call of each fn (median or min of its rounds), timed in alternating order round by round."""
    if rounds < 1 or repeat < 1 or warmup < 0:
        raise ValueError(f"rounds and repeat must be >= 1 and warmup >= 0, got {rounds}, {repeat}, {warmup}.")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            samples[name].append(time_call(fns[name], repeat))
    return {name: _stat(s) for name, s in samples.items()}
