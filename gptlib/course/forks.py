"""A fork server: one process that has imported what its children need, forking one child per request.

The zygote inside the sandbox (`gptlib.course.confine`) and the trusted check server
(`gptlib.course.checker`) are both one: each request is a message on a Unix socket
carrying a fixed number of descriptors, and a child is forked to handle it with
them (the child never returns). Children that ended are reaped as requests come.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable


def serve_forks(sock: socket.socket, nfds: int, child: Callable[[bytes, list[int]], None]) -> None:
    """Fork `child(message, fds)` for each message that carries exactly `nfds` descriptors, until the socket
    closes (a message with another number of descriptors is dropped)."""
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, nfds)
        except OSError:
            return
        if not msg:
            return
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if len(fds) == nfds:
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:
                sock.close()
                try:
                    child(msg, fds)
                finally:
                    os._exit(70)  # a child never returns into the server's loop
        for fd in fds:
            os.close(fd)
