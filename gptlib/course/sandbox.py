"""The parent side of the grading sandbox: start the child processes, hand them exercises, trust only signed verdicts.

On Linux a `ForkServer` starts one ``python -I`` process per grading run (in a
network namespace of its own when ``unshare`` allows it, in its own session,
with a minimal environment) that imports torch and the checks once and never
sees a submission. For each submission it forks a session server of its own
(own session, own network namespace where possible), and that one forks a fresh
process for each exercise (see `gptlib.course._runner`). Elsewhere each exercise
starts its own ``python -I`` process (slower: torch is imported every time).

For each exercise the parent makes a fresh key and nonce. The child's verdict
counts only if it is exactly one line, signed with that key over that nonce,
for that exercise; a timeout, a crash, an early exit, no verdict or a forged one
gives 0 points with the reason. Results are written by the grader's own process,
never by a child.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import secrets
import selectors
import shutil
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_SECONDS = 300.0  # importing torch on a busy machine can take a while


@dataclass(frozen=True)
class Limits:
    """Per exercise: wall-clock seconds, address space in bytes (torch itself takes ~0.6 GB), largest file."""

    timeout: float = 60.0
    memory: int = 2 << 30
    file_size: int = 64 << 20

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout}.")
        if self.memory < 1 << 30:
            raise ValueError(
                f"memory limit {self.memory / 2**30:.2f} GB is too small: torch alone needs about 0.6 GB of "
                "address space; use at least 1 GB."
            )


@dataclass
class Outcome:
    """What came back from one exercise: the verified verdict, or why there is none."""

    verdict: dict | None
    problem: str | None = None


@functools.cache
def network_isolation() -> tuple[str, ...]:
    """The command prefix that gives the child no network (a fresh network namespace), or () where none works.

    Where it can, the prefix also gives a process-id namespace whose first process is the grader's server: when
    it ends, the kernel ends every process left inside, even one that escaped into a session of its own."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return ()
    pid = ("--pid", "--fork", "--kill-child")
    tries = [("unshare", "--net", *pid, "--"), ("unshare", "--net", "--")]
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # an unprivileged user needs a user namespace first
        tries = [(*t[:-1], "--map-root-user", "--") for t in tries] + tries
    for prefix in tries:
        try:
            done = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return prefix
    return ()


def can_fork() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def _library_path(root: Path) -> str | None:
    """A folder from which the child can import gptlib (and nothing else beside it), or None if it already can."""
    import gptlib

    package = Path(gptlib.__file__).resolve().parent
    sites = {Path(p).resolve() for p in site.getsitepackages() if p}
    if package.parent in sites:
        return None
    lib = root / "lib"
    if (lib / "gptlib").is_dir():
        return str(lib)
    lib.mkdir(exist_ok=True)
    try:
        (lib / "gptlib").symlink_to(package, target_is_directory=True)
        return str(lib)
    except OSError:  # no symlinks (Windows without the privilege): the package's parent folder
        return str(package.parent)


def _boot(entry: str, path: str | None, arg: str = "") -> str:
    prefix = f"import sys; sys.path.insert(0, {path!r}); " if path else ""
    return prefix + f"from gptlib.course._runner import {entry}; {entry}({arg})"


def _start(
    entry: str, root: Path, cwd: Path, arg: str = "", pass_fds: tuple[int, ...] = (), **kw
) -> subprocess.Popen:
    """Start `gptlib.course._runner.<entry>` in a fresh isolated Python, in a session of its own, with no network
    where possible, a minimal environment, and its stderr in root/<entry>.log."""
    argv = [*network_isolation(), sys.executable, "-I", "-c", _boot(entry, _library_path(root), arg)]
    extra = (
        {"start_new_session": True}
        if os.name == "posix"
        else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    )
    with open(root / f"{entry}.log", "ab") as log:
        return subprocess.Popen(
            argv, stderr=log, cwd=cwd, env=_child_env(root), pass_fds=pass_fds, **extra, **kw
        )


class ForkServer:
    """One fork server for a grading run (Linux): imports torch once; forks a session server per submission.

    Thread-safe: the grader's worker threads ask it for sessions one at a time."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the server now (it starts on first use otherwise); RuntimeError with its log if it cannot."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.close()
        ours, theirs = socket.socketpair()
        try:
            self._proc = _start(
                "master_main", self.root, self.root, str(theirs.fileno()), (theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            theirs.close()
        self._sock = ours
        ours.settimeout(STARTUP_SECONDS)
        if self._recv_line() != "ready":
            log = (self.root / "master_main.log").read_text(errors="replace")[-1500:]
            self.close()
            raise RuntimeError(f"the grading sandbox did not start:\n{log}")

    def _recv_line(self) -> str:
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = self._sock.recv(256)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return ""
        return data.decode(errors="replace").strip()

    def session(self) -> tuple[int, int, int]:
        """A new session server: (its pid, the fd to write jobs to, the fd to read reports from)."""
        with self._lock:
            self._ensure()
            job_r, job_w = os.pipe()
            rep_r, rep_w = os.pipe()
            try:
                self._sock.settimeout(60)
                socket.send_fds(self._sock, [b"session"], [job_r, rep_w])
                answer = self._recv_line()
            finally:
                os.close(job_r)
                os.close(rep_w)
            if not answer.isdigit():
                os.close(job_w)
                os.close(rep_r)
                self.close()
                raise RuntimeError(
                    f"the grading sandbox could not start a session ({answer or 'no answer'})."
                )
            return int(answer), job_w, rep_r

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            _kill(proc)


def _child_env(root: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(root),
        "TMPDIR": str(root),
        "TEMP": str(root),
        "TMP": str(root),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "no_proxy": "*",
        "NO_PROXY": "*",
        "LC_ALL": "C.UTF-8",
    }
    for name in ("SYSTEMROOT", "WINDIR"):  # Windows needs these to start Python at all
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def verify(raw: str, key: bytes, nonce: str, exercise: str) -> tuple[dict | None, str | None]:
    """The verdict in `raw` if it is one line signed with `key` over `nonce` for `exercise`; else (None, why)."""
    lines = [ln for ln in raw.split("\n") if ln.strip()]
    if not lines:
        return None, None
    if len(lines) > 1:
        return None, "the grading channel carried data besides the verdict (written by the submission?)"
    try:
        message = json.loads(lines[0])
        payload, mac = message["payload"], message["mac"]
        expected = hmac.new(key, (nonce + payload).encode(), hashlib.sha256).hexdigest()
        if not (isinstance(mac, str) and hmac.compare_digest(mac, expected)):
            return None, "the verdict's signature is wrong (forged?)"
        verdict = json.loads(payload)
    except (ValueError, KeyError, TypeError):
        return None, "the grading channel carried something that is not a verdict"
    if verdict.get("nonce") != nonce or verdict.get("exercise") != exercise:
        return None, "the verdict belongs to another run"
    return verdict, None


def _no_verdict(exit_code: int | None, timed_out: bool, limits: Limits) -> str:
    if timed_out:
        return f"did not finish within {limits.timeout:g} s (an endless loop, or far too slow?); the grader stopped it."
    if exit_code is not None and exit_code < 0:
        sig = -exit_code
        if sig == getattr(signal, "SIGXCPU", -1):
            return f"used more than {limits.timeout:g} s of CPU time; the grader stopped it."
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return (
            f"the grading process was killed by {name} (out of memory, or a crash) before the check finished."
        )
    return (
        f"the grading process ended (exit code {exit_code}) before the check finished: does your code call "
        "os._exit() or sys.exit(), or end the process some other way?"
    )


class Sandbox:
    """The child processes that grade one submission's exercises, under `limits`, in folder `root`.

    With a `ForkServer` (Linux) each exercise is a fork of this submission's own session server; without one
    each exercise starts a fresh Python (`fork=False`, or where fork is not available)."""

    def __init__(self, root: Path, limits: Limits | None = None, server: ForkServer | None = None):
        self.root = Path(root).resolve()
        self.limits = limits or Limits()
        self.server = server
        self._session: tuple[int, int, int] | None = None
        self._count = 0
        self._buffer = b""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End this submission's session server and anything left in its process group."""
        session, self._session = self._session, None
        if session is None:
            return
        pid, job_w, rep_r = session
        with contextlib.suppress(OSError):
            os.close(job_w)  # the session server ends at end of input
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except OSError:
                break
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(rep_r)

    def run(self, job: dict) -> Outcome:
        """Grade one exercise. `job`: exercise, cells, segments, future_annotations, defines, check."""
        self._count += 1
        workdir = self.root / f"exercise-{self._count}"
        workdir.mkdir()
        key, nonce = secrets.token_bytes(32), secrets.token_hex(16)
        full = dict(
            job,
            id=self._count,
            key=key.hex(),
            nonce=nonce,
            workdir=str(workdir),
            timeout=self.limits.timeout,
            memory=self.limits.memory,
            file_size=self.limits.file_size,
        )
        report = self._run_forked(full) if self.server is not None else self._run_spawned(full, workdir)
        if "problem" in report:
            return Outcome(None, report["problem"])
        verdict, why = verify(report["verdict"], key, nonce, job["exercise"])
        if report.get("overflow"):
            verdict, why = None, "the grading channel was flooded with data (written by the submission?)"
        if verdict is not None:
            return Outcome(verdict)
        return Outcome(
            None, why or _no_verdict(report.get("exit"), report.get("timed_out", False), self.limits)
        )

    def _run_spawned(self, job: dict, workdir: Path) -> dict:
        proc = _start("spawn_main", self.root, workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            out, _ = proc.communicate(json.dumps(job).encode(), timeout=self.limits.timeout + STARTUP_SECONDS)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill(proc)
            out, _ = proc.communicate()
            timed_out = True
        _kill(proc)
        return {"verdict": out.decode("utf-8", "replace"), "exit": proc.returncode, "timed_out": timed_out}

    def _run_forked(self, job: dict) -> dict:
        if self._session is None:
            try:
                self._session = self.server.session()
            except RuntimeError as e:
                return {"problem": str(e)}
        _, job_w, rep_r = self._session
        try:
            data = (json.dumps(job) + "\n").encode()
            while data:
                data = data[os.write(job_w, data) :]
        except OSError:
            self.close()
            return {"problem": "the grading sandbox stopped unexpectedly"}
        line = self._readline(rep_r, self.limits.timeout + 60)
        try:
            report = json.loads(line) if line else None
        except ValueError:
            report = None
        if not isinstance(report, dict) or report.get("id") != job["id"]:
            self.close()
            return {"problem": "the grading sandbox stopped answering"}
        return report

    def _readline(self, fd: int, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if not sel.select(left):
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    return None
                self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace").strip()


def _kill(proc: subprocess.Popen) -> None:
    """Kill a child and everything in its process group."""
    if os.name == "posix":
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
