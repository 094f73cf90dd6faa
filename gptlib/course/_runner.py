"""The trusted side of the grading sandbox: what runs in the child process, around the learner's code.

`gptlib.course.sandbox` starts this as ``python -I -c <boot>``: on Linux as a fork
server (it imports torch and the checks once, then forks a fresh process for
each exercise), elsewhere once per exercise. Everything below is set up by
trusted code BEFORE the learner's definitions are loaded, in this order:

1. limits: address space, CPU seconds, file size, no core dumps; a process group
   of its own (the parent kills the whole group when the exercise ends);
2. an audit hook (PEP 578; once added it cannot be removed) that refuses, with a
   PermissionError: creating processes, signalling other processes, sockets,
   ctypes, gc and frame introspection, rebinding a function's ``__code__``, reading
   files outside the Python installation, gptlib and the work folder, and writing
   anywhere but the work folder;
3. gptlib's modules frozen (their names cannot be rebound) and a snapshot of
   gptlib, torch, builtins and the modules the runner uses: a change found after
   the check ran voids the verdict ("tampered");
4. the verdict, signed with HMAC-SHA256 under a key and nonce that the parent made
   for this exercise alone, written to a pipe that only the parent reads. No
   verdict, a bad signature or extra data on the pipe is 0 points.

What this cannot do: the learner's code runs in this same interpreter while the
check calls it, and in-process Python cannot be fully sandboxed. A determined
expert could still find a way around steps 2-4; the boundary that holds
regardless is the process (limits, no network, a temporary copy, results
written by the parent only). See docs/teachers.md, "How grading is protected".
"""

from __future__ import annotations
import __future__

import ast
import builtins
import contextlib
import hashlib
import hmac
import io
import json
import linecache
import os
import signal
import sys
import tempfile
import time
import traceback
import types

from gptlib.course.extract import RUN_KINDS, import_bound

LEARNER_FILE = "<cell "  # the learner's code is compiled under file names "<cell N>"
MAX_TEXT = 6000  # characters of a message or of captured output kept in a verdict
WORK_FOLDER_VARIABLES = ("HOME", "TMPDIR", "TEMP", "TMP", "MPLCONFIGDIR")  # caches and temp files land there

_PROCESS_EVENTS = frozenset(
    {"os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
     "os.startfile", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "os.setuid", "os.setgid"}
)  # fmt: skip
_NET_PREFIXES = (
    "socket.",
    "urllib.",
    "http.client.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "webbrowser.",
)
_TAMPER_EVENTS = frozenset(
    {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile",
     "sys._current_frames", "sys._current_exceptions", "sys.addaudithook", "resource.setrlimit",
     "resource.prlimit", "os.chdir", "os.fchdir", "os.chroot", "os.symlink", "os.link", "os.mkfifo", "os.mknod"}
)  # fmt: skip
# events refused only when the learner's own code triggers them (libraries use them legitimately)
_FROM_LEARNER_EVENTS = frozenset({"sys._getframe", "exec", "compile", "code.__new__", "function.__new__"})
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_code", "gi_code"})
# event -> positions of the path arguments that it writes
_WRITE_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.truncate": (0,),
    "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,),
    "os.lchmod": (0,), "os.setxattr": (0,), "os.removexattr": (0,), "shutil.rmtree": (0,),
    "shutil.copyfile": (1,), "shutil.copymode": (1,), "shutil.copystat": (1,), "shutil.copytree": (1,),
    "shutil.move": (0, 1), "shutil.chown": (0,),
}  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class Guard:
    """The audit hook: refuses what a graded exercise has no business doing, and remembers each attempt."""

    def __init__(self, workdir: str, read_roots: list[str]):
        self.workdir = os.path.realpath(workdir)
        self.read_roots = [os.path.realpath(r) for r in read_roots if r]
        self.blocked: list[tuple[str, str]] = []  # (kind, what): kind is "os" or "tamper"
        self._busy: set[int] = set()
        self._get_ident = __import__("_thread").get_ident
        self._getframe = sys._getframe

    def __call__(self, event: str, args: tuple) -> None:
        me = self._get_ident()
        if me in self._busy:
            return
        self._busy.add(me)
        try:
            problem = self._check(event, args)
        except Exception as e:  # never let the guard itself break the check
            problem = ("tamper", f"{event} ({type(e).__name__} in the grader's guard)")
        finally:
            self._busy.discard(me)
        if problem is not None:
            if len(self.blocked) < 100:
                self.blocked.append(problem)
            raise PermissionError(f"blocked by the grader's sandbox: {problem[1]}")

    def _from_learner(self) -> bool:
        try:
            frame = self._getframe(3)  # _from_learner <- _check <- __call__ <- the code that raised the event
        except ValueError:  # raised from C with no Python caller
            return False
        return frame.f_code.co_filename.startswith(LEARNER_FILE)

    def _inside(self, path: str, roots: list[str]) -> bool:
        return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

    def _file(self, path: object, write: bool) -> tuple[str, str] | None:
        if isinstance(path, int) or path is None:
            return None  # an already open descriptor
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        if real in (os.devnull, "/dev/urandom", "/dev/random") or self._inside(real, [self.workdir]):
            return None
        if not write and self._inside(real, self.read_roots):
            return None
        return ("os", f"{'writing' if write else 'reading'} {real}")

    def _check(self, event: str, args: tuple) -> tuple[str, str] | None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, 0))[:3]
            write = (
                any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
            )
            return self._file(path, write)
        if event in ("os.listdir", "os.scandir"):
            return self._file(args[0] if args and args[0] is not None else ".", write=False)
        if event in _WRITE_EVENTS:
            for i in _WRITE_EVENTS[event]:
                if i < len(args):
                    problem = self._file(args[i], write=True)
                    if problem:
                        return problem
            return None
        if event in _PROCESS_EVENTS:
            return ("os", f"{event} (starting or signalling processes)")
        if event.startswith(_NET_PREFIXES):
            return ("os", f"{event} (network access)")
        if event.startswith("ctypes.") or event in _TAMPER_EVENTS:
            return ("tamper", event)
        if event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__":
            return ("tamper", "replacing a function's __code__")
        if event in _FROM_LEARNER_EVENTS and self._from_learner():
            return ("tamper", event)
        if (
            event == "object.__getattr__"
            and len(args) > 1
            and args[1] in _FRAME_ATTRS
            and self._from_learner()
        ):
            return ("tamper", f"reading .{args[1]}")
        return None


class FrozenModule(types.ModuleType):
    """A module whose existing names cannot be rebound or deleted (new names, e.g. lazy submodules, can be added)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in vars(self):
            raise AttributeError(f"blocked by the grader's sandbox: {self.__name__}.{name} cannot be changed")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"blocked by the grader's sandbox: {self.__name__}.{name} cannot be deleted")


_WATCHED = ("gptlib", "torch.nn", "torch._tensor")
_WATCHED_EXACT = frozenset(
    {"torch", "torch._C", "torch._C._nn", "torch.functional", "torch.linalg", "torch.special", "torch.random",
     "torch.testing", "numpy", "builtins", "math", "json", "json.encoder", "hmac", "hashlib", "os", "posix",
     "contextlib", "io", "traceback", "linecache", "functools", "operator", "copy", "itertools", "types",
     "random", "collections", "_thread"}
)  # fmt: skip


def _watched(name: str) -> bool:
    return name in _WATCHED_EXACT or any(name == w or name.startswith(w + ".") for w in _WATCHED)


class Snapshot:
    """What gptlib, torch and the runner's modules hold, to find any change made while the learner's code ran."""

    def __init__(self) -> None:
        self.entries: dict[tuple, object] = {}
        for name, mod in list(sys.modules.items()):
            if mod is None or not _watched(name):
                continue
            for key, value in list(vars(mod).items()):
                self.entries[(name, key)] = value
                if isinstance(value, types.FunctionType) and name.startswith("gptlib"):
                    self.entries[(name, key, "__code__")] = value.__code__
                    self.entries[(name, key, "__defaults__")] = value.__defaults__
                    self.entries[(name, key, "__kwdefaults__")] = value.__kwdefaults__
                if isinstance(value, type) and getattr(value, "__module__", None) == name:
                    for attr, member in list(vars(value).items()):
                        self.entries[(name, key, "attr", attr)] = member
        import torch

        self.torch_dir = os.path.dirname(os.path.realpath(torch.__file__))

    def _current(self, key: tuple) -> object:
        missing = object()
        mod = sys.modules.get(key[0])
        value = vars(mod).get(key[1], missing) if mod is not None else missing
        if len(key) == 2 or value is missing:
            return value
        if key[2] == "attr":
            return vars(value).get(key[3], missing) if isinstance(value, type) else missing
        return getattr(value, key[2], missing)

    def _torch_own(self, value: object) -> bool:
        """torch rebinding its own functions (e.g. when torch._dynamo is first imported) is not tampering."""
        code = getattr(value, "__code__", None)
        return code is not None and os.path.realpath(code.co_filename).startswith(self.torch_dir + os.sep)

    def changes(self) -> list[str]:
        found = []
        for key, before in self.entries.items():
            now = self._current(key)
            if now is before:
                continue
            if key[0].startswith("torch") and self._torch_own(now):
                continue
            found.append(".".join(str(k) for k in key if k != "attr"))
        return found


def freeze_gptlib() -> None:
    for name, mod in list(sys.modules.items()):
        if (name == "gptlib" or name.startswith("gptlib.")) and type(mod) is types.ModuleType:
            mod.__class__ = FrozenModule


def _refuse_fork_exec(*args: object, **kwargs: object) -> None:
    raise PermissionError("blocked by the grader's sandbox: starting processes")


def disable_process_creation() -> None:
    """`_posixsubprocess.fork_exec` starts processes without an audit event (subprocess raises one before
    calling it): replace it and freeze its module, so every way to a new process goes past the audit hook."""
    with contextlib.suppress(ImportError):
        import _posixsubprocess

        _posixsubprocess.fork_exec = _refuse_fork_exec
        _posixsubprocess.__class__ = FrozenModule


def prepare() -> None:
    """Import what every check needs, once (in the fork server, before any fork)."""
    import torch

    import gptlib.checks  # noqa: F401  (every lesson's checks, and their hints)

    with contextlib.suppress(ImportError):
        import numpy  # noqa: F401
    with contextlib.suppress(ImportError):  # lesson 09's checks compare with Hugging Face's GPT-2
        import transformers.models.gpt2.modeling_gpt2  # noqa: F401
    torch.set_num_threads(1)


def read_roots() -> list[str]:
    """Where the learner's code may read: the Python installation (imports) and gptlib itself."""
    import site

    import gptlib

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    with contextlib.suppress(Exception):
        roots.update(site.getsitepackages())
    roots.add(os.path.dirname(os.path.realpath(gptlib.__file__)))
    return sorted(roots)


def set_limits(job: dict) -> None:
    try:
        import resource
    except ImportError:  # Windows: only the parent's wall-clock limit applies
        return
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime + job["timeout"]) + 1
    wanted = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, job["file_size"], job["file_size"]),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if sys.platform.startswith("linux"):  # macOS does not enforce RLIMIT_AS
        wanted.append((resource.RLIMIT_AS, job["memory"], job["memory"]))
    for which, soft, hard in wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (soft, hard))


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 20] + "\n... (cut)"


def _where(exc: BaseException) -> str:
    """' (cell N, line M: `code`)' for the innermost frame of the learner's code."""
    for fr in reversed(traceback.extract_tb(exc.__traceback__)):
        if fr.filename.startswith(LEARNER_FILE):
            cell = fr.filename[len(LEARNER_FILE) : -1]
            line = (fr.line or "").strip()
            return f" (cell {cell}, line {fr.lineno}" + (f": `{line}`)" if line else ")")
    return ""


def load_learner_code(job: dict) -> dict:
    """Define the learner's names: only the statements the parent chose, re-checked to be imports,
    defs, classes and constant assignments, compiled under "<cell N>" so tracebacks name the cell."""
    module = types.ModuleType("submission")
    sys.modules["submission"] = module
    ns = module.__dict__
    trees = {}
    for cell, source in job["cells"].items():
        filename = f"{LEARNER_FILE}{int(cell) + 1}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        trees[int(cell)] = ast.parse(source, filename)
    flags = __future__.annotations.compiler_flag if job["future_annotations"] else 0
    for cell, index, keep in job["segments"]:
        stmt = trees[cell].body[index]
        if not isinstance(stmt, RUN_KINDS):
            raise TypeError(f"cell {cell + 1}: statement {index} is not a definition; not run")
        if isinstance(stmt, ast.Import | ast.ImportFrom) and keep is not None:
            is_from = isinstance(stmt, ast.ImportFrom)
            names = [
                a for a in stmt.names if (a.name == "*" and keep == "*") or import_bound(a, is_from) == keep
            ]
            stmt = type(stmt)(**{**{f: getattr(stmt, f) for f in stmt._fields}, "names": names})
            ast.copy_location(stmt, trees[cell].body[index])
        code = compile(
            ast.Module(body=[stmt], type_ignores=[]), f"{LEARNER_FILE}{cell + 1}>", "exec", flags, True
        )
        if isinstance(stmt, ast.Assign | ast.AnnAssign):
            with contextlib.suppress(Exception):  # a constant that fails stays undefined, as its name says
                exec(code, ns)
        else:
            exec(code, ns)
    return ns


def _copied(ns: dict, defines: list[str]) -> list[str]:
    """Exercise names that are gptlib's own objects (or subclasses of them) rather than the learner's."""
    found = []
    for name in defines:
        obj = ns.get(name)
        owners = obj.__mro__[1:] if isinstance(obj, type) else ()
        if str(getattr(obj, "__module__", "")).startswith("gptlib"):
            found.append(f"`{name}` is gptlib's `{obj.__module__}.{getattr(obj, '__qualname__', name)}`")
        elif any(str(getattr(c, "__module__", "")).startswith("gptlib") for c in owners):
            base = next(c for c in owners if str(getattr(c, "__module__", "")).startswith("gptlib"))
            found.append(f"`{name}` subclasses gptlib's finished `{base.__module__}.{base.__qualname__}`")
    return found


def run_job(job: dict, result_fd: int, snapshot: Snapshot) -> None:
    """Grade one exercise and write its signed verdict to result_fd. Never returns.

    `snapshot` was taken before any learner code existed in this process (in the fork server: before forking)."""
    # Everything the verdict needs is bound to locals before the learner's code exists.
    key, nonce = bytes.fromhex(job["key"]), job["nonce"]
    dumps, digest, write, exit_now = json.dumps, hmac.digest, os.write, os._exit
    sha256, monotonic = hashlib.sha256, time.monotonic
    from gptlib import checks
    from gptlib.checks import CheckFailure, NotDoneYet

    trusted = {name: getattr(checks, name) for name in checks.__all__}
    check_code = compile(job["check"], "<check cell>", "exec")
    check_names = {n.id for n in ast.walk(ast.parse(job["check"])) if isinstance(n, ast.Name)}

    set_limits(job)
    for name in WORK_FOLDER_VARIABLES:
        os.environ[name] = job["workdir"]
    tempfile.tempdir = job["workdir"]
    guard = Guard(job["workdir"], read_roots())
    disable_process_creation()
    freeze_gptlib()
    sys.addaudithook(guard)

    verdict: dict = {
        "nonce": nonce,
        "exercise": job["exercise"],
        "status": "error",
        "message": "",
        "output": "",
    }
    out = io.StringIO()
    start = monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                ns = load_learner_code(job)
            except BaseException as e:
                verdict["status"], verdict["stage"] = "failed", "load"
                verdict["message"] = (
                    f"your code could not be defined: {type(e).__name__}: {e}{_where(e)}. Fix that cell, run it, "
                    "and run its check again."
                )
                ns = None
            copied = _copied(ns, job["defines"]) if ns is not None else []
            if copied:
                verdict["status"], verdict["message"] = "copied", "; ".join(copied)
            elif ns is not None:
                env = {"__builtins__": builtins}
                env.update({n: ns[n] for n in check_names if n in ns})
                env.update({n: trusted[n] for n in check_names if n in trusted})
                try:
                    exec(check_code, env)
                    verdict["status"] = "passed"
                except CheckFailure as e:  # NotDoneYet included: the check's own words, as in the notebook
                    verdict["status"] = "not attempted" if isinstance(e, NotDoneYet) else "failed"
                    verdict["message"], verdict["diagnosis"] = str(e), e.diagnosis
                except SystemExit as e:
                    verdict["message"] = (
                        f"your code called sys.exit({e.code!r}){_where(e)} while it was checked."
                    )
                except BaseException as e:
                    verdict["message"] = f"the check stopped: {type(e).__name__}: {e}{_where(e)}"
        verdict["message"] = _short(str(verdict["message"]))
        verdict["output"] = _short(out.getvalue())
    except BaseException as e:  # a hostile __str__ or the like: the verdict stays an error
        verdict["status"], verdict["message"] = (
            "error",
            f"the grader could not report the result ({type(e).__name__})",
        )
    verdict["seconds"] = round(monotonic() - start, 3)
    changes = snapshot.changes()
    tampering = [what for kind, what in guard.blocked if kind == "tamper"]
    if changes or tampering:
        verdict["status"] = "tampered"
        verdict["message"] = (
            "your code changed the grader's environment while it was checked ("
            + ", ".join((changes + tampering)[:5])
            + "); the result cannot be trusted."
        )
    verdict["blocked"] = [what for _, what in guard.blocked]
    payload = dumps(verdict)
    mac = digest(key, (nonce + payload).encode(), sha256).hex()
    data = (dumps({"payload": payload, "mac": mac}) + "\n").encode()
    while data:
        data = data[write(result_fd, data) :]
    exit_now(0)


def _isolate_fds(keep: int, workdir: str) -> None:
    """stdin from /dev/null, stdout and stderr to a log in the work folder, every other descriptor closed."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(os.path.join(workdir, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)


def spawn_main() -> None:
    """One exercise: the job on stdin, the verdict on (what was) stdout."""
    prepare()
    snapshot = Snapshot()
    job = json.loads(sys.stdin.buffer.read())
    result_fd = os.dup(1)
    os.chdir(job["workdir"])
    _isolate_fds(result_fd, job["workdir"])
    run_job(job, result_fd, snapshot)


def _fork_one(job: dict, snapshot: Snapshot) -> dict:
    """Fork a fresh process for one exercise, wait for its verdict or its time limit, kill its process group."""
    import selectors

    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the exercise's process
        try:
            os.setpgid(0, 0)
            os.close(r)
            os.chdir(job["workdir"])
            _isolate_fds(w, job["workdir"])
            run_job(job, w, snapshot)
        finally:
            os._exit(70)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    os.close(w)
    chunks, size, timed_out = [], 0, False
    deadline = time.monotonic() + job["timeout"]
    with selectors.DefaultSelector() as sel:
        sel.register(r, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not sel.select(left):
                continue
            data = os.read(r, 65536)
            if not data:
                break
            size += len(data)
            if size <= 1 << 20:
                chunks.append(data)
    os.close(r)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return {
        "verdict": b"".join(chunks).decode("utf-8", "replace"),
        "timed_out": timed_out,
        "exit": os.waitstatus_to_exitcode(status),
        "overflow": size > 1 << 20,
    }


def _serve(job_fd: int, report_fd: int, snapshot: Snapshot) -> None:
    """One submission's server: one JSON job per line in, one report per line out, each job in a fresh fork."""
    with os.fdopen(job_fd, "r") as jobs, os.fdopen(report_fd, "w", buffering=1) as reports:
        for line in jobs:
            if not line.strip():
                continue
            job = json.loads(line)
            report = _fork_one(job, snapshot)
            report["id"] = job["id"]
            reports.write(json.dumps(report) + "\n")


def _new_network_namespace() -> None:
    """Best effort: a network namespace of this submission's own (no network, not even the others' loopback)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def master_main(fd: int) -> None:
    """The fork server's root. It imports torch and the checks once and never sees a job: for each submission
    the parent sends it two pipe ends (jobs in, reports out) over the socket `fd`, and it forks a session
    server for that submission alone, in a session (and network namespace) of its own; it answers its pid."""
    import socket

    prepare()
    snapshot = Snapshot()
    sock = socket.socket(fileno=fd)
    sock.sendall(b"ready\n")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 64, 2)
        except OSError:
            break
        if not msg:
            break
        _reap()
        if len(fds) != 2:
            for f in fds:
                os.close(f)
            sock.sendall(b"error\n")
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                sock.close()
                _new_network_namespace()
                _serve(fds[0], fds[1], snapshot)
            finally:
                os._exit(0)
        for f in fds:
            os.close(f)
        sock.sendall(f"{pid}\n".encode())
