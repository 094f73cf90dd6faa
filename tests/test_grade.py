"""The teacher's grader on real notebooks: a class of honest students graded in one batch with every attack.

One grading run (module fixture, through the command line, 2 jobs, HOME pointing at a temporary home that
holds a canary and a secret) grades honest students (their names sort both before and after every attack),
one submission per class of attack from issue 13, symbolic links, a FIFO, malformed notebooks and file names
that look like spreadsheet formulas. Each test then asserts about one of them: each attack scores 0 on the
exercise it attacks and keeps the points of the others, the honest students get exactly their scores, and
nothing outside the results folder changed (the project tree, the venv's site-packages, the home).
Needs Linux with bubblewrap (the suite's CI machine has it); the rest are quick unit tests.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import re
import shutil
import site
import socket
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from gptlib.course import sandbox, submissions
from gptlib.course.__main__ import main
from gptlib.course.catalog import load_course

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
TIMEOUT = 20  # seconds per exercise in the grading run (an endless loop costs this much)
needs_sandbox = pytest.mark.skipif(
    sandbox.unavailable() is not None, reason=f"no sandbox: {sandbox.unavailable()}"
)


def _load_submissions():
    spec = importlib.util.spec_from_file_location(
        "grading_submissions", ROOT / "tests/grading/submissions.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


subs = _load_submissions()


def _digest(folder: Path, suffixes: tuple[str, ...] | None = None) -> dict[str, str]:
    """sha256 of every regular file below folder (links and FIFOs are not followed or read)."""
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", ".git", ".venv")]
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file() or (suffixes and p.suffix not in suffixes):
                continue
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file below folder: a new or changed file shows."""
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__"]  # the grader's own imports may compile modules
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def _feedback(text: str) -> dict[str, tuple[float, str, str]]:
    """exercise -> (points, status, message) from a Markdown feedback file."""
    out = {}
    for m in re.finditer(
        r"^## (\w+(?:\\_\w+)*) — ([\d.]+) / [\d.]+ points: ([^\n]+)\n\n(`{3,})text\n(.*?)\n\4$",
        text,
        re.M | re.S,
    ):
        out[m.group(1).replace("\\_", "_")] = (float(m.group(2)), m.group(3).replace("\\", ""), m.group(5))
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


HONEST = [f"{side}_{name}" for side in ("a", "z") for name in subs.HONEST]  # before and after every attack
LESSONS = sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Grade every submission once, through `python -m gptlib.course grade`."""
    if sandbox.unavailable() and not os.environ.get("GPTLIB_REQUIRE_SANDBOX"):
        pytest.skip(f"no sandbox here: {sandbox.unavailable()}")
    tmp = tmp_path_factory.mktemp("grading")
    solutions = tmp / "solutions"  # a copy, with a secret in it: attacks aim at it
    shutil.copytree(SOLUTIONS, solutions)
    (solutions / "secret.txt").write_text(subs.SECRET)
    home = tmp / "home"
    home.mkdir()
    (home / "canary.txt").write_text("canary")
    (home / "secret.txt").write_text(subs.SECRET)
    folder, out = tmp / "submissions", tmp / "out"
    folder.mkdir()
    listener = _Listener()
    places = subs.Places(
        solutions, out, home, folder / "a_full.ipynb", ROOT, Path(site.getsitepackages()[0]), listener.port
    )
    notebooks = {}
    for name in HONEST:
        notebooks[name] = subs.HONEST[name[2:]][0](solutions)
    for name, (_, make) in subs.ATTACKS.items():
        notebooks[f"m_{name}"] = make(solutions, places)
    for lesson in LESSONS:
        notebooks[f"solution_{lesson}"] = subs.load(solutions, lesson)
    no_forward = subs.load(solutions, "01_embeddings")
    cell = subs.cell_of(no_forward, "token_position_embedding")
    cell.source = cell.source.replace("def forward(", "def forwrd(")
    notebooks["n_no_forward"] = no_forward
    notebooks["m2_wrapped_attention"] = subs.wrapped_attention(solutions)
    for name in subs.FORMULA_NAMES:
        notebooks[name] = subs.load(solutions)
    for name, nb in notebooks.items():  # each one a little different, as real students' are
        nb.cells.append(nbformat.v4.new_markdown_cell(f"Handed in by {name}."))
        nbformat.write(nb, folder / f"{name}.ipynb")
    files = subs.make_files(folder, places)
    before = {
        "submissions": _digest(folder),
        "solutions": _digest(solutions),
        "home": _digest(home),
        "project": _digest(ROOT, (".py", ".ipynb", ".md", ".toml", ".txt", ".cfg", ".pth")),
        "site": _fingerprint(places.site_packages),
    }
    argv = ["grade", str(folder), "--out", str(out), "--solutions", str(solutions), "--jobs", "2",
            "--timeout", str(TIMEOUT), "--no-progress"]  # fmt: skip
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    start = time.monotonic()
    try:
        rc = main(argv)
    finally:
        os.environ["HOME"] = old_home or ""
        listener.close()
    seconds = time.monotonic() - start
    after = {
        "submissions": _digest(folder),
        "solutions": _digest(solutions),
        "home": _digest(home),
        "project": _digest(ROOT, (".py", ".ipynb", ".md", ".toml", ".txt", ".cfg", ".pth")),
        "site": _fingerprint(places.site_packages),
    }
    rows = {r["student"]: r for r in csv.DictReader((out / "scores.csv").open(encoding="utf-8"))}
    feedback = {p.stem: p.read_text(encoding="utf-8") for p in (out / "feedback").glob("*.md")}
    return {
        "rc": rc, "rows": rows, "feedback": feedback, "out": out, "tmp": tmp, "names": [*notebooks, *files],
        "files": files, "before": before, "after": after, "hits": listener.hits, "seconds": seconds,
    }  # fmt: skip


def row(run, name: str) -> dict:
    return run["rows"][name]


def fb(run, name: str) -> dict[str, tuple[float, str, str]]:
    return _feedback(run["feedback"][re.sub(r"[^\w.-]+", "_", name).strip("._")])


# --- the honest class ----------------------------------------------------------------------------------------


@needs_sandbox
def test_every_submission_has_a_row_and_the_run_finished(run):
    assert run["rc"] == 0, "no grader failures"
    names = ["'" + n if n in subs.FORMULA_NAMES else n for n in run["names"]]
    assert sorted(run["rows"]) == sorted(names)
    assert run["seconds"] < 900


@needs_sandbox
@pytest.mark.parametrize("name", HONEST)
def test_honest_students_get_exactly_their_scores(run, name):
    r = row(run, name)
    want = subs.HONEST[name[2:]][1]
    assert {e: r[e] for e in want} == {e: str(p) for e, p in want.items()}, fb(run, name)
    assert r["total"] == str(sum(want.values())) and r["max"] == "7"
    assert r["flags"] == "", r["flags"]


@needs_sandbox
def test_every_lessons_solution_gets_full_marks(run):
    solved = {n: r for n, r in run["rows"].items() if n.startswith("solution_")}
    assert len(solved) == len(LESSONS) >= 10
    for name, r in solved.items():
        assert r["lesson"] == name.removeprefix("solution_")
        assert r["total"] == r["max"] and float(r["max"]) > 0, (name, run["feedback"][name])
        assert r["flags"] == "", r["flags"]


@needs_sandbox
def test_a_classic_mistake_loses_exactly_that_exercise_with_the_checks_words(run):
    points, status, message = fb(run, "a_bits")["unigram_entropy"]
    assert (points, status) == (0, "failed") and message.startswith("[unigram_entropy] ")
    assert 'show_hints("unigram_entropy")' in message


@needs_sandbox
def test_a_class_without_forward_is_told_so_not_to_replace_raise(run):
    points, status, message = fb(run, "n_no_forward")["token_position_embedding"]
    assert (points, status) == (0, "failed")
    assert "has no forward method" in message and "NotImplementedError" not in message


# --- every attack ------------------------------------------------------------------------------------------------

GRADED_AS_RETURNED = "returned 0.0000, expected 1.2130"  # what it really returned
EXPECT = {  # attack -> words its attacked exercise's message must hold
    "lying_tensor": "returned a Liar, not a tensor",
    "lying_int_and_str": "expected the int 38",
    "lying_float": "returned a Close; expected a float",
    "frames_through_stdlib": GRADED_AS_RETURNED,
    "definition_time_code": GRADED_AS_RETURNED,
    "sigalrm_handler": GRADED_AS_RETURNED,
    "patch_and_restore": GRADED_AS_RETURNED,
    "torch_file_writes": GRADED_AS_RETURNED,  # every write refused (the tree's digests say so too)
    "kill_classmates": GRADED_AS_RETURNED,  # no classmate in sight (their scores say so too)
    "fake_success": "returned 1.0000; the entropy of the token frequencies is 1.2130",
    "torch_file_reads": "FileNotFoundError(2, 'No such file or directory')"
    * 5,  # none of the five exists there
    "memory_hog": "can't allocate memory",
    "forged_feedback": "raised ValueError: ````",
    "copy_the_reference": "gptlib.data.get_batch is not available while this exercise is graded",
    "course_code_by_getattr": "no finished get_batch in here",
    "course_checks_reference": "gptlib.tokenizer.CharTokenizer is not available while this exercise is graded",
    "escape_and_sleep": "timed out",
    "infinite_loop": "timed out",
    "exit_mid_check": "ended the process",
    "forge_verdict": "stopped answering properly",
    "fork_bomb": "BlockingIOError",
    "network": "Error",
    "fill_the_disk": "MemoryError: wrote",
    "thread_forging_answers": "not graded",
}


@needs_sandbox
@pytest.mark.parametrize("attack", sorted(subs.ATTACKS))
def test_an_attack_scores_zero_and_the_rest_of_its_notebook_keeps_its_points(run, attack):
    target = subs.ATTACKS[attack][0]
    r, feedback = row(run, f"m_{attack}"), fb(run, f"m_{attack}")
    points, status, message = feedback[target]
    assert r[target] == "0" and points == 0 and status in ("failed", "timed out", "not graded"), (
        status,
        message,
    )
    assert EXPECT.get(attack, "") in message, message
    assert {e: r[e] for e in subs.FULL if e != target} == {
        e: str(p) for e, p in subs.FULL.items() if e != target
    }
    assert "grader problem" not in r["flags"], r["flags"]


@needs_sandbox
def test_gptlibs_finished_attention_wrapped_in_the_students_class_scores_zero(run):
    r, feedback = row(run, "m2_wrapped_attention"), fb(run, "m2_wrapped_attention")
    points, status, message = feedback["attention"]
    assert (r["attention"], points, status) == ("0", 0, "failed"), message
    assert "gptlib.attention.CausalSelfAttention is not available while this exercise is graded" in message
    assert {e: r[e] for e in subs.FULL_02 if e != "attention"} == {
        e: str(p) for e, p in subs.FULL_02.items() if e != "attention"
    }
    assert r["flags"] == "", r["flags"]


@needs_sandbox
def test_a_timeout_says_timed_out(run):
    _, status, message = fb(run, "m_infinite_loop")["unigram_entropy"]
    assert status == "timed out" and f"within {TIMEOUT} s" in message


@needs_sandbox
def test_the_fill_stopped_at_the_private_tmp_limit(run):
    _, _, message = fb(run, "m_fill_the_disk")["unigram_entropy"]
    written = int(re.search(r"wrote (\d+) MB", message).group(1))
    assert written <= sandbox.Limits().disk >> 20


SANITISED = {  # malformed notebooks that can still be read: what their row says instead
    "nbgrader_metadata_is_a_list": "its nbgrader metadata is a list (ignored)",
    "nul_and_deep_python": "cannot tell which lesson",
}


@needs_sandbox
def test_files_that_are_not_notebooks_are_flagged_rows_of_zero(run):
    for name, kind in run["files"].items():
        r = row(run, name)
        assert r["total"] == "0", (name, r)
        assert SANITISED.get(name, "could not read this notebook") in r["flags"], (name, r)
        if kind == "link":
            assert "symbolic link" in r["flags"]
        if kind == "fifo":
            assert "not a regular file" in r["flags"]
    assert "lone surrogate" in row(run, "lone_surrogate")["flags"]
    assert "nested too deeply" in row(run, "deep_json")["flags"]


@needs_sandbox
def test_no_secret_and_no_classmates_work_in_any_output(run):
    victim = (run["tmp"] / "submissions" / "a_full.ipynb").read_text(encoding="utf-8")
    marker = next(ln for ln in victim.splitlines() if "sorted(set(text))" in ln).strip()
    for path in run["out"].rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert subs.SECRET not in text, path
            assert "root:x:0:0" not in text, path
            assert marker not in text, path


@needs_sandbox
def test_nothing_outside_the_results_folder_changed(run):
    for what in ("submissions", "solutions", "home", "project", "site"):
        assert run["before"][what] == run["after"][what], what
    assert sorted(p.name for p in run["out"].iterdir()) == ["feedback", "scores.csv", "summary.md"]
    assert sorted(p.name for p in run["tmp"].iterdir()) == ["home", "out", "solutions", "submissions"]


@needs_sandbox
def test_no_connection_reached_the_network(run):
    assert run["hits"] == []


@needs_sandbox
def test_forged_feedback_stays_inside_its_code_block(run):
    text = run["feedback"]["m_forged_feedback"]
    outside, fence = [], None
    for line in text.splitlines():
        if fence is None and re.match(r"^`{3,}", line):
            fence = re.match(r"^`+", line).group(0)
        elif fence is not None and line == fence:
            fence = None
        elif fence is None:
            outside.append(line)
    assert [ln for ln in outside if ln.startswith("**Score")] == ["**Score: 5 / 7**"]
    assert not any("<script>" in ln for ln in outside)
    assert "<script>alert(1)</script>" in text  # quoted, inside the block
    markdown_it = pytest.importorskip("markdown_it")  # as a Markdown renderer shows it (CommonMark + tables)
    page = markdown_it.MarkdownIt("commonmark").enable("table").render(text)
    assert page.count("<strong>Score") == 1 and "<script>" not in page and "&lt;script&gt;" in page


@needs_sandbox
def test_formula_like_names_are_text_in_scores_csv(run):
    raw = (run["out"] / "scores.csv").read_text(encoding="utf-8")
    for name in subs.FORMULA_NAMES:
        assert "'" + name in run["rows"], name
        assert row(run, "'" + name)["total"] == "7"
    for line in csv.reader(raw.splitlines()):
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in line), line


def test_the_threat_table_names_every_attack_and_only_tests_that_exist():
    """docs/teachers.md's threat model: every attack of tests/grading/submissions.py has its row, and every
    test a row names is in this file or the file it names."""
    text = (ROOT / "docs/teachers.md").read_text(encoding="utf-8")
    table = text[text.index("### The threat model") : text.index("**What is not protected.**")]
    named = set(re.findall(r"`(\w+)`", table))
    assert set(subs.ATTACKS) <= named, set(subs.ATTACKS) - named
    tests = {n for n in named if n.startswith("test_")}
    here = set(re.findall(r"^def (test_\w+)", Path(__file__).read_text(encoding="utf-8"), re.M))
    for path in re.findall(r"`(tests/test_\w+\.py)`", table):
        here |= set(re.findall(r"^def (test_\w+)", (ROOT / path).read_text(encoding="utf-8"), re.M))
    assert len(tests) >= 15 and tests <= here, tests - here


# --- infrastructure failures: flagged and graded again, never the student's fault -------------------------------


def _exercise_job(lesson: str, exercise: str, source: str | None = None, timeout: float = 30) -> dict:
    from gptlib.course.extract import exercise_code, parse_notebook
    from gptlib.course.grade import _job

    course = load_course(SOLUTIONS)
    ex = next(e for e in course[lesson].exercises if e.id == exercise)
    nb = nbformat.read(SOLUTIONS / f"{lesson}.ipynb", as_version=4)
    if source is not None:
        subs.cell_of(nb, exercise).source = source
    parsed = parse_notebook(nb)
    return _job(parsed, ex, exercise_code(parsed, ex.defines).segments, timeout)


@needs_sandbox
def test_a_worker_killed_from_outside_is_graded_again_and_flagged(tmp_path):
    from gptlib.course.grade import Machinery, run_exercise

    slow = (
        "import time\n\ndef unigram_entropy(data, vocab_size):\n    time.sleep(2)\n"
        "    counts = torch.bincount(data, minlength=vocab_size).double()\n    p = counts / counts.sum()\n"
        "    p = p[p > 0]\n    return float(-(p * p.log()).sum())\n"
    )
    job = _exercise_job(subs.LESSON, "unigram_entropy", slow)
    m = Machinery(tmp_path, sandbox.Limits(timeout=60), unsafe=False)
    try:
        m.sandbox.spawn("unigram_entropy", m.limits).finish()  # the exercise's sandbox is up
        (zygote,) = m.sandbox._zygotes.values()
        killer = threading.Timer(1.0, lambda: os.killpg(zygote.proc.pid, 9))  # the sandbox dies mid-check
        killer.start()
        verdict, notes = run_exercise(m, job)
        killer.join()
    finally:
        m.close()
    assert verdict["status"] == "passed", verdict
    assert notes and "graded again" in notes[0]
    assert any("restarted" in e for e in m.sandbox.events)


@needs_sandbox
def test_a_check_server_that_dies_is_restarted_and_the_exercise_graded_again(tmp_path):
    from gptlib.course.grade import Machinery, run_exercise

    job = _exercise_job(subs.LESSON, "unigram_entropy")
    m = Machinery(tmp_path, sandbox.Limits(timeout=60), unsafe=False)
    try:
        os.killpg(m.checks().proc.pid, 9)
        m.checks().proc.wait()
        verdict, _ = run_exercise(m, job)
    finally:
        m.close()
    assert verdict["status"] == "passed", verdict
    assert any("check server" in e for e in m.sandbox.events)


@needs_sandbox
def test_without_nested_namespaces_each_exercise_gets_a_bubblewrap_of_its_own(tmp_path):
    """The fallback where the kernel refuses namespaces inside the sandbox: same worker, same answers."""
    from gptlib.course.grade import Machinery
    from gptlib.course.view import answers

    job = _exercise_job(subs.LESSON, "unigram_entropy")
    m = Machinery(tmp_path, sandbox.Limits(timeout=60), unsafe=False)
    try:
        worker = m.sandbox._spawn_single(answers("unigram_entropy"), m.limits)
        verdict = m.checks().run(job, worker.channel, 300)
        report = worker.finish()
    finally:
        m.close()
    assert verdict["status"] == "passed", verdict
    assert report["killed"] is True


def test_without_bubblewrap_grading_refuses_unless_unsafe(tmp_path, monkeypatch, capsys):
    from gptlib.course.grade import Machinery

    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    sandbox.unavailable.cache_clear()
    try:
        assert "bubblewrap" in (sandbox.unavailable() or "")
        with pytest.raises(sandbox.SandboxUnavailable, match="--unsafe"):
            Machinery(tmp_path, sandbox.Limits(), unsafe=False)
        folder, out = (
            tmp_path / "submissions",
            tmp_path / "out",
        )  # the command: refuses, says why, grades nothing
        folder.mkdir()
        nbformat.write(subs.solved(SOLUTIONS), folder / "ann.ipynb")
        rc = main(["grade", str(folder), "--out", str(out), "--solutions", str(SOLUTIONS), "--no-progress"])
        said = capsys.readouterr().err
        assert (
            rc == 2 and "cannot grade safely here: bubblewrap is not installed" in said and "--unsafe" in said
        )
        assert not (out / "scores.csv").exists() or "ann" not in (out / "scores.csv").read_text()
        m = Machinery(tmp_path, sandbox.Limits(timeout=60), unsafe=True)
        try:
            from gptlib.course.grade import run_exercise

            job = _exercise_job(subs.LESSON, "unigram_entropy")
            verdict, _ = run_exercise(m, job)
        finally:
            m.close()
        assert verdict["status"] == "passed", verdict
    finally:
        sandbox.unavailable.cache_clear()


# --- the sandbox's pieces ----------------------------------------------------------------------------------------


def test_the_view_withholds_the_exercises_answer_and_keeps_the_rest(tmp_path):
    import subprocess

    from gptlib.course.view import answers, build_view

    build_view(tmp_path, answers("block"))
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import torch\n"
        "from gptlib import Block, CausalSelfAttention, MLP, GPTConfig\n"
        "from gptlib.checks import learner, builders\n"
        "cfg = GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=8)\n"
        "print(CausalSelfAttention(cfg)(torch.zeros(1, 3, 8)).shape, MLP(cfg)(torch.zeros(1, 3, 8)).shape)\n"
        "for use in (lambda: Block(cfg), lambda: Block.forward, lambda: __import__('gptlib.model').model.GPT(cfg)):\n"
        "    try:\n        use()\n    except ImportError as e:\n        print('refused:', e)\n"
        "for name in ('gptlib.checks.engine', 'gptlib.checks.tokens_and_batches', 'gptlib.course.grade'):\n"
        "    try:\n        __import__(name)\n    except ImportError:\n        print('absent:', name)\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torch.Size([1, 3, 8]) torch.Size([1, 3, 8])" in done.stdout  # earlier parts work
    assert done.stdout.count("refused: gptlib.block.Block is not available") == 3, (
        done.stdout
    )  # GPT builds Blocks
    assert done.stdout.count("absent:") == 3, done.stdout
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py")}
    assert {"gptlib/attention.py", "gptlib/checks/learner.py", "gptlib/checks/builders.py"} <= files
    assert not {"gptlib/checks/engine.py", "gptlib/course/grade.py", "gptlib/course/checker.py"} & files
    block = (tmp_path / "gptlib/block.py").read_text()
    assert "def forward" not in block and "raise ImportError" in block
    (compiled,) = (tmp_path / "gptlib/__pycache__").glob(
        "block.*.pyc"
    )  # compiled from the stub, not the original
    assert b"forward" not in compiled.read_bytes()


def _wheel_install(prefix: Path) -> Path:
    """gptlib as a wheel installs it into `prefix`'s site-packages: the course's notebooks inside the package
    (gptlib/solutions, gptlib/lessons), each holding the secret."""
    package = prefix / "lib/python3.11/site-packages/gptlib"
    shutil.copytree(ROOT / "gptlib", package, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("solutions", "lessons"):
        (package / folder).mkdir()
        (package / folder / "__init__.py").write_text(f"SECRET = {subs.SECRET!r}\n")
        for nb in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"):
            (package / folder / nb.name).write_text(nb.read_text(encoding="utf-8") + subs.SECRET)
    return package


def test_a_wheels_notebooks_are_neither_in_the_view_nor_visible_in_the_sandbox(tmp_path, monkeypatch):
    """A wheel puts the solutions inside the package: the worker's copy leaves them out (and the hints), and
    the installed package itself is covered by an empty folder where the sandbox mounts site-packages."""
    from gptlib.course.view import answers, build_view

    package = _wheel_install(tmp_path / "venv")
    view = build_view(tmp_path / "view", answers("attention"), package=package)
    copied = {p.relative_to(view / "gptlib").as_posix() for p in (view / "gptlib").rglob("*") if p.is_file()}
    assert not [p for p in copied if p.startswith(("solutions/", "lessons/", "checks/hints/"))], copied
    assert not [p for p in copied if p.endswith((".ipynb", ".md"))], copied
    assert {"corpora/pydoc.txt.gz", "model.py", "checks/learner.py"} <= copied  # what the worker needs stays
    for p in (view / "gptlib").rglob("*"):
        assert not p.is_file() or subs.SECRET.encode() not in p.read_bytes(), p
    roots = [*sandbox._python_roots(), str(tmp_path / "venv")]
    monkeypatch.setattr(sandbox, "_python_roots", lambda: roots)
    argv = sandbox.bwrap_command(view, tmp_path / "empty", 1 << 20, ["python"])
    binds = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == "--ro-bind"]
    mounted_at = [dest for _, dest in binds]
    assert (str(tmp_path / "empty"), str(package)) in binds  # the installed copy covered ...
    assert mounted_at.index(str(package)) > mounted_at.index(str(tmp_path / "venv"))  # ... after its venv


@needs_sandbox
def test_code_in_the_sandbox_finds_no_notebook_of_a_wheel_install(tmp_path):
    """Run in the real sandbox with the view built from a wheel-like install: no course notebook anywhere it can
    look (the view, the Python, the whole file system it sees), and the package's notebook folders do not import."""
    import subprocess

    from gptlib.course.view import answers, build_view

    view = build_view(tmp_path / "view", answers("attention"), package=_wheel_install(tmp_path / "venv"))
    (view / "empty").mkdir()
    code = (
        "import importlib, importlib.resources, os, sys\n"
        "sys.path.insert(0, '/opt/gptlib-view')\n"
        "import gptlib\n"
        "found = []\n"
        f"names = {sorted(p.name for p in SOLUTIONS.glob('[0-9][0-9]_*.ipynb'))!r}\n"
        "for top in ('/opt/gptlib-view', sys.prefix, '/'):\n"
        "    for d, dirs, files in os.walk(top):\n"
        "        dirs[:] = [x for x in dirs if not (top == '/' and x in ('proc', 'sys', 'dev'))]\n"
        "        found += [os.path.join(d, f) for f in files if f in names or ('gptlib' in d and\n"
        "                  (f.endswith(('.ipynb', '.md')) or 'solutions' in d or 'lessons' in d))]\n"
        "for name in ('gptlib.solutions', 'gptlib.lessons'):\n"
        "    try:\n        found.append(importlib.import_module(name).SECRET)\n"
        "    except ImportError:\n        pass\n"
        "print('gptlib at', gptlib.__file__, 'found:', found)\n"
    )
    argv = sandbox.bwrap_command(view, view / "empty", 1 << 20, [sys.executable, "-I", "-c", code])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "gptlib at /opt/gptlib-view/gptlib/__init__.py found: []" in done.stdout, done.stdout
    assert subs.SECRET not in done.stdout + done.stderr


def test_every_exercise_has_its_answers_listed_and_they_exist():
    from importlib import import_module

    from gptlib.course.view import ANSWERS

    exercises = {e.id for lesson in load_course(SOLUTIONS).values() for e in lesson.exercises}
    assert exercises == set(ANSWERS), exercises ^ set(ANSWERS)
    for dotted in {d for names in ANSWERS.values() for d in names}:
        module, name = dotted.rsplit(".", 1)
        assert hasattr(import_module(module), name), dotted


def test_the_sandbox_mounts_only_the_system_python_and_the_view(tmp_path):
    view = tmp_path / "view"
    view.mkdir()
    argv = sandbox.bwrap_command(view, tmp_path, 1 << 20, ["python"])
    mounted = {argv[i + 2] for i, a in enumerate(argv) if a in ("--ro-bind", "--bind")}
    allowed = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt/gptlib-view"}
    allowed |= {p for p in mounted if p.startswith("/etc/ld.so") or p == "/etc/localtime"}
    allowed |= set(sandbox._python_roots()) | set(sandbox._gptlib_copies(sandbox._python_roots()))
    assert mounted <= allowed, mounted - allowed
    assert "--bind" not in argv  # nothing writable but the private /tmp
    for private in (Path.home(), ROOT, ROOT / "gptlib", ROOT / "solutions", tmp_path):
        assert not any(private == Path(m) or private.is_relative_to(m) for m in mounted), private
    for flag in (
        "--unshare-net",
        "--unshare-pid",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"


def test_the_seccomp_program_refuses_processes_but_not_threads():
    from gptlib.course.confine import seccomp_program

    prog = seccomp_program("x86_64")
    assert prog is not None and seccomp_program("sparc") is None
    assert (0x15, 0, 1, 57) in prog and (
        0x45,
        0,
        1,
        0x10000,
    ) in prog  # fork refused, clone only with CLONE_THREAD


# --- reading submissions (no processes) ---------------------------------------------------------------------------


def test_reading_never_follows_a_link_or_opens_a_fifo(tmp_path):
    (tmp_path / "secret").write_text("secret")
    folder = tmp_path / "subs"
    (folder / "bob").mkdir(parents=True)
    (folder / "bob" / "x.ipynb").write_text("{}")
    os.symlink(tmp_path / "secret", folder / "eve.ipynb")
    os.symlink(tmp_path, folder / "mallory")
    os.mkfifo(folder / "pipe.ipynb")
    found = {s.student: s for s in submissions.collect([folder])}
    assert sorted(found) == ["bob", "eve", "mallory", "pipe"]
    assert submissions.read(found["bob"]) == b"{}"
    for name, words in (
        ("eve", "symbolic link"),
        ("mallory", "symbolic link"),
        ("pipe", "not a regular file"),
    ):
        with pytest.raises(submissions.Unreadable, match=words):
            submissions.read(found[name])
    # a folder replaced by a link after it was listed is not followed either
    shutil.rmtree(folder / "bob")
    os.symlink(tmp_path, folder / "bob")
    with pytest.raises(submissions.Unreadable, match="symbolic link"):
        submissions.read(found["bob"])


def test_reading_caps_the_bytes(tmp_path):
    (tmp_path / "big.ipynb").write_bytes(b" " * 2000)
    (sub,) = submissions.collect([tmp_path])
    with pytest.raises(submissions.Unreadable, match="larger than"):
        submissions.read(sub, max_bytes=1000)


@pytest.mark.parametrize("name", sorted(subs.MALFORMED))
def test_every_malformed_notebook_is_unreadable_or_sanitised(name):
    notes: list[str] = []
    try:
        nb = submissions.parse(subs.MALFORMED[name], notes)
    except submissions.Unreadable as e:
        assert str(e)
        return
    for cell in nb.cells:
        assert isinstance(cell.source, str) and isinstance(cell.metadata.get("nbgrader", {}), dict)
    if name == "nbgrader_metadata_is_a_list":
        assert any("nbgrader metadata is a list" in n for n in notes), notes


def test_parse_notes_metadata_of_the_wrong_type():
    notes: list[str] = []
    submissions.parse(subs.MALFORMED["nbgrader_metadata_is_a_list"], notes)
    assert len(notes) == 3 and "cell 1" in notes[0]


# --- reports (no processes) -----------------------------------------------------------------------------------------


def test_markdown_text_cannot_start_anything():
    from gptlib.course.report import md_block, md_text

    assert (
        md_text("**bold** <b>x</b> | `c` [l](u)\nnext") == r"\*\*bold\*\* \<b\>x\</b\> \| \`c\` \[l\](u) next"
    )
    block = md_block("a ```` b\n`````\nc")
    assert block[0] == "``````text" and block[-1] == "``````"


def test_csv_cells_that_look_like_formulas_are_text():
    from gptlib.course.report import csv_cell

    for bad in ("=1+1", "+1", "-1", "@A1", "\tx", "\rx"):
        assert csv_cell(bad) == "'" + bad
    assert csv_cell("alice") == "alice"


def test_html_feedback_escapes_everything_the_student_controls():
    from gptlib.course.grade import ExerciseResult, SubmissionResult
    from gptlib.course.report import feedback_html

    r = SubmissionResult(
        "<img src=x onerror=alert(1)>",
        Path("x.ipynb"),
        "00_x",
        [ExerciseResult("e", 0, 1, "failed", "</pre><script>x</script>")],
    )
    page = feedback_html(r)
    assert "<script>" not in page and "<img" not in page and "&lt;/pre&gt;&lt;script&gt;" in page


def test_the_same_name_twice_and_identical_files_are_flagged():
    from gptlib.course.grade import Read, _class_flags

    def read(student: str, digest: str | None) -> Read:
        return Read(
            submissions.Submission(student, Path(f"{student}/x.ipynb"), Path("."), ("x",)), digest=digest
        )

    flags = _class_flags(
        [read("ann", "1"), read("Ann", "2"), read("bob", "3"), read("cy", "3"), read("dee", None)]
    )
    assert "duplicate student name" in flags[0][0] and "duplicate student name" in flags[1][0]
    assert flags[2] == ["identical file to the submission of cy"] and flags[3] == [
        "identical file to the submission of bob"
    ]
    assert flags[4] == []


def test_feedback_names_are_safe_and_distinct():
    from gptlib.course.report import feedback_names

    assert feedback_names(["ann", "Ann", "a/b c", "../x", ""]) == ["ann", "Ann-2", "a_b_c", "x", "student"]
