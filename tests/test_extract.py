"""What the grader takes from a notebook (no processes): only definitions, the last one winning, in an order that
defines each name before its users; and the quick parts of grading around it (lessons, folders, reports)."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest

from gptlib.course import submissions
from gptlib.course.__main__ import main
from gptlib.course.catalog import load_course
from gptlib.course.extract import cell_python, exercise_code, parse_notebook
from gptlib.course.grade import (
    ExerciseResult,
    Read,
    SubmissionResult,
    _name_note,
    check_out_dir,
    grade_submission,
)
from gptlib.course.report import feedback_html, feedback_markdown, scores_csv, summary

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"


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
    # math (used: alias 0 of its statement), SCALE and helper (used by f), the second f; never print, sys.exit,
    # the loop or model
    assert sorted(kept) == [(0, "Import", [0]), (2, "Assign", None), (3, "FunctionDef", None),
                            (4, "FunctionDef", None)]  # fmt: skip
    order = [parsed.trees[c].body[i] for c, i, _ in code.segments]
    assert [getattr(n, "name", None) for n in order if hasattr(n, "name")] == ["helper", "f"]
    assert "model" in parsed.not_run and code.missing == []


def test_an_import_keeps_only_the_names_used():
    parsed, code = _code(("f",), "from math import pi, tau, e as euler\ndef f():\n    return euler + pi")
    kept = {parsed.trees[c].body[i].names[j].name for c, i, k in code.segments if k is not None for j in k}
    assert kept == {"pi", "e"}  # tau is never imported


def test_a_class_base_defined_below_still_comes_first():
    parsed, code = _code(("Child",), "class Child(Base):\n    pass", "class Base:\n    pass")
    names = [parsed.trees[c].body[i].name for c, i, _ in code.segments]
    assert names == ["Base", "Child"]


def test_a_missing_or_unparsable_definition_is_not_found():
    _, code = _code(("f",), "def f(x:\n    return 1", "g = 1")
    assert code.missing == ["f"]


def test_cells_nested_too_deeply_or_with_null_bytes_are_skipped_not_fatal():
    parsed, code = _code(
        ("f",),
        "x = " + "(" * 5000 + ")" * 5000,
        "y = 1\x00",
        "z = " + "-" * 100000 + "1",
        "def f():\n    return 1",
    )
    assert sorted(parsed.unparsable) == [0, 1, 2] and code.missing == []


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
    names = sorted(
        getattr(parsed.trees[c].body[i], "name", None) or ("nn" if k else "W") for c, i, k in code.segments
    )
    assert names == ["Model", "W", "count", "nn"]
    _, code = _code(("f",), "tok = make()\nV = tok.size", "def f():\n    return V")
    assert code.segments == [(1, 0, None)] and code.not_run == {"V": (0, 2)}  # V's value needs tok: skipped


# --- around the extraction: lessons, folders -------------------------------------------------------------------


def _read(tmp_path: Path, nb: nbformat.NotebookNode) -> Read:
    path = tmp_path / "s.ipynb"
    nbformat.write(nb, path)
    (sub,) = submissions.collect([path])
    return Read(sub, submissions.parse(submissions.read(sub)))


def test_the_lesson_can_be_named_when_the_notebook_gives_no_clue(tmp_path):
    item = _read(tmp_path, _nb("x = 1"))
    lessons = load_course(SOLUTIONS)
    r = grade_submission(None, item, lessons, None)  # no exercise runs: no machinery needed
    assert r.lesson is None and "pass --lesson" in r.error
    r = grade_submission(None, item, lessons, "02_attention")
    assert r.lesson == "02_attention" and r.error is None
    assert [e.status for e in r.exercises] == ["not found"] * 4 and r.max_points == 10


def test_an_unreadable_notebook_is_a_row_of_zero(tmp_path):
    (tmp_path / "broken.ipynb").write_text("{ not json", encoding="utf-8")
    (sub,) = submissions.collect([tmp_path])
    with pytest.raises(submissions.Unreadable, match="not valid JSON"):
        submissions.parse(submissions.read(sub))
    r = grade_submission(
        None,
        Read(sub, error="could not read this notebook: it is not valid JSON"),
        load_course(SOLUTIONS),
        "00_tokens_and_batches",
    )
    assert r.total == 0 and [e.status for e in r.exercises] == ["not graded"] * 3


def test_output_folder_rules(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "a.ipynb").write_text("{}", encoding="utf-8")
    found = submissions.collect([folder])
    with pytest.raises(ValueError, match="contains the submission"):
        check_out_dir(tmp_path, found, [folder], force=True)
    with pytest.raises(ValueError, match="inside the submissions folder"):
        check_out_dir(folder / "out", found, [folder], force=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.csv").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="not empty"):
        check_out_dir(tmp_path / "out", found, [folder], force=False)
    check_out_dir(tmp_path / "out", found, [folder], force=True)
    assert main(["grade", str(folder), "--out", str(folder / "out"), "--solutions", str(SOLUTIONS)]) == 2


def test_submissions_are_found_per_student(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "lesson.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / "bob.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "bob-checkpoint.ipynb").write_text("{}", encoding="utf-8")
    assert [s.student for s in submissions.collect([tmp_path])] == ["alice", "bob"]
    with pytest.raises(ValueError, match="no such submission"):
        submissions.collect([tmp_path / "nobody.ipynb"])


# --- reports -----------------------------------------------------------------------------------------------------


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
    assert rows[1][:7] == ["ann", "00_x", "2", "0", "", "2", "5"]
    assert rows[2][:7] == ["ann", "02_y", "", "", "0", "0", "1"]
    md = feedback_markdown(a)
    assert "**Score: 2 / 5**" in md and r"| e2 | 0 / 3 | failed: \<b\>bad\</b\> \| x |" in md
    assert "```text\n[e2] <b>bad</b> | x\n```" in md  # the check's words, whole
    page = feedback_html(a)
    assert "&lt;b&gt;bad&lt;/b&gt;" in page and "<b>bad</b>" not in page
    text = summary([a, b, c])
    assert r"## 02\_y: 2 submissions, mean 0.5 / 1" in text and "| `e3` | 1/2 (50%) | 1 | — |" in text
    assert "| `e2` | 0/1 (0%) | 0 | d (1) |" in text


def test_results_are_on_disk_as_soon_as_each_submission_is_graded(tmp_path):
    from gptlib.course.report import Reports

    a = _result("ann", "00_x", ("e1", 2, 2, "passed", "fine"))
    b = _result("bob", "00_x", ("e1", 0, 2, "failed", "[e1] wrong"))
    reports = Reports(tmp_path, ["ann", "bob"])
    reports.add(1, b)  # bob finished first; ann's grading could still crash the run
    rows = list(csv.DictReader((tmp_path / "scores.csv").open(encoding="utf-8")))
    assert [r["student"] for r in rows] == ["bob"] and (tmp_path / "feedback" / "bob.md").exists()
    assert "1 submission, mean 0.0 / 2" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    reports.add(0, a)
    rows = list(csv.DictReader((tmp_path / "scores.csv").open(encoding="utf-8")))
    assert [r["student"] for r in rows] == ["ann", "bob"]  # input order
    assert not list(tmp_path.rglob("*.tmp"))
