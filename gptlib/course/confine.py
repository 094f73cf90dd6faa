"""Inside the sandbox: the processes that hold a student's code, and the kernel limits put on them.

bubblewrap (`gptlib.course.sandbox`) starts one *zygote* per view of gptlib (the
library without one exercise's answer): a Python that imports torch and that
gptlib, once, and never sees a submission. For each exercise the grader hands it two sockets, and it
forks:

- a *monitor*, which moves into new user, mount, pid, network and IPC
  namespaces of its own, forks the worker, and reports how the worker ended
  (on the control socket, which the worker never holds). It kills the worker
  when the grader says so;
- the *worker*, process 1 of that pid namespace (every process it leaves dies
  with it), with a fresh size-limited scratch folder (SCRATCH), an empty /proc, no capabilities,
  rlimits (address space, CPU seconds, file size, processes, open files), and a
  seccomp filter that refuses new processes, namespaces, mounts and ptrace. Then
  it loads the student's code and answers requests (`gptlib.course.worker`).

Students graded at the same time cannot see, signal or share files with each
other: each worker is alone in its namespaces. Where the kernel refuses nested
namespaces, `sandbox` starts one bubblewrap per exercise instead (slower) and
the worker is set up the same way, minus the nesting.

Linux only; everything here runs as the sandbox's unprivileged user.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import resource
import select
import signal
import socket

from gptlib.course.forks import serve_forks

# The worker's private, size-limited writable folder (HOME and TMPDIR). Not /tmp: a venv or a checkout under
# /tmp (as CI makes them) is mounted read-only into the sandbox, and a fresh tmpfs on /tmp would hide it.
SCRATCH = "/gptlib-scratch"

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
CLONE_THREAD = 0x00010000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 4, 38, 22
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_RDONLY = 0x2, 0x4, 0x8, 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def die_with_parent() -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def new_namespaces() -> None:
    """This process into new user, mount, network, IPC and UTS namespaces (its children: a new pid one),
    keeping its own uid and gid (as an unprivileged process may)."""
    uid, gid = os.getuid(), os.getgid()
    _check(
        _libc.unshare(
            CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        ),
        "unshare",
    )
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def mount_tmpfs(target: str, size: int, read_only: bool = False) -> None:
    flags = MS_NOSUID | MS_NODEV | (MS_RDONLY | MS_NOEXEC if read_only else 0)
    _check(
        _libc.mount(b"tmpfs", target.encode(), b"tmpfs", flags, f"size={size},mode=1777".encode()),
        f"mounting a tmpfs on {target}",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> None:
    """No capabilities at all (the worker had every one in its own user namespace)."""
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


# --- seccomp: no new processes, namespaces, mounts or ptrace -----------------------------------------------

_ARCH = {  # machine -> (AUDIT_ARCH_*, {syscall: number} refused with EPERM, clone, clone3)
    "x86_64": (0xC000003E, {"fork": 57, "vfork": 58, "ptrace": 101, "mount": 165, "umount2": 166,
                            "unshare": 272, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
                            "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432}, 56, 435),
    "aarch64": (0xC00000B7, {"ptrace": 117, "mount": 40, "umount2": 39, "unshare": 97, "setns": 268,
                             "process_vm_readv": 270, "process_vm_writev": 271, "open_tree": 428,
                             "move_mount": 429, "fsopen": 430, "fsmount": 432}, 220, 435),
}  # fmt: skip
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_LD_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]] | None:
    """The filter as (code, jt, jf, k) instructions, or None on an architecture it does not know.

    clone is allowed only for threads (CLONE_THREAD); clone3 says ENOSYS, so the C library falls back to
    clone; another architecture's system calls (e.g. 32-bit ones on x86_64) and x32 ones are refused."""
    if machine not in _ARCH:
        return None
    arch, refused, clone, clone3 = _ARCH[machine]
    deny, nosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS
    prog: list[tuple[int, int, int, int]] = [(_LD_ABS, 0, 0, 4), (_JEQ, 1, 0, arch), (_RET, 0, 0, deny)]
    prog.append((_LD_ABS, 0, 0, 0))
    if machine == "x86_64":
        prog += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, deny)]
    for nr in refused.values():
        prog += [(_JEQ, 0, 1, nr), (_RET, 0, 0, deny)]
    prog += [(_JEQ, 0, 1, clone3), (_RET, 0, 0, nosys)]
    prog += [(_JEQ, 1, 0, clone), (_RET, 0, 0, _RET_ALLOW)]
    prog += [(_LD_ABS, 0, 0, 16), (_JSET, 0, 1, CLONE_THREAD), (_RET, 0, 0, _RET_ALLOW)]
    prog += [(_RET, 0, 0, _RET_ERRNO | errno.EAGAIN)]
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def install_seccomp() -> bool:
    """Install the filter on this (single-threaded) process and all it starts; False where the architecture
    is unknown (the process limit still applies)."""
    prog = seccomp_program(platform.machine())
    if prog is None:
        return False
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(_libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(2), ctypes.byref(fprog), 0, 0), "seccomp")
    return True


# --- the worker's limits -----------------------------------------------------------------------------------


def set_limits(limits: dict) -> None:
    """rlimits for the student's code: address space, CPU seconds, file size, processes, files, no core."""
    cpu = int(limits["cpu"]) + 1
    for which, value in (
        (resource.RLIMIT_AS, limits["memory"]),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, limits["file_size"]),
        (resource.RLIMIT_NPROC, limits["processes"]),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_CORE, 0),
    ):
        # CPU: SIGXCPU at the soft limit, SIGKILL a second later
        high = value + 1 if which == resource.RLIMIT_CPU else value
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value, high = min(value, hard), min(high, hard)
        resource.setrlimit(which, (value, high))


def _quiet_fds(keep: int) -> None:
    """stdin, stdout and stderr to /dev/null; every descriptor but `keep` closed."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)


def enter_worker(channel: int, limits: dict, nested: bool) -> None:
    """Set up this process as an exercise's worker (see the module docstring), then serve. Never returns."""
    from gptlib.course import worker

    try:
        die_with_parent()
        if nested:
            mount_tmpfs(SCRATCH, limits["disk"])
            mount_tmpfs("/proc", 4096, read_only=True)
        os.chdir(SCRATCH)
        with contextlib.suppress(OSError):
            os.setsid()
        _quiet_fds(channel)
        os.environ.update(HOME=SCRATCH, TMPDIR=SCRATCH)
        if nested:
            drop_capabilities()
        set_limits(limits)
        filtered = install_seccomp()
    except BaseException as e:  # the sandbox could not be made: say so, never run the student's code
        with contextlib.suppress(Exception):
            from gptlib.course import wire

            wire.send(channel, {"setup_failed": f"{type(e).__name__}: {e}"})
        os._exit(71)
    worker.serve(channel, {"seccomp": filtered})
    os._exit(0)


def serve_plain(channel: int, limits_json: str) -> None:
    """--unsafe: serve without the sandbox, with what limits this system has (rlimits; seccomp on Linux)."""
    notes: dict[str, object] = {"unsafe": True}
    try:
        set_limits(json.loads(limits_json))
        notes["seccomp"] = install_seccomp()
    except Exception as e:  # not Linux: fewer limits (see docs/teachers.md, Platforms)
        notes["limits"] = f"{type(e).__name__}: {e}"
    from gptlib.course import worker

    worker.serve(channel, notes)


# --- the monitor and the zygote --------------------------------------------------------------------------------


def _report(control: int, status: dict) -> None:
    with contextlib.suppress(OSError):
        os.write(control, (json.dumps(status) + "\n").encode())


def monitor(channel: int, control: int, limits: dict) -> None:
    """One exercise: new namespaces, fork the worker, report how it ended. Never returns."""
    try:
        die_with_parent()
        new_namespaces()
        pid = os.fork()
    except BaseException as e:
        _report(control, {"setup_failed": f"{type(e).__name__}: {e}"})
        os._exit(72)
    if pid == 0:
        os.close(control)
        enter_worker(channel, limits, nested=True)
    os.close(channel)
    pidfd = os.pidfd_open(pid)
    killed, grace = False, 0.0
    while True:
        ready, _, _ = select.select([control, pidfd], [], [])
        if pidfd in ready:
            break
        with contextlib.suppress(OSError):
            data = os.read(control, 64)
            if data:  # "wait": the grader saw the worker go; give it time to finish ending by itself
                grace = 5.0 if b"wait" in data else grace
                continue
        if grace and select.select([pidfd], [], [], grace)[0]:
            break
        killed = True  # the grader is done with this exercise (or gone): end the worker and all it left
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        break
    _, status = os.waitpid(pid, 0)
    _report(control, {"status": os.waitstatus_to_exitcode(status), "killed": killed})
    os._exit(0)


def _probe_nesting() -> str | None:
    """None if a monitor can make its namespaces here; else the reason."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            new_namespaces()
            mount_tmpfs(SCRATCH, 1 << 20)
            os.write(w, b"ok")
        except BaseException as e:
            os.write(w, f"{type(e).__name__}: {e}".encode()[:500])
        os._exit(0)
    os.close(w)
    answer = os.read(r, 600).decode(errors="replace")
    os.close(r)
    os.waitpid(pid, 0)
    return None if answer == "ok" else answer


def _preload(modules: list[str]) -> None:
    import importlib

    import torch

    torch.set_num_threads(1)
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def zygote(sock_fd: int, preload: list[str]) -> None:
    """The process that forks a monitor per exercise. Requests come on `sock_fd` from the grader:
    a JSON line of limits with two descriptors (the worker's channel, the monitor's control socket)."""
    prctl(PR_SET_DUMPABLE, 0)  # not even its own forks may read its memory
    die_with_parent()
    _preload(preload)
    sock = socket.socket(fileno=sock_fd)
    nesting = _probe_nesting()
    sock.sendall((json.dumps({"ready": True, "nesting": nesting}) + "\n").encode())
    serve_forks(sock, 2, lambda msg, fds: monitor(fds[0], fds[1], json.loads(msg)))
    os._exit(0)


def single(channel: int, limits_json: str, preload: list[str]) -> None:
    """Without nesting: this whole bubblewrap is one exercise's worker."""
    die_with_parent()
    _preload(preload)
    enter_worker(channel, json.loads(limits_json), nested=False)
