"""A process of the grader's own (the check server, a sandbox's zygote, a worker): how it starts and how it stops.

It starts in a session of its own, holding one end of a socket pair, with its output going to a log; it stops
with its whole process group, so nothing it started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path


def start(argv: list[str], theirs: socket.socket, log: Path, env: dict | None = None) -> subprocess.Popen:
    """Run argv with `theirs` passed down (and closed here); env defaults to a bare PATH."""
    with open(log, "ab") as err:
        try:
            return subprocess.Popen(
                argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True, env=env if env is not None else {"PATH": os.defpath},
            )  # fmt: skip
        finally:
            theirs.close()


def stop(proc: subprocess.Popen, grace: float = 0.0, reap: float = 10.0) -> bool:
    """Give proc `grace` seconds to end, then kill its process group; True if proc itself was still running."""
    if grace:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    running = proc.poll() is None
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(reap)
    return running
