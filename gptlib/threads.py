"""How torch's CPU threads wait for work: asleep, not spinning, so a busy laptop stays quick.

torch runs its CPU operations on a team of OpenMP threads. Between two
operations an idle thread of the team, by default, keeps a core busy polling
for the next one (it "spins"). On a quiet machine that saves a few
microseconds; on a busy one (a browser, a video call, an IDE) the spinning
threads take the cores the working threads and the other programs need. With
the passive wait policy idle threads sleep until there is work: on a 2-core
machine with other work on it, the lessons ran 3.6-11x sooner (bench/README.md,
"Threads on a busy machine"). The results are bit-identical either way: the
policy changes how threads wait, not how the work is split.

The OpenMP runtime reads its settings once, when torch loads it. So this
module imports nothing heavy, and gptlib/__init__.py imports it before
anything that imports torch: importing gptlib first (the lessons' first
import) is enough. If torch was imported earlier, the setting comes too late
for that process and changes nothing. A wait setting of your own
(OMP_WAIT_POLICY, GOMP_SPINCOUNT for GNU OpenMP on Linux, KMP_BLOCKTIME for the
Intel and LLVM runtimes on Windows and macOS) is kept as it is.
"""

from __future__ import annotations

import os
import sys

# Any of these set by the user means they chose how OpenMP threads wait.
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def sleep_when_idle() -> bool:
    """Ask torch's OpenMP threads to sleep when idle (OMP_WAIT_POLICY=PASSIVE), if torch is not loaded yet.

    Returns True if this call set it; False if the user chose a wait setting of
    their own, or torch was already imported (too late to matter in this process).
    """
    if any(name in os.environ for name in WAIT_SETTINGS) or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


# True when importing gptlib set the policy (so a tool that starts kernels can tell it apart
# from a setting of the user's, and leave the kernels to set it themselves).
SET_BY_GPTLIB = sleep_when_idle()
