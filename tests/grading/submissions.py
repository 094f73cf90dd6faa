"""Submissions for the grader's tests, made from the real solution notebooks by editing cells with nbformat.

Honest ones (solved, untouched, one classic mistake, a messy but working
notebook) and adversarial ones, one per class of attack that worked against the
in-process grader (issue 13). Each attack is the code a student could hand in
for one exercise of lesson 00 (or in extra cells); the rest of its notebook is
solved, so its other exercises must keep their points while the attacked one
gets none. File-level attacks (symbolic links, a FIFO, malformed notebooks)
are made by `make_files`.
"""

from __future__ import annotations

import copy
import json
import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from gptlib.course.notebooks import student_version

LESSON = "00_tokens_and_batches"
FULL = {"char_tokenizer": 2, "get_batch": 3, "unigram_entropy": 2}
SECRET = "SECRET-4d1f-never-in-any-report"  # in the home canary and the solutions copy


@dataclass
class Places:
    """What an attack aims at: the test's own copies and temporary folders."""

    solutions: Path
    out: Path
    home: Path
    victim: Path  # a classmate's notebook
    project: Path  # a copy of the project's gptlib/ (the attacks aim at the real paths too)
    site_packages: Path
    port: int


def load(solutions: Path, lesson: str = LESSON) -> nbformat.NotebookNode:
    return nbformat.read(Path(solutions) / f"{lesson}.ipynb", as_version=4)


def cell_of(nb: nbformat.NotebookNode, exercise: str, kind: str = "exercise") -> nbformat.NotebookNode:
    for cell in nb.cells:
        meta = cell.metadata
        if meta.get("gptlib", {}).get("exercise") == exercise and kind in meta.get("tags", []):
            return cell
    raise KeyError(f"no {kind} cell for {exercise!r}")


def with_exercise(nb: nbformat.NotebookNode, exercise: str, source: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    cell_of(nb, exercise).source = textwrap.dedent(source)
    return nb


def add_cell(nb: nbformat.NotebookNode, source: str, at: int | None = None) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells.insert(len(nb.cells) if at is None else at, nbformat.v4.new_code_cell(textwrap.dedent(source)))
    return nb


# --- honest ---------------------------------------------------------------------------------------------------


def solved(solutions: Path, lesson: str = LESSON) -> nbformat.NotebookNode:
    return load(solutions, lesson)


def untouched(solutions: Path, lesson: str = LESSON) -> nbformat.NotebookNode:
    return student_version(load(solutions, lesson))


def log2_entropy(solutions: Path) -> nbformat.NotebookNode:
    """The classic slip: the entropy in bits instead of nats (unigram_entropy loses its 2 points)."""
    nb = load(solutions)
    cell = cell_of(nb, "unigram_entropy")
    assert "p.log()" in cell.source, "the solution's entropy line moved"
    cell.source = cell.source.replace("p.log()", "p.log2()")
    return nb


def messy(solutions: Path) -> nbformat.NotebookNode:
    """As a real student might hand it in: metadata gone, check cells deleted or retyped, cells reordered, a
    helper below its user, cells added, get_batch's cell deleted, a cell that does not parse."""
    nb = load(solutions)
    keep = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "exercise" in tags and cell.metadata["gptlib"]["exercise"] == "get_batch":
            continue
        if "check" in tags:
            cell.source = "print('checked!')"
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs = []
        keep.append(cell)
    nb.cells = keep
    ent = next(c for c in nb.cells if "def unigram_entropy" in c.source)
    ent.source = (
        "def unigram_entropy(data, vocab_size):\n"
        "    return _entropy_of(torch.bincount(data, minlength=vocab_size).double())\n"
    )
    nb.cells.remove(ent)
    nb.cells.insert(2, ent)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "def _entropy_of(counts):\n    p = counts / counts.sum()\n    p = p[p > 0]\n    return float(-(p * p.log()).sum())"
        )
    )
    nb.cells.append(nbformat.v4.new_code_cell("for i in range(3):\n    print(i)\nthis is not python"))
    nb.metadata = {}
    return nb


HONEST = {  # name -> (notebook maker, points per exercise)
    "full": (solved, FULL),
    "idle": (untouched, {"char_tokenizer": 0, "get_batch": 0, "unigram_entropy": 0}),
    "bits": (log2_entropy, {**FULL, "unigram_entropy": 0}),
    "messy": (messy, {**FULL, "get_batch": 0}),
}


# --- adversarial: the code of one exercise ---------------------------------------------------------------------

SIG = "def unigram_entropy(data, vocab_size):\n"


def _nb(solutions: Path, exercise: str, source: str, extra: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    nb = with_exercise(load(solutions), exercise, source)
    for s in extra:
        nb = add_cell(nb, s, at=3)
    return nb


def _entropy(body: str, before: str = "") -> str:
    return textwrap.dedent(before) + SIG + textwrap.indent(textwrap.dedent(body), "    ")


# Every frame the code can reach, every dict that looks like a verdict set to "passed", every check_* replaced.
_TAMPER = """
def _tamper(frame):
    import string
    fmt = string.Formatter()
    while frame is not None:
        for space in (frame.f_locals, frame.f_globals):
            for key, value in list(space.items()):
                if isinstance(value, dict) and "status" in value:
                    value["status"] = "passed"
                if key.startswith("check_") and callable(value):
                    space[key] = lambda *a, **k: print("✅ unigram_entropy: passed — trust me")
        frame, _ = fmt.get_field("0.f_back", [frame], {})
"""

ATTACKS: dict[str, tuple[str, Callable[[Path, Places], nbformat.NotebookNode]]] = {
    # --- comparisons that lie
    "lying_tensor": ("get_batch", lambda s, p: _nb(s, "get_batch", """
        class Liar(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if func in (torch.equal, torch.allclose, torch.isclose, torch.Tensor.__eq__, torch.Tensor.eq,
                            torch.Tensor.all, torch.Tensor.any, torch.Tensor.__ne__):
                    return True
                return super().__torch_function__(func, types, args, kwargs or {})

        def get_batch(data, block_size, batch_size, generator):
            x = torch.zeros(batch_size, block_size, dtype=torch.long).as_subclass(Liar)
            return x, x
    """)),
    "lying_int_and_str": ("char_tokenizer", lambda s, p: _nb(s, "char_tokenizer", """
        class Yes(int):
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            __hash__ = int.__hash__

        class YesStr(str):
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            __hash__ = str.__hash__

        class CharTokenizer:
            def __init__(self, text):
                self.vocab_size = Yes(0)
            def encode(self, s):
                return [Yes(0) for _ in s]
            def decode(self, ids):
                return YesStr("")
    """)),
    "lying_float": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("return Close(0.0)\n", """
        class Close(float):
            def __eq__(self, other):
                return True
            def __sub__(self, other):
                return Close(0.0)
            __rsub__ = __sub__
            def __abs__(self):
                return 0.0
            def __lt__(self, other):
                return True
            __le__ = __lt__
            __hash__ = float.__hash__

    """))),
    # --- reaching the grader's frames
    "frames_through_stdlib": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        try:
            raise RuntimeError
        except RuntimeError as e:
            frame, _ = __import__("string").Formatter().get_field("0.tb_frame", [e.__traceback__], {})
        _tamper(frame)
        return 0.0
    """, _TAMPER + "\n"))),
    "definition_time_code": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _TAMPER + """
import sys

def _everywhere(*args, **kwargs):
    _tamper(sys._getframe())
    import torch
    torch.allclose = torch.isclose = torch.equal = lambda *a, **k: True
    return args[0] if args and callable(args[0]) else 0

class _Meta(type):
    def __new__(mcs, name, bases, ns):
        _everywhere()
        return super().__new__(mcs, name, bases, ns)

class _Base(metaclass=_Meta):
    def __init_subclass__(cls, **kw):
        _everywhere()

class _Sub(_Base):
    pass

@_everywhere
def unigram_entropy(data, vocab_size, _default=_everywhere(), _sub=_Sub):
    return 0.0
""")),
    "sigalrm_handler": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _TAMPER + """
import signal

def _on_alarm(signum, frame):
    _tamper(frame)

def unigram_entropy(data, vocab_size, _handler=signal.signal(signal.SIGALRM, _on_alarm),
                    _timer=signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)):
    return 0.0
""")),
    "thread_forging_answers": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _TAMPER + """
import os
import threading
import time

def _forge():
    line = b'{"status": "passed"}' + b"\\x00\\x00\\x00\\x01T" * 50
    while True:
        _tamper(__import__("sys")._getframe())
        for fd in range(3, 40):
            try:
                os.write(fd, line)
            except OSError:
                pass
        time.sleep(0.001)

def unigram_entropy(data, vocab_size, _t=threading.Thread(target=_forge, daemon=True).start()):
    return 0.0
""")),
    # --- using the course's own code
    "course_code_by_getattr": ("get_batch", lambda s, p: _nb(s, "get_batch", """
        import importlib
        import operator

        def get_batch(data, block_size, batch_size, generator):
            for find in (lambda: operator.attrgetter("data.get_batch")(importlib.import_module("gptlib")),
                         lambda: getattr(importlib.import_module("gptlib." + "data"), "get_" + "batch"),
                         lambda: getattr(importlib.import_module("gptlib"), "get_batch")):
                try:
                    return find()(data, block_size, batch_size, generator)
                except (ImportError, AttributeError):
                    pass
            raise RuntimeError("no finished get_batch in here")
    """)),
    "course_checks_reference": ("char_tokenizer", lambda s, p: _nb(s, "char_tokenizer", """
        import importlib

        class CharTokenizer:
            def __init__(self, text):
                ref = None
                for name in ("gptlib.checks.tokens_and_batches", "gptlib.checks", "gptlib.tokenizer"):
                    try:
                        module = importlib.import_module(name)
                        ref = getattr(module, "_RefTokenizer", None) or getattr(module, "CharTokenizer")
                        break
                    except (ImportError, AttributeError):
                        pass
                self.inner = ref.from_text(text)
                self.vocab_size = self.inner.vocab_size
            def encode(self, s):
                return self.inner.encode(s)
            def decode(self, ids):
                return self.inner.decode(ids)
    """)),
    "copy_the_reference": ("get_batch", lambda s, p: _nb(s, "get_batch", "from gptlib.data import get_batch\n")),
    # --- patch and restore
    "patch_and_restore": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        saved = {n: getattr(_T, n) for n in ("allclose", "isclose", "equal")}
        for n in saved:
            setattr(_T, n, lambda *a, **k: True)
        import math
        math.isclose = lambda *a, **k: True
        result = 0.0
        for n, f in saved.items():
            setattr(_T, n, f)
        return result
    """, "_T = torch\n\n"))),
    # --- file access that raises no audit event (torch's own file I/O)
    "torch_file_writes": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy(f"""
        import os
        targets = [{str(p.project / "gptlib/checks/evil.py")!r}, {str(p.site_packages / "evil.pth")!r},
                   {str(p.home / "pwned.txt")!r}, {str(p.out / "scores.csv")!r}, {str(p.out / "pwned.txt")!r},
                   {str(p.solutions / "evil.py")!r}, os.path.expanduser("~/pwned2.txt")]
        for target in targets:
            try:
                torch.save(torch.ones(3), target)
            except Exception:
                pass
            try:
                t = torch.from_file(target, shared=True, size=64, dtype=torch.uint8)
                t.fill_(65)
            except Exception:
                pass
        return 0.0
    """))),
    "torch_file_reads": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy(f"""
        import os
        found = []
        for source in ({str(p.victim)!r}, {str(p.solutions / (LESSON + ".ipynb"))!r},
                       {str(p.home / "secret.txt")!r}, "/etc/passwd", os.path.expanduser("~/secret.txt")):
            try:
                size = os.path.getsize(source)
                found.append(bytes(torch.from_file(source, shared=False, size=size, dtype=torch.uint8).tolist()))
            except Exception as e:
                found.append(repr(e).encode())
        raise ValueError(b"".join(found)[:3000].decode(errors="replace"))
    """))),
    # --- escaping the process, and killing classmates
    "escape_and_sleep": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        import os, subprocess, time
        for escape in (os.setsid, lambda: os.setpgid(0, 0)):
            try:
                escape()
            except OSError:
                pass
        for start in (os.fork, lambda: subprocess.Popen(["sleep", "1000"], start_new_session=True),
                      lambda: os.posix_spawn("/bin/sleep", ["sleep", "1000"], {})):
            try:
                if start() == 0:
                    time.sleep(1000)
            except OSError:
                pass
        time.sleep(1000)
    """))),
    "kill_classmates": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        import ctypes, os, signal
        libc = ctypes.CDLL(None, use_errno=True)
        for pid in range(1, 5000):
            fd = libc.syscall(434, pid, 0)  # pidfd_open
            if fd >= 0:
                libc.syscall(424, fd, signal.SIGKILL, None, 0)  # pidfd_send_signal
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        return 0.0
    """))),
    # --- resources
    "fill_the_disk": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        import os, tempfile
        written, block = 0, b"x" * (8 << 20)
        for k, folder in enumerate((tempfile.gettempdir(), os.getcwd(), os.path.expanduser("~"), "/")):
            for i in range(40):
                try:
                    with open(os.path.join(folder, f"fill{k}-{i}"), "wb") as f:
                        f.write(block)
                    written += len(block)
                except OSError:
                    break
        raise MemoryError(f"wrote {written >> 20} MB")
    """))),
    "memory_hog": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        hog = torch.ones(4 * 2**30, dtype=torch.uint8)  # 4 GB: fits this machine, not the limit
        return float(hog.sum())
    """), ("hog = bytearray(20 * 2**30)",))),
    "fork_bomb": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        import os
        while True:
            os.fork()
    """))),
    "infinite_loop": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        while True:
            pass
    """), ("while True:\n    pass",))),
    "exit_mid_check": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        import os
        os._exit(0)
    """), ("import sys\nsys.exit(0)", "import os\nos._exit(0)"))),
    "network": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy(f"""
        import socket
        c = socket.create_connection(("127.0.0.1", {p.port}), timeout=2)
        c.sendall(b"the answer please")
        return float(c.recv(100) or 0)
    """))),
    "forge_verdict": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        import json, os, struct
        fake = json.dumps({"status": "passed", "message": "ok"}).encode() + b"\\n"
        frame = struct.pack(">I", 1) + b"T"
        for fd in range(0, 64):
            for data in (fake, frame):
                try:
                    os.write(fd, data)
                except OSError:
                    pass
        os._exit(0)
    """))),
    "fake_success": ("unigram_entropy", lambda s, p: _fake_success(s)),
    # --- forged feedback
    "forged_feedback": ("unigram_entropy", lambda s, p: _nb(s, "unigram_entropy", _entropy("""
        raise ValueError("````\\n\\n**Score: 7 / 7**\\n\\n| `unigram_entropy` | 2 / 2 | passed |\\n"
                         "</pre><script>alert(1)</script>\\n~~~\\n```\\n````````")
    """))),
}  # fmt: skip


def _fake_success(solutions: Path) -> nbformat.NotebookNode:
    line = "✅ unigram_entropy: passed — matches -sum(p ln p)"
    nb = _nb(solutions, "unigram_entropy", _entropy(f"print({line!r})\nreturn 1.0\n"), (f"print({line!r})",))
    check = cell_of(nb, "unigram_entropy", "check")
    check.source = f"print({line!r})"
    check.outputs = [nbformat.v4.new_output("stream", name="stdout", text=line + "\n")]
    return nb


# --- adversarial: lesson 02, the issue's own example ----------------------------------------------------------------

LESSON_02 = "02_attention"
FULL_02 = {"causal_average": 1, "masked_softmax": 2, "head": 3, "attention": 4}


def wrapped_attention(solutions: Path) -> nbformat.NotebookNode:
    """gptlib's finished CausalSelfAttention fetched by `operator.attrgetter` on a name built at run time (or,
    failing that, `getattr` on `gptlib.attention`), wrapped inside the student's own class."""
    nb = load(solutions, LESSON_02)
    cell_of(nb, "attention").source = textwrap.dedent("""
        import importlib
        import operator

        class CausalSelfAttention(nn.Module):
            def __init__(self, config):
                super().__init__()
                errors = []
                for find in (lambda: operator.attrgetter("attention." + "CausalSelf" + "Attention")(
                                 importlib.import_module("gptlib")),
                             lambda: getattr(importlib.import_module("gptlib.attention"), "CausalSelfAttention")):
                    try:
                        self.inner = find()(config)
                        break
                    except Exception as e:
                        errors.append(e)
                else:
                    raise errors[-1]
                self.query, self.key, self.value = self.inner.query, self.inner.key, self.inner.value
                self.proj = self.inner.proj

            def forward(self, x):
                return self.inner(x)
    """)  # fmt: skip
    return nb


# --- adversarial: the files themselves ----------------------------------------------------------------------------

MALFORMED: dict[str, bytes] = {
    "lone_surrogate": json.dumps(
        {
            "cells": [{"cell_type": "code", "source": "x = '\ud800'", "metadata": {}}],
            "metadata": {},
            "nbformat": 4,
        }
    ).encode(),
    "source_is_a_number": b'{"cells": [{"cell_type": "code", "source": 42, "metadata": {}}], "nbformat": 4}',
    "nbgrader_metadata_is_a_list": json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "source": "def get_batch(): pass",
                    "metadata": {"nbgrader": [1, 2], "gptlib": "x", "tags": 5},
                }
            ],
            "nbformat": 4,
        }  # fmt: skip
    ).encode(),
    "deep_json": b'{"cells": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    "json_list": b"[1, 2, 3]",
    "not_utf8": b'{"cells": [], "x": "\xff\xfe"}',
    "truncated": b'{"cells": [{"cell_type": "code", "sou',
    "empty": b"",
    "cells_not_a_list": b'{"cells": {"a": 1}}',
    "cell_is_a_string": b'{"cells": ["def f(): pass"]}',
    "old_format": b'{"worksheets": [{"cells": []}], "nbformat": 3}',
    "nul_and_deep_python": json.dumps(
        {
            "cells": [
                {"cell_type": "code", "source": "x = 1\x00", "metadata": {}},
                {"cell_type": "code", "source": "y = " + "(" * 5000 + ")" * 5000, "metadata": {}},
                {"cell_type": "code", "source": "z = " + "-" * 200000 + "1", "metadata": {}},
            ]
        }  # fmt: skip
    ).encode(),
}


def make_files(folder: Path, places: Places) -> dict[str, str]:
    """Write the file-level attacks into the submissions folder: name -> what it is."""
    made = {}
    for name, data in MALFORMED.items():
        (folder / f"{name}.ipynb").write_bytes(data)
        made[name] = "malformed"
    os.symlink(places.victim, folder / "link_to_classmate.ipynb")
    os.symlink(places.home / "secret.txt", folder / "link_to_secret.ipynb")
    (folder / "link_folder").symlink_to(places.home, target_is_directory=True)
    os.mkfifo(folder / "fifo.ipynb")
    made.update(
        {"link_to_classmate": "link", "link_to_secret": "link", "link_folder": "link", "fifo": "fifo"}
    )
    return made


FORMULA_NAMES = ['=HYPERLINK("evil","x")', "+1+1", "-2+3", "@SUM(A1)"]  # solved notebooks, odd names
