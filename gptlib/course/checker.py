"""The trusted side of grading: the checks run here, against a sandboxed worker, and the verdict is made here.

The grader starts one check server per run (``python -I``; it imports torch and
gptlib's checks once and never receives a student's code). For each exercise it
forks a check process, which gets the worker's channel and runs the solution's
check cell (e.g. ``check_attention(CausalSelfAttention)``) with the learner's
names bound to handles on the remote side of the learner boundary
(`gptlib.course.remote`): the check's logic, the reference implementation and
the verdict all stay in this process, which never executes a line of the
student's code and only ever receives plain data. The verdict goes back to the
grader on a pipe of its own.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import select
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from gptlib.course import process, remote
from gptlib.course.forks import serve_forks

MAX_TEXT = 6000


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 20] + "\n... (cut)"


def run_check(job: dict, channel: int) -> dict:
    """Grade one exercise against the worker on `channel`: the verdict, as a dict."""
    from gptlib import checks
    from gptlib.checks import learner

    conn = remote.Remote(channel, time.monotonic() + job["timeout"] + job.get("startup", 60.0))
    out = io.StringIO()
    try:
        conn.start()
    except learner.LearnerLost as e:  # no student code has run yet: the sandbox's problem
        return {"status": "infrastructure", "message": f"the worker did not start: {e}"}
    try:
        conn.deadline = time.monotonic() + job["timeout"]  # the exercise's time starts once its worker is up
        try:
            names = conn.load(job["cells"], job["segments"], job["future"], job["defines"])
        except learner.Crash as e:
            return {
                "status": "failed",
                "stage": "load",
                "message": f"your code could not be defined: {e.name}: {e.message}{_cell(e)}. Fix that cell, run "
                "it, and run its check again.",
            }
        env: dict[str, Any] = {"__builtins__": builtins}
        env.update({n: getattr(checks, n) for n in checks.__all__})
        env.update(names)
        with learner.using(conn), contextlib.redirect_stdout(out):
            exec(compile(job["check"], "<check cell>", "exec"), env)
        line = next((ln for ln in reversed(out.getvalue().splitlines()) if ln.startswith("✅ ")), "")
        return {"status": "passed", "message": line.removeprefix("✅ ") or "passed"}
    except checks.NotDoneYet as e:
        return {"status": "not attempted", "message": str(e), "diagnosis": e.diagnosis}
    except checks.CheckFailure as e:
        return {"status": "failed", "message": str(e), "diagnosis": e.diagnosis}
    except learner.LearnerTimeout:
        return {"status": "timed out"}
    except remote.WorkerGone:
        return {"status": "worker gone"}
    except learner.LearnerLost as e:
        return {"status": "worker failed", "message": str(e)}
    except Exception as e:  # the check itself failed: the grader's problem, never the student's
        tb = traceback.format_exception(type(e), e, e.__traceback__)[-3:]
        return {"status": "check error", "message": f"{type(e).__name__}: {e}", "detail": "".join(tb)[-1500:]}


def _cell(crash: Any) -> str:
    """' (cell N, line M: `code`)' for the innermost frame of the student's code."""
    if not crash.frames:
        return ""
    f = crash.frames[-1]
    place = f.place.removeprefix("<").removesuffix(">")
    return f" ({place}, line {f.line}" + (f": `{f.code}`)" if f.code else ")")


def _run_child(job: dict, channel: int, result: int) -> None:
    try:
        verdict = run_check(job, channel)
        verdict = {k: _short(v) if isinstance(v, str) else v for k, v in verdict.items()}
    except BaseException as e:  # noqa: BLE001 - a verdict must always come back
        verdict = {"status": "check error", "message": f"{type(e).__name__}: {e}"}
    data = (json.dumps(verdict) + "\n").encode()
    while data:
        data = data[os.write(result, data) :]
    os._exit(0)


def prepare() -> None:
    import torch

    import gptlib.checks  # noqa: F401  (every lesson's checks and their references)

    with contextlib.suppress(ImportError):  # lesson 09's checks compare with Hugging Face's GPT-2
        import transformers.models.gpt2.modeling_gpt2  # noqa: F401
    torch.set_num_threads(1)


def serve(sock_fd: int) -> None:
    """The check server: for each job (three descriptors: the worker's channel, the pipe for the verdict, and
    a pipe the job itself comes on, as JSON) fork a check process."""
    prepare()
    sock = socket.socket(fileno=sock_fd)
    sock.sendall(b'{"ready": true}')
    serve_forks(sock, 3, _job_child)
    os._exit(0)


def _job_child(_msg: bytes, fds: list[int]) -> None:
    with os.fdopen(fds[2], "rb") as f:
        job = json.loads(f.read())
    _run_child(job, fds[0], fds[1])


class CheckServer:
    """The grader's handle on the check server (thread-safe)."""

    def __init__(self, log: Path):
        import gptlib

        package_parent = str(Path(gptlib.__file__).resolve().parents[1])
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = f"import sys; sys.path.insert(0, {package_parent!r}); from gptlib.course.checker import serve; serve({theirs.fileno()})"
        self.proc = process.start([sys.executable, "-I", "-c", code], theirs, log, env=_env())
        self.sock, self.log = ours, log
        self._lock = threading.Lock()
        ours.settimeout(300)
        try:
            ready = ours.recv(64)
        except OSError:
            ready = b""
        if ready != b'{"ready": true}':
            self.close()
            raise RuntimeError(
                f"the grader's check process did not start:\n{log.read_text(errors='replace')[-1500:]}"
            )
        ours.settimeout(30)

    def run(self, job: dict, channel: socket.socket, wait: float) -> dict:
        """Run one exercise's check against the worker at the other end of `channel`; its verdict, or
        {"status": "check lost"} if none came within `wait` seconds."""
        result_r, result_w = os.pipe()
        job_r, job_w = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self.sock, [b"job"], [channel.fileno(), result_w, job_r])
        finally:
            for fd in (result_w, job_r):
                os.close(fd)
        with os.fdopen(job_w, "wb") as f:
            f.write(json.dumps(job).encode())
        try:
            return _read_verdict(result_r, time.monotonic() + wait)
        finally:
            os.close(result_r)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        process.stop(self.proc, grace=10)


def _read_verdict(fd: int, deadline: float) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return {"status": "check lost", "message": "the check process gave no verdict in time"}
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return {"status": "check lost", "message": "the check process ended without a verdict"}
        data += chunk
    try:
        verdict = json.loads(data)
    except ValueError:
        verdict = None
    return verdict if isinstance(verdict, dict) else {"status": "check lost", "message": "unreadable verdict"}


def _env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "LC_ALL": "C.UTF-8",
        "HF_HUB_OFFLINE": "1",
    }
