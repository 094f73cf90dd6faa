"""The teacher's grader, with real notebooks: the committed solutions of lessons 00 and 02.

One grading run (module fixture, through the command line, 2 jobs) grades honest
submissions next to adversarial ones; each test then asserts about one of them.
The rest are quick unit tests of extraction, screening and the verdict channel.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from gptlib.course.__main__ import main
from gptlib.course.catalog import load_course
from gptlib.course.extract import cell_python, exercise_code, parse_notebook
from gptlib.course.grade import (
    ExerciseResult,
    SubmissionResult,
    _name_note,
    check_out_dir,
    collect_submissions,
    grade_submission,
)
from gptlib.course.report import feedback_html, feedback_markdown, feedback_names, scores_csv, summary
from gptlib.course.sandbox import Limits, Sandbox, network_isolation, verify

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
TIMEOUT = 20  # seconds per exercise in the grading run (the endless loop costs this much)


def _load_submissions():
    spec = importlib.util.spec_from_file_location(
        "grading_submissions", ROOT / "tests/grading/submissions.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


subs = _load_submissions()


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def _feedback(text: str) -> dict[str, tuple[float, str, str]]:
    """exercise -> (points, status, message) from a Markdown feedback file."""
    out = {}
    for m in re.finditer(
        r"^## `(\w+)` — ([\d.]+) / [\d.]+ points: ([^\n]+)\n\n`{3,4}text\n(.*?)\n`{3,4}$", text, re.M | re.S
    ):
        out[m.group(1)] = (float(m.group(2)), m.group(3), m.group(4))
    return out


class _Listener:
    """A local TCP server that records every connection (none may arrive)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits.append(conn.recv(100))
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Grade every submission once, through `python -m gptlib.course grade`."""
    tmp = tmp_path_factory.mktemp("grading")
    solutions = tmp / "solutions"  # a copy: attacks aim at it, the repository's stays out of reach
    shutil.copytree(SOLUTIONS, solutions)
    folder = tmp / "submissions"
    folder.mkdir()
    out = tmp / "out"
    listener = _Listener()
    places = subs.Places(solutions, out, folder / "honest_full.ipynb", listener.port)
    notebooks = {
        "honest_full": subs.load(solutions, "00_tokens_and_batches"),
        "idle": subs.untouched(solutions, "00_tokens_and_batches"),
        "nomask": subs.no_causal_mask(solutions),
        "my homework (final)": subs.messy(solutions),
        **{name: make(solutions, places) for name, make in subs.ATTACKS.items()},
    }
    for lesson in sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):  # every lesson, solved
        notebooks[f"solution_{lesson}"] = subs.load(solutions, lesson)
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    before, solutions_before = _digest(folder), _digest(solutions)
    argv = ["grade", str(folder), "--out", str(out), "--solutions", str(solutions), "--jobs", "2",
            "--timeout", str(TIMEOUT), "--no-progress"]  # fmt: skip
    try:
        rc = main(argv)
    finally:
        listener.close()
    rows = {r["student"]: r for r in csv.DictReader((out / "scores.csv").open(encoding="utf-8"))}
    feedback = {p.stem: _feedback(p.read_text(encoding="utf-8")) for p in (out / "feedback").glob("*.md")}
    return {
        "rc": rc, "rows": rows, "feedback": feedback, "out": out, "folder": folder, "names": list(notebooks),
        "before": before, "after": _digest(folder), "solutions": (solutions_before, _digest(solutions)),
        "hits": listener.hits,
    }  # fmt: skip


# --- honest submissions ---------------------------------------------------------------------------


def test_every_submission_is_graded(run):
    assert run["rc"] == 0
    assert sorted(run["rows"]) == sorted(run["names"])
    assert sorted(run["feedback"]) == sorted(
        n.replace(" (", "_").replace(")", "").replace(" ", "_") for n in run["names"]
    )


def test_a_solved_notebook_gets_full_marks(run):
    row = run["rows"]["honest_full"]
    assert (row["lesson"], row["total"], row["max"]) == ("00_tokens_and_batches", "7", "7")
    assert {s for _, s, _ in run["feedback"]["honest_full"].values()} == {"passed"}
    assert row["flags"] == ""


def test_every_lessons_solution_gets_full_marks(run):
    """Each lesson's checks run under the sandbox's limits and guards without a false alarm."""
    solved = {n: r for n, r in run["rows"].items() if n.startswith("solution_")}
    assert len(solved) >= 2
    for name, row in solved.items():
        assert row["lesson"] == name.removeprefix("solution_")
        assert row["total"] == row["max"] and float(row["max"]) > 0, (name, run["feedback"][name])
        assert row["flags"] == "", row["flags"]


def test_an_untouched_notebook_gets_zero_with_not_attempted(run):
    row = run["rows"]["idle"]
    assert (row["total"], row["max"]) == ("0", "7")
    fb = run["feedback"]["idle"]
    assert sorted(fb) == ["char_tokenizer", "get_batch", "unigram_entropy"]
    assert all(points == 0 and status == "not attempted" for points, status, _ in fb.values())


def test_one_classic_mistake_loses_exactly_that_exercise_with_the_diagnosis(run):
    row = run["rows"]["nomask"]
    assert row["lesson"] == "02_attention"
    assert [row[e] for e in ("causal_average", "masked_softmax", "head", "attention")] == ["1", "2", "3", "0"]
    assert (row["total"], row["max"]) == ("6", "10")
    points, status, message = run["feedback"]["nomask"]["attention"]
    assert status == "failed"
    # the check's own words, as the learner's notebook shows them
    assert message.startswith("[attention] ") and "without the causal mask" in message
    assert 'More help: show_hints("attention")' in message


def test_a_messy_renamed_notebook_still_grades(run):
    """No metadata, check cells deleted or retyped, cells moved and added, a cell that does not parse, a
    helper below its user, an exercise cell deleted, and a new file name: the lesson is recognised from its
    content, the exercise that is gone scores 0 with the reason."""
    row = run["rows"]["my homework (final)"]
    assert row["lesson"] == "00_tokens_and_batches"
    assert [row[e] for e in ("char_tokenizer", "get_batch", "unigram_entropy")] == ["2", "0", "2"]
    _, status, message = run["feedback"]["my_homework_final"]["get_batch"]
    assert status == "not found" and "`get_batch`" in message


def test_the_summary_gives_pass_rates(run):
    text = (run["out"] / "summary.md").read_text(encoding="utf-8")
    n00 = sum(r["lesson"] == "00_tokens_and_batches" for r in run["rows"].values())
    passed = sum(
        r["char_tokenizer"] == "2" for r in run["rows"].values() if r["lesson"] == "00_tokens_and_batches"
    )
    assert f"| `char_tokenizer` | {passed}/{n00} (" in text
    assert (
        "| `attention` | 1/2 (50%) | 0 | no-mask (1) |" in text
    )  # the solution passes; nomask: the diagnosis


# --- adversarial submissions -----------------------------------------------------------------------

ATTACKED = {name: "unigram_entropy" for name in subs.ATTACKS} | {"copy_the_reference": "get_batch"}
FULL = {"char_tokenizer": "2", "get_batch": "3", "unigram_entropy": "2"}
EXPECT = {  # attack -> (status of the attacked exercise, words in its message)
    "patch_checks_from_a_cell": ("not attempted", "not done yet"),
    "patch_checks_in_the_exercise": ("not graded", "`gptlib.checks.tokens_and_batches`"),
    "patch_checks_through_an_alias": ("failed", "cannot be changed"),
    "patch_a_library": ("not graded", "math.isclose"),
    "fake_success": ("failed", "returned 1.0000"),
    "exit_mid_notebook": ("not graded", "ended (exit code 0) before the check finished"),
    "infinite_loop": ("not graded", f"did not finish within {TIMEOUT} s"),
    "memory_hog": ("failed", "allocate"),
    "fork": ("failed", "os.fork"),
    "read_solutions": ("failed", "blocked by the grader's sandbox: reading"),
    "write_output_folder": ("failed", "blocked by the grader's sandbox: writing"),
    "delete_files": ("failed", "blocked by the grader's sandbox: writing"),
    "network": ("not graded", "`socket`"),
    "network_at_run_time": ("failed", "network access"),
    "forge_verdict": ("not graded", "signature"),
    "copy_the_reference": ("not graded", "gptlib"),
}


def test_every_attack_has_an_expectation():
    assert sorted(EXPECT) == sorted(subs.ATTACKS)


@pytest.mark.parametrize("attack", sorted(subs.ATTACKS))
def test_an_attack_gets_no_undeserved_points(run, attack):
    row, target = run["rows"][attack], ATTACKED[attack]
    assert row[target] == "0"
    points, status, message = run["feedback"][attack][target]
    want_status, want_words = EXPECT[attack]
    assert (points, status) == (0, want_status), message
    assert want_words in message
    # the exercises it did not attack keep their (deserved) points: one submission's tampering stays its own
    assert {e: row[e] for e in FULL if e != target} == {e: p for e, p in FULL.items() if e != target}


def test_the_submitted_files_are_unchanged(run):
    assert run["after"] == run["before"]


def test_solutions_and_output_folder_are_out_of_reach(run):
    assert run["solutions"][0] == run["solutions"][1]
    out = run["out"]
    assert sorted(p.name for p in out.iterdir()) == ["feedback", "scores.csv", "summary.md"]
    assert "victim,-1" not in (out / "scores.csv").read_text(encoding="utf-8")


def test_no_connection_reached_the_network(run):
    assert run["hits"] == []


# --- the sandbox, one piece at a time ----------------------------------------------------------------


def _solution_job(exercise: str, lesson: str = "00_tokens_and_batches") -> dict:
    ex = next(e for e in load_course(SOLUTIONS)[lesson].exercises if e.id == exercise)
    parsed = parse_notebook(nbformat.read(SOLUTIONS / f"{lesson}.ipynb", as_version=4))
    code = exercise_code(parsed, ex.defines)
    cells = {str(c): parsed.sources[c] for c, _, _ in code.segments}
    return {"exercise": ex.id, "cells": cells, "segments": [list(s) for s in code.segments],
            "future_annotations": False, "defines": list(ex.defines), "check": ex.check_source}  # fmt: skip


def test_without_fork_each_exercise_gets_a_fresh_python(tmp_path):
    """The path Windows and macOS take: one `python -I` process per exercise."""
    with Sandbox(tmp_path, Limits(timeout=60)) as box:
        outcome = box.run(_solution_job("unigram_entropy"))
    assert outcome.problem is None
    assert outcome.verdict["status"] == "passed" and outcome.verdict["blocked"] == []


def test_a_verdict_counts_only_when_signed_for_this_run():
    import hashlib as h
    import hmac
    import json

    key, nonce = b"k" * 32, "n1"

    def signed(payload: dict, k: bytes = key, n: str = nonce) -> str:
        text = json.dumps(payload)
        return json.dumps({"payload": text, "mac": hmac.new(k, (n + text).encode(), h.sha256).hexdigest()})

    good = {"nonce": nonce, "exercise": "e", "status": "passed"}
    assert verify(signed(good) + "\n", key, nonce, "e")[0] == good
    assert verify(signed(good, k=b"x" * 32), key, nonce, "e") == (
        None,
        "the verdict's signature is wrong (forged?)",
    )
    assert verify(signed(good, n="n2"), key, nonce, "e")[0] is None  # signed for another run
    assert verify(signed({**good, "exercise": "f"}), key, nonce, "e")[0] is None  # for another exercise
    assert "besides the verdict" in verify("fake line\n" + signed(good), key, nonce, "e")[1]
    assert verify("", key, nonce, "e") == (None, None)
    assert verify("✅ e: passed\n", key, nonce, "e")[0] is None


def test_no_network_and_no_stray_processes_for_the_child():
    """In the namespaces the grader uses, a child cannot reach even this machine's loopback, and it is process 1
    of its own process-id namespace (what it leaves behind dies with it). Where the system has no `unshare`,
    the in-process guard below is what refuses sockets."""
    listener = _Listener()
    try:
        prefix = network_isolation()
        if prefix:
            code = (
                "import os, socket\nprint('pid', os.getpid())\n"
                f"socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)"
            )
            done = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, timeout=60)
            assert done.returncode != 0 and b"Error" in done.stderr
            assert done.stdout.startswith(b"pid 1\n") == ("--pid" in prefix)
        else:
            assert not sys.platform.startswith("linux") or shutil.which("unshare") is None
    finally:
        listener.close()
    assert listener.hits == []


def test_in_process_guards_refuse_what_a_check_never_needs(tmp_path):
    """The audit hook and the process-creation stop, in a throwaway interpreter (an audit hook cannot be
    removed): no sockets, no processes (not even by `_posixsubprocess` directly, which has no audit event),
    no reading outside the allowed folders, no writing outside the work folder."""
    listener = _Listener()
    secret = tmp_path / "solutions.txt"
    secret.write_text("the answers", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    attempts = {
        "socket": f"socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)",
        "subprocess": "subprocess.run(['true'])",
        "fork_exec": "_posixsubprocess.fork_exec(*[None] * 23)",
        "restore": "_posixsubprocess.fork_exec = print",
        "fork": "os.fork()",
        "read": f"open({str(secret)!r}).read()",
        "write": f"open({str(tmp_path / 'out.txt')!r}, 'w')",
        "delete": f"os.remove({str(secret)!r})",
        "kill": "os.kill(os.getppid(), 9)",
        "own folder": f"open({str(work / 'scratch.txt')!r}, 'w').write('fine'); print('allowed')",
    }
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import os, socket, subprocess, _posixsubprocess\n"
        "from gptlib.course._runner import Guard, disable_process_creation\n"
        f"disable_process_creation()\nsys.addaudithook(Guard({str(work)!r}, [sys.base_prefix, sys.prefix]))\n"
    )
    for name, attempt in attempts.items():
        code += f"try:\n    {attempt}\nexcept (PermissionError, AttributeError) as e:\n    print({name!r}, 'refused:', e)\n"
    try:
        done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=180)
    finally:
        listener.close()
    lines = done.stdout.splitlines()
    for name in attempts:
        if name != "own folder":
            assert any(ln.startswith(f"{name} refused: blocked by the grader's sandbox") for ln in lines), (
                name, done.stdout, done.stderr[-2000:])  # fmt: skip
    assert "allowed" in lines and (work / "scratch.txt").exists()
    assert listener.hits == [] and secret.exists() and not (tmp_path / "out.txt").exists()


def test_an_unreadable_notebook_is_reported_not_fatal(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ not json", encoding="utf-8")
    lessons = load_course(SOLUTIONS)
    r = grade_submission(bad, "broken", lessons, tmp_path / "work", lesson="00_tokens_and_batches")
    assert r.error.startswith("cannot read this notebook")
    assert r.total == 0 and [e.status for e in r.exercises] == ["not graded"] * 3


def test_the_lesson_can_be_named_when_the_notebook_gives_no_clue(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "empty.ipynb"
    nbformat.write(nb, path)
    lessons = load_course(SOLUTIONS)
    r = grade_submission(path, "s", lessons, tmp_path / "w1")
    assert r.lesson is None and "pass --lesson" in r.error
    r = grade_submission(path, "s", lessons, tmp_path / "w2", lesson="02_attention")
    assert r.lesson == "02_attention" and r.error is None
    assert [e.status for e in r.exercises] == ["not found"] * 4 and r.max_points == 10


def test_output_folder_rules(tmp_path):
    subs_dir = tmp_path / "subs"
    subs_dir.mkdir()
    nb = subs_dir / "a.ipynb"
    nb.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="contains the submission"):
        check_out_dir(tmp_path, [nb], [subs_dir], force=True)
    with pytest.raises(ValueError, match="inside the submissions folder"):
        check_out_dir(subs_dir / "out", [nb], [subs_dir], force=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.csv").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="not empty"):
        check_out_dir(tmp_path / "out", [nb], [subs_dir], force=False)
    check_out_dir(tmp_path / "out", [nb], [subs_dir], force=True)
    assert main(["grade", str(subs_dir), "--out", str(subs_dir / "out"), "--solutions", str(SOLUTIONS)]) == 2


def test_submissions_are_found_per_student(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "lesson.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / "bob.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "bob-checkpoint.ipynb").write_text("{}", encoding="utf-8")
    assert [s for s, _ in collect_submissions([tmp_path])] == ["alice", "bob"]
    with pytest.raises(ValueError, match="no such submission"):
        collect_submissions([tmp_path / "nobody.ipynb"])


# --- extraction and screening (no processes) ---------------------------------------------------------


def _nb(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def _code(defines: tuple[str, ...], *sources: str):
    parsed = parse_notebook(_nb(*sources))
    return parsed, exercise_code(parsed, defines)


def test_magics_are_neutralised_and_line_numbers_kept():
    assert (
        cell_python("%matplotlib inline\nimport torch\n!ls\nx = %time f()")
        == "pass\nimport torch\npass\npass"
    )
    assert cell_python("%%time\ndef f():\n    return 1") == "\ndef f():\n    return 1"
    assert cell_python("%%bash\necho hi") is None
    assert cell_python("s = '''\n%d of them\n'''") == "s = '''\n%d of them\n'''"  # valid Python stays as is


def test_only_definitions_run_and_the_last_one_wins():
    parsed, code = _code(
        ("f",),
        "import sys\nimport math\nprint('hi')\nsys.exit(0)",
        "def f(x):\n    return 0",
        "for i in range(3):\n    pass\nSCALE = 2 * 3\nmodel = make_model()",
        "def f(x):\n    return helper(x) * SCALE + math.pi\n",
        "def helper(x):\n    return x\n",
    )
    kept = [(c, parsed.trees[c].body[i].__class__.__name__, k) for c, i, k in code.segments]
    # math (used), SCALE and helper (used by f), the second f; never print, sys.exit, the loop or model
    assert sorted(kept) == [(0, "Import", "math"), (2, "Assign", None), (3, "FunctionDef", None),
                            (4, "FunctionDef", None)]  # fmt: skip
    order = [parsed.trees[c].body[i] for c, i, _ in code.segments]
    assert [getattr(n, "name", None) for n in order if hasattr(n, "name")] == ["helper", "f"]
    assert "model" in parsed.not_run and code.missing == [] and code.refused == []


def test_a_class_base_defined_below_still_comes_first():
    parsed, code = _code(("Child",), "class Child(Base):\n    pass", "class Base:\n    pass")
    names = [parsed.trees[c].body[i].name for c, i, _ in code.segments]
    assert names == ["Base", "Child"]


def test_a_missing_or_unparsable_definition_is_not_found():
    _, code = _code(("f",), "def f(x:\n    return 1", "g = 1")
    assert code.missing == ["f"]


@pytest.mark.parametrize(
    "source, words",
    [
        ("import gptlib.checks\ndef f():\n    return gptlib.checks", "imports `gptlib.checks`"),
        (
            "def f():\n    from gptlib.checks.verdict import passed\n    return passed",
            "imports `gptlib.checks.verdict",
        ),
        ("import gptlib\ndef f():\n    return gptlib.checks.tokens_and_batches", "uses `gptlib.checks`"),
        ("def f():\n    return f.__globals__", "uses `.__globals__`"),
        ("def f():\n    import sys\n    return sys.modules", "uses `sys.modules`"),
        ("def f():\n    return eval('1')", "uses `eval`"),
        ("def f(o, n):\n    return getattr(o, n)", "computed attribute name"),
        ("def f(o):\n    return getattr(o, '__code__')", "uses `getattr(..., '__code__')`"),
        ("import torch\ndef f():\n    torch.equal = lambda *a: True", "changes `torch.equal`"),
        ("import math\ndef f():\n    setattr(math, 'isclose', None)", "changes `math.isclose`"),
        ("def f(e):\n    return e.__traceback__.tb_frame.f_back", "uses `.tb_frame`"),
        ("def f(m):\n    m.__class__ = object", "changes `.__class__`"),
        ("import gc\ndef f():\n    return gc", "imports `gc`"),
        ("import torch\ndef f(p):\n    return torch.load(p)", "uses `torch.load`"),
        ("import os\ndef f():\n    return os.sys.modules", "uses `os.sys`"),
        (
            "import _posixsubprocess\ndef f():\n    return _posixsubprocess.fork_exec",
            "imports `_posixsubprocess`",
        ),
    ],
)
def test_screening_refuses_reaching_into_the_grader(source, words):
    _, code = _code(("f",), source)
    assert any(words in r for r in code.refused), code.refused


def test_screening_lets_ordinary_code_through():
    source = (
        "import math\nimport torch\nimport torch.nn as nn\nfrom torch.nn import functional as F\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n"
        "        for i in range(n):\n"
        "            setattr(self, f'layer{i}', nn.Linear(2, 2))\n"
        "        self.scale = 1 / math.sqrt(2)\n"
        "    def forward(self, x):\n"
        "        print(type(self).__name__, x.shape)\n"
        "        return F.softmax(getattr(self, 'layer0')(x) * self.scale, dim=-1)\n"
    )
    _, code = _code(("Net",), source)
    assert code.refused == [] and code.copied == []


def test_handing_in_gptlib_is_not_the_learners_work():
    _, code = _code(("get_batch",), "from gptlib.data import get_batch")
    assert code.copied and "gptlib.data.get_batch" in code.copied[0]
    _, code = _code(
        ("CausalSelfAttention",),
        "import gptlib\nclass CausalSelfAttention(gptlib.CausalSelfAttention):\n    pass",
    )
    assert code.copied and "gptlib.CausalSelfAttention" in code.copied[0]
    _, code = _code(
        ("Block",), "from gptlib import CausalSelfAttention\nclass Block:\n    attn = CausalSelfAttention"
    )
    assert code.copied == []  # earlier parts come from gptlib: that is the course's design


# --- reports (no processes) --------------------------------------------------------------------------


def _result(student: str, lesson: str, *exercises) -> SubmissionResult:
    return SubmissionResult(
        student, Path(f"{student}.ipynb"), lesson, [ExerciseResult(*e) for e in exercises]
    )


def test_reports_for_a_class_of_two_lessons():
    a = _result(
        "ann",
        "00_x",
        ("e1", 2, 2, "passed", "e1: passed — fine"),
        ("e2", 0, 3, "failed", "[e2] <b>bad</b> | x", "d"),
    )
    b = _result("ann", "02_y", ("e3", 0, 1, "not attempted", "[e3] not done yet"))
    c = _result("a/b c", "02_y", ("e3", 1, 1, "passed", "e3: passed"))
    rows = list(csv.reader(scores_csv([a, b, c]).splitlines()))
    assert rows[0] == ["student", "lesson", "e1", "e2", "e3", "total", "max", "submission", "flags"]
    assert rows[1][:7] == ["ann", "00_x", "2", "0", "", "2", "5"] and rows[2][:7] == [
        "ann",
        "02_y",
        "",
        "",
        "0",
        "0",
        "1",
    ]
    assert feedback_names([a, b, c]) == ["ann-00_x", "ann-02_y", "a_b_c"]
    md = feedback_markdown(a)
    assert "**Score: 2 / 5**" in md and "| `e2` | 0 / 3 | failed: <b>bad</b> \\| x |" in md
    assert "```text\n[e2] <b>bad</b> | x\n```" in md  # the check's words, whole
    page = feedback_html(a)
    assert "&lt;b&gt;bad&lt;/b&gt;" in page and "<b>bad</b>" not in page
    text = summary([a, b, c])
    assert "## 02_y: 2 submissions, mean 0.5 / 1" in text and "| `e3` | 1/2 (50%) | 1 | — |" in text
    assert "| `e2` | 0/1 (0%) | 0 | d (1) |" in text


def test_a_name_set_by_code_the_grader_skips_is_explained():
    parsed, code = _code(
        ("f",), "VOCAB = sorted(set('hello'))", "def f(s):\n    return [VOCAB.index(c) for c in s]"
    )
    assert code.not_run == {"VOCAB": (0, 1)}
    note = _name_note("[f] f('a') raised NameError: name 'VOCAB' is not defined (at ...)", code.not_run)
    assert "`VOCAB` is set in cell 1, line 1, by a statement the grader does not run" in note
    assert _name_note("[f] wrong value", code.not_run) == ""


def test_a_functions_own_locals_pull_in_nothing():
    """From lesson 05: `V` is a local of the function and also a top-level name built from a statement the
    grader skips; only names the function really reads from the module count (Python's scoping rules)."""
    parsed, code = _code(
        ("count", "Model"),
        "tok = make_tokenizer()\nV = tok.vocab_size\nW = 4 * 2",
        "def count(vocab_size):\n    V = vocab_size\n    return sum(V * k for k in range(W))",
        "import torch.nn as nn\nclass Model(nn.Module):\n    size = W\n    def f(self, _):\n        return [_ for _ in range(3)]",
    )
    names = sorted(getattr(parsed.trees[c].body[i], "name", None) or k or "W" for c, i, k in code.segments)
    assert names == ["Model", "W", "count", "nn"]
    _, code = _code(("f",), "tok = make()\nV = tok.size", "def f():\n    return V")
    assert code.segments == [(1, 0, None)] and code.not_run == {"V": (0, 2)}  # V's value needs tok: skipped
