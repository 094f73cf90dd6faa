"""Time the solution notebooks as CI runs them: on a quiet machine, and next to one CPU-bound process.

    python -m gptlib.course time                 # every solution, quiet
    python -m gptlib.course time --busy          # quiet and busy in turns, with the busy/quiet ratio

Each notebook runs top to bottom with nbclient, threads pinned as in CI
(execute.py), in a kernel whose environment is a learner's: if it was gptlib
that set the OpenMP wait policy in this process, the kernel does not inherit
it, so the notebook's own `import gptlib` has to set it, as in JupyterLab.
With --busy, a second run of each notebook shares the machine with one process
that spins a core (started and stopped here): a learner's laptop with a
browser and a video call open. Quiet and busy runs alternate, so a machine
whose load drifts affects both alike. The table is Markdown, for the README.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gptlib import threads
from gptlib.course.execute import NUM_THREADS, THREAD_SETTINGS, cell_seconds, execute

# The course's budget (README, "The lessons"): seconds per solution on 2 cores, for all of them,
# and how much slower a lesson may run next to one competing process.
LESSON_BUDGET = 60.0
COURSE_BUDGET = 300.0
BUSY_BUDGET = 2.5
SLOW_CELL = 5.0  # a cell that runs longer than this must show progress


@dataclass
class Timing:
    """One notebook's run times (seconds) over the rounds, and its cells slower than SLOW_CELL."""

    name: str
    quiet: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    slow_cells: dict[int, float] = field(default_factory=dict)  # cell index -> longest quiet seconds

    @property
    def ratio(self) -> float | None:
        if not self.quiet or not self.busy:
            return None
        return statistics.median(self.busy) / statistics.median(self.quiet)


def kernel_env(num_threads: str | None = NUM_THREADS, extra: Mapping[str, str] = {}) -> dict[str, str]:
    """A kernel's environment: this process's, threads pinned (None: torch's own default), extra on top."""
    env = dict(os.environ)
    if threads.SET_BY_GPTLIB:
        env.pop("OMP_WAIT_POLICY", None)  # the kernel's own `import gptlib` sets it, as a learner's does
    for name in THREAD_SETTINGS:
        if num_threads is None:
            env.pop(name, None)
        else:
            env[name] = num_threads
    env.update(extra)
    return env


@contextmanager
def competing_process() -> Iterator[subprocess.Popen]:
    """One CPU-bound process (a Python loop spinning one core) for as long as the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def time_notebooks(
    notebooks: Sequence[Path],
    busy: bool = False,
    rounds: int = 1,
    env: Mapping[str, str] | None = None,
    timeout: int = 600,
    report=print,
) -> list[Timing]:
    """Run each notebook `rounds` times (quiet, then busy if asked, in turns); return their timings."""
    env = kernel_env() if env is None else env
    timings = [Timing(Path(p).stem) for p in notebooks]
    for r in range(rounds):
        for path, t in zip(notebooks, timings, strict=True):
            modes = ("quiet", "busy") if busy else ("quiet",)
            for mode in modes:
                if mode == "busy":
                    with competing_process():
                        time.sleep(0.5)  # let it reach full speed
                        _, seconds = execute(path, timeout=timeout, env=env)
                    t.busy.append(seconds)
                else:
                    nb, seconds = execute(path, timeout=timeout, env=env, record_timing=True)
                    t.quiet.append(seconds)
                    for i, s in cell_seconds(nb):
                        if s > SLOW_CELL:
                            t.slow_cells[i] = max(s, t.slow_cells.get(i, 0.0))
                report(f"round {r + 1}/{rounds} {t.name} {mode}: {seconds:.1f} s")
    return timings


def table(timings: Sequence[Timing]) -> str:
    """The timings as a Markdown table (medians over the rounds), a total row, and how they meet the budget."""
    busy = any(t.busy for t in timings)
    head = (
        ["lesson", "quiet s"]
        + (["busy s", "busy / quiet"] if busy else [])
        + [f"cells over {SLOW_CELL:.0f} s"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in timings:
        row = [t.name, f"{statistics.median(t.quiet):.1f}"]
        if busy:
            row += [f"{statistics.median(t.busy):.1f}", f"{t.ratio:.2f}x"]
        row.append(", ".join(f"{i} ({s:.0f} s)" for i, s in sorted(t.slow_cells.items())) or "none")
        lines.append("| " + " | ".join(row) + " |")
    total_quiet = sum(statistics.median(t.quiet) for t in timings)
    total = ["all", f"{total_quiet:.0f}"]
    if busy:
        total_busy = sum(statistics.median(t.busy) for t in timings)
        total += [f"{total_busy:.0f}", f"{total_busy / total_quiet:.2f}x"]
    lines.append("| " + " | ".join(total + [""]) + " |")
    over = [t.name for t in timings if statistics.median(t.quiet) > LESSON_BUDGET]
    lines.append("")
    lines.append(
        f"budget: each lesson at most {LESSON_BUDGET:.0f} s quiet: {'yes' if not over else 'NO: ' + ', '.join(over)}; "
        f"all at most {COURSE_BUDGET:.0f} s: {'yes' if total_quiet <= COURSE_BUDGET else 'NO'}"
    )
    if busy:
        slow = [t.name for t in timings if t.ratio is not None and t.ratio > BUSY_BUDGET]
        lines[-1] += f"; busy at most {BUSY_BUDGET}x quiet: {'yes' if not slow else 'NO: ' + ', '.join(slow)}"
    return "\n".join(lines)


def machine_line(env: Mapping[str, str]) -> str:
    """What the numbers were measured with: CPUs, threads, wait policy, load (where the OS reports it)."""
    import torch

    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    policy = env.get("OMP_WAIT_POLICY") or (
        "set by gptlib in the kernel" if threads.SET_BY_GPTLIB else "unset"
    )
    return (
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {env.get('OMP_NUM_THREADS', 'default')} threads, "
        f"OMP_WAIT_POLICY {policy}{load}"
    )
