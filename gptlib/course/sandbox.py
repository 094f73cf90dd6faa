"""The grader's side of the sandbox: bubblewrap around every process that runs a student's code.

For each set of answers to withhold (`gptlib.course.view.answers`: most
exercises have their own), `Sandbox` starts one bubblewrap (Debian/Ubuntu
package `bubblewrap`) whose only view of the machine is read-only: the system's
libraries, the Python installation and its packages, and a copy of gptlib
without those answers, the checks and the grader (`gptlib.course.view`); every
other copy of gptlib is covered by an empty folder. It has no home, no project tree, no submissions, no solutions, no
results folder; a size-limited scratch folder (confine.SCRATCH); no network; its own pid namespace and
session; no capabilities; and it dies with the grader. Inside it the zygote
(`gptlib.course.confine`) imports torch once and forks each exercise's worker
into namespaces of its own, so students graded at the same time never meet.

`Worker` is one exercise's worker as the grader holds it: the channel to it
(handed to the trusted check) and the way to end it and learn how it ended.

Where the kernel refuses nested namespaces, each exercise gets a bubblewrap of
its own (torch is imported each time: slower, as safe). Where bubblewrap is
missing or cannot run (not Linux, no user namespaces), grading refuses to run
unless the teacher passes --unsafe: then the worker is a plain process with
rlimits (and seccomp on Linux) and the student's code can read and write
whatever the teacher's account can. See docs/teachers.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from gptlib.course import process
from gptlib.course.view import MOUNT, answers, build_view

STARTUP_SECONDS = 300.0  # importing torch on a busy machine can take a while
PRELOAD = [
    "numpy",
    "torch.nn.functional",
    "gptlib",
    "gptlib.config",
    "gptlib.checks.learner",
    "gptlib.checks.builders",
    "gptlib.course.worker",
]  # imported once by each zygote
UNSAFE_NOTE = (
    "--unsafe: grading WITHOUT the sandbox. Each exercise still runs in a separate worker process with CPU, "
    "memory and file-size limits, and the verdict is still computed from plain data in a process the student's "
    "code never touches; but that code can read and write every file your account can (other submissions, the "
    "solutions, the results folder, your home), use the network, and see gptlib's finished code. Use it only for "
    "code you trust."
)


class SandboxUnavailable(RuntimeError):
    """Grading cannot be sandboxed here (and --unsafe was not given)."""


@dataclass(frozen=True)
class Limits:
    """Per exercise: wall-clock seconds, address space in bytes (torch itself takes ~0.6 GB), largest file,
    bytes of the scratch folder, processes (threads count)."""

    timeout: float = 60.0
    memory: int = 2 << 30
    file_size: int = 64 << 20
    disk: int = 128 << 20
    processes: int = 64

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout}.")
        if self.memory < 1 << 30:
            raise ValueError(
                f"memory limit {self.memory / 2**30:.2f} GB is too small: torch alone needs about 0.6 GB of "
                "address space; use at least 1 GB."
            )

    def for_worker(self) -> dict:
        return {**asdict(self), "cpu": self.timeout}


# --- can we sandbox here? -----------------------------------------------------------------------------------


def _bwrap() -> str | None:
    return shutil.which("bwrap") if sys.platform.startswith("linux") else None


@functools.cache
def unavailable() -> str | None:
    """None where bubblewrap works here; else why not, in words for the teacher."""
    if not sys.platform.startswith("linux"):
        return f"the grading sandbox needs Linux with bubblewrap; this is {sys.platform}"
    if _bwrap() is None:
        return "bubblewrap is not installed (Debian/Ubuntu: sudo apt-get install bubblewrap)"
    try:
        done = subprocess.run(
            [_bwrap(), *_namespaces(), *_system_mounts(), "--", "/bin/true"], capture_output=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap could not run: {e}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()[-300:]
        return (
            f"bubblewrap cannot make a sandbox here ({why}); it needs unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04 an AppArmor profile for bwrap) or root"
        )
    return None


def _namespaces() -> list[str]:
    return [
        "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--uid", "65534", "--gid", "65534",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
    ]  # fmt: skip


def _system_mounts() -> list[str]:
    """The system's programs and libraries, read-only (merged-/usr symlinks kept as symlinks)."""
    args = []
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    return args


def _python_roots() -> list[str]:
    """The folders the Python and its packages live in (each mounted read-only at its own path)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    for p in sys.path:
        if p and os.path.isdir(p) and os.path.basename(p) in ("site-packages", "dist-packages"):
            roots.add(p)
    real = sorted({os.path.realpath(r) for r in roots} | roots, key=len)
    kept: list[str] = []
    for r in real:  # a folder inside another one is mounted with it
        if (
            r.startswith(("/usr/", "/lib"))
            or r == "/usr"
            or any(r.startswith(k.rstrip("/") + "/") for k in kept)
        ):
            continue
        if os.path.isdir(r):
            kept.append(r)
    return kept


def _gptlib_copies(roots: list[str]) -> list[str]:
    """Every installed copy of gptlib inside the mounted folders (each is covered by an empty folder)."""
    found = set()
    for root in roots:
        for pattern in (
            "gptlib",
            "*-packages/gptlib",
            "lib/python3*/*-packages/gptlib",
            "lib64/python3*/*-packages/gptlib",
        ):
            found |= {str(p) for p in Path(root).glob(pattern) if p.is_dir()}
    for p in sys.path:  # a folder on the path inside a mounted one (e.g. a .pth that adds a source tree)
        if (
            p
            and any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)
            and os.path.isdir(os.path.join(p, "gptlib"))
        ):
            found.add(os.path.join(p, "gptlib"))
    return sorted(found)


def bwrap_command(view: Path, empty: Path, disk: int, argv: list[str]) -> list[str]:
    """The whole bubblewrap command line that runs `argv` with `view` as its gptlib."""
    from gptlib.course.confine import SCRATCH  # Linux only (confine needs `resource`)

    roots = _python_roots()
    args = [_bwrap() or "bwrap", *_namespaces(), *_system_mounts()]
    for r in roots:
        args += ["--ro-bind", r, r]
    for copy in _gptlib_copies(roots):
        args += ["--ro-bind", str(empty), copy]
    args += ["--ro-bind", str(view), MOUNT, "--dev", "/dev", "--proc", "/proc"]
    args += [
        "--size",
        str(disk),
        "--tmpfs",
        SCRATCH,
        "--remount-ro",
        "/",
        "--remount-ro",
        "/dev",
        "--chdir",
        SCRATCH,
    ]
    args += ["--clearenv", *(a for k, v in _worker_env(SCRATCH).items() for a in ("--setenv", k, v))]
    return [*args, "--", *argv]


def _worker_env(scratch: str) -> dict[str, str]:
    """The worker's whole environment; `scratch` is its writable folder (home, temporary files)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": scratch,
    }


def _python(entry: str) -> list[str]:
    """`python -I -c` that imports the entry point from the view."""
    return [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {MOUNT!r}); {entry}"]


# --- workers -------------------------------------------------------------------------------------------------


class Worker:
    """One exercise's worker as the grader holds it. `channel` goes to the trusted check; `finish()` ends the
    worker (and everything it left) and says how it ended: {"status": exit code or -signal, "killed": whether
    it was still running} or {"setup_failed": why}."""

    def __init__(self, channel: socket.socket, control: socket.socket | None = None, proc=None):
        self.channel = channel
        self._control = control
        self._proc = proc
        self.report: dict | None = None

    def finish(self, timeout: float = 30.0, ended: bool = False) -> dict:
        """End the worker; `ended`: it seems to have ended by itself (give it a moment to be sure)."""
        if self.report is not None:
            return self.report
        with contextlib.suppress(OSError):
            self.channel.close()
        if self._control is not None:
            self.report = _finish_monitor(self._control, timeout, ended)
        else:
            self.report = _finish_process(self._proc, timeout, ended)
        return self.report


def _finish_monitor(control: socket.socket, timeout: float, ended: bool) -> dict:
    with contextlib.suppress(OSError):
        if ended:
            control.sendall(b"wait\n")
        control.shutdown(socket.SHUT_WR)  # the monitor kills the worker, then reports
    control.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while not data.endswith(b"\n"):
            chunk = control.recv(4096)
            if not chunk:
                break
            data += chunk
    control.close()
    try:
        report = json.loads(data)
    except ValueError:
        return {"lost": "the sandbox's monitor did not report (the sandbox itself stopped?)"}
    return report if isinstance(report, dict) else {"lost": "the sandbox's monitor sent nonsense"}


def _finish_process(proc: subprocess.Popen, timeout: float, ended: bool) -> dict:
    running = process.stop(proc, grace=5 if ended else 0, reap=timeout)
    return {"status": proc.returncode, "killed": running}


class Sandbox:
    """The sandboxes of one grading run, one per set of withheld answers, started on first use. Thread-safe."""

    def __init__(self, root: Path, unsafe: bool = False):
        self.root = Path(root)
        self.unsafe = unsafe
        self.why_not = unavailable()
        if self.why_not and not unsafe:
            raise SandboxUnavailable(
                f"cannot grade safely here: {self.why_not}. Install bubblewrap, run the grader in the container "
                "of docs/teachers.md, or pass --unsafe to grade without the sandbox (read what it loses first)."
            )
        self._zygotes: dict[tuple[str, ...], _Zygote] = {}
        self._lock = threading.Lock()
        self.events: list[str] = []  # for the teacher: restarts, fallbacks

    def view(self, withheld: tuple[str, ...]) -> Path:
        """The worker's gptlib without `withheld` (built once per run for each set of withheld objects)."""
        path = self.root / f"view-{abs(hash(withheld)):x}"
        if not path.exists():
            build_view(path, withheld)
            (path / "empty").mkdir()
        return path

    def spawn(self, exercise: str, limits: Limits) -> Worker:
        """A fresh worker for one exercise, its answer withheld. RuntimeError if the sandbox cannot start one."""
        withheld = answers(exercise)
        if self.unsafe and self.why_not:
            return self._spawn_plain(withheld, limits)
        with self._lock:
            z = self._zygotes.get(withheld)
            if z is None or not z.alive():
                if z is not None:
                    self.events.append(f"the sandbox for {exercise!r} stopped and was restarted")
                z = self._zygotes[withheld] = _Zygote(self.view(withheld), self.root / "zygote.log")
                if z.nesting:
                    self.events.append(
                        f"nested namespaces refused ({z.nesting}): one bubblewrap per exercise"
                    )
        if z.nesting:
            return self._spawn_single(withheld, limits)
        try:
            return z.spawn(limits)
        except OSError as e:
            raise RuntimeError(f"the sandbox did not take the exercise ({e})") from None

    def _spawn_single(self, withheld: tuple[str, ...], limits: Limits) -> Worker:
        ours, theirs = socket.socketpair()
        entry = (
            f"from gptlib.course.confine import single; single({theirs.fileno()}, "
            f"{json.dumps(limits.for_worker())!r}, {PRELOAD!r})"
        )
        view = self.view(withheld)
        argv = bwrap_command(view, view / "empty", limits.disk, _python(entry))
        return Worker(ours, proc=process.start(argv, theirs, self.root / "single.log"))

    def _spawn_plain(self, withheld: tuple[str, ...], limits: Limits) -> Worker:
        ours, theirs = socket.socketpair()
        work = Path(tempfile.mkdtemp(prefix="exercise-", dir=self.root))
        entry = (
            f"import os; os.chdir({str(work)!r}); from gptlib.course.confine import serve_plain; "
            f"serve_plain({theirs.fileno()}, {json.dumps(limits.for_worker())!r})"
        )
        argv = [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(self.view(withheld))!r}); {entry}",
        ]
        env = _worker_env(str(work))
        return Worker(ours, proc=process.start(argv, theirs, self.root / "plain.log", env=env))

    def close(self) -> None:
        with self._lock:
            for z in self._zygotes.values():
                z.close()
            self._zygotes.clear()


class _Zygote:
    """One bubblewrap (one view of gptlib), holding the zygote that forks workers."""

    def __init__(self, view: Path, log: Path):
        self.log = log
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        entry = f"from gptlib.course.confine import zygote; zygote({theirs.fileno()}, {PRELOAD!r})"
        argv = bwrap_command(view, view / "empty", 16 << 20, _python(entry))
        self.proc = process.start(argv, theirs, log)
        self.sock = ours
        ours.settimeout(STARTUP_SECONDS)
        try:
            hello = json.loads(ours.recv(4096) or b"null")
        except (OSError, ValueError):
            hello = None
        if not isinstance(hello, dict) or not hello.get("ready"):
            self.close()
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"the grading sandbox did not start:\n{tail}")
        ours.settimeout(30)
        self.nesting: str | None = hello.get("nesting")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, limits: Limits) -> Worker:
        ours, theirs = socket.socketpair()
        control, monitor_end = socket.socketpair()
        try:
            socket.send_fds(
                self.sock, [json.dumps(limits.for_worker()).encode()], [theirs.fileno(), monitor_end.fileno()]
            )
        finally:
            theirs.close()
            monitor_end.close()
        return Worker(ours, control=control)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        process.stop(self.proc, grace=5)
