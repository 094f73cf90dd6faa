"""gptlib-course start: the learner's own copy of the lessons, never overwriting their work, opened in JupyterLab.
And where the installed course's notebooks are found (here, a clone: lessons/ and solutions/ beside gptlib/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gptlib.course import start as start_module
from gptlib.course.__main__ import main
from gptlib.course.catalog import find_solutions
from gptlib.course.start import copy_lessons, notebooks_folder

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.name for p in (ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))


def test_the_notebooks_are_found_beside_the_package_in_a_clone():
    assert notebooks_folder("lessons") == ROOT / "lessons"
    assert notebooks_folder("solutions") == ROOT / "solutions"
    with pytest.raises(ValueError, match="lessons' or 'solutions'"):
        notebooks_folder("docs")


def test_inside_the_package_comes_first_and_a_missing_course_is_a_clear_error(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "gptlib"
    (package / "lessons").mkdir(parents=True)
    monkeypatch.setattr(start_module, "PACKAGE", package)
    with pytest.raises(FileNotFoundError, match="reinstall the course"):
        notebooks_folder("lessons")
    (package / "lessons" / "00_x.ipynb").write_text("{}")
    assert notebooks_folder("lessons") == package / "lessons"


def test_start_copies_every_lesson_and_keeps_what_is_already_there(tmp_path, capsys):
    dest = tmp_path / "my course"
    assert main(["start", str(dest), "--no-open"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == LESSONS
    for name in LESSONS:
        assert (dest / name).read_bytes() == (ROOT / "lessons" / name).read_bytes()
    assert f"copied {len(LESSONS)} lessons into {dest}" in capsys.readouterr().out

    mine = dest / LESSONS[2]
    mine.write_text("my work", encoding="utf-8")
    (dest / LESSONS[0]).unlink()
    copied, kept = copy_lessons(dest)
    assert copied == [dest / LESSONS[0]]
    assert mine in kept and len(kept) == len(LESSONS) - 1
    assert mine.read_text(encoding="utf-8") == "my work"
    assert main(["start", str(dest), "--no-open"]) == 0
    out = capsys.readouterr().out
    assert f"kept {mine}: it is already there (your work is never overwritten)" in out
    assert "copied" not in out and mine.read_text(encoding="utf-8") == "my work"


def test_start_defaults_to_a_new_folder_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["start", "--no-open"]) == 0
    assert sorted(p.name for p in (tmp_path / "gptlib-lessons").iterdir()) == LESSONS


def test_start_opens_jupyterlab_in_the_folder(tmp_path, monkeypatch):
    from jupyterlab.labapp import LabApp

    calls = []
    monkeypatch.setattr(LabApp, "launch_instance", classmethod(lambda cls, argv=None: calls.append(argv)))
    assert main(["start", str(tmp_path / "c")]) == 0
    assert calls == [[f"--ServerApp.root_dir={(tmp_path / 'c').resolve()}"]]
    assert main(["start", str(tmp_path / "d"), "--port", "8890", "--no-browser"]) == 0  # JupyterLab's options
    assert calls[1] == [
        f"--ServerApp.root_dir={(tmp_path / 'd').resolve()}",
        "--port",
        "8890",
        "--no-browser",
    ]
    with pytest.raises(SystemExit):
        main(["build", "--port", "8890"])  # the other commands take no extra options


def test_start_without_jupyterlab_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jupyterlab.labapp", None)  # import fails
    assert main(["start", str(tmp_path / "c")]) == 1
    assert 'JupyterLab is not installed here: pip install "gptlib-course[course]"' in capsys.readouterr().out
    assert len(list((tmp_path / "c").iterdir())) == len(LESSONS), "the lessons are copied all the same"


def test_teacher_tools_find_the_installed_solutions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./solutions here
    assert find_solutions() == ROOT / "solutions"
    monkeypatch.setattr(start_module, "PACKAGE", tmp_path / "nowhere" / "gptlib")
    with pytest.raises(ValueError, match="pass --solutions DIR"):
        find_solutions()


def test_start_needs_none_of_the_teacher_tools(tmp_path):
    """A learner's install may lack what the teacher tools use (nbformat, the sandbox): start works without it."""
    code = (
        "import sys\n"
        "for name in ('nbformat', 'nbclient', 'gptlib.course.catalog', 'gptlib.course.grade'):\n"
        "    sys.modules[name] = None  # importing them fails\n"
        "from gptlib.course.__main__ import main\n"
        f"sys.exit(main(['start', {str(tmp_path / 'c')!r}, '--no-open']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "c").iterdir())) == len(LESSONS)
