"""Stored outputs hold only with the pinned versions: `store` refuses to store, naming each package and both
versions, when what is installed differs from constraints.txt (--ignore-pins overrides)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

import gptlib.course.execute
from gptlib.course.__main__ import main
from gptlib.course.pins import find_constraints, pins_problem, read_pins, version_mismatches

ROOT = Path(__file__).resolve().parents[1]
PYTEST = metadata.version("pytest")


def _course(tmp_path: Path, constraints: str) -> Path:
    """A course folder with a constraints.txt and one (empty) solution notebook; returns the notebook."""
    (tmp_path / "constraints.txt").write_text(constraints, encoding="utf-8")
    (tmp_path / "solutions").mkdir()
    nb = tmp_path / "solutions" / "00_x.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n', encoding="utf-8")
    return nb


def test_read_pins_normalizes_names_and_skips_comments(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text(
        "# header\n\nPyYAML==6.0.4\nipython_pygments_lexers==1.1.1  # a comment\n", encoding="utf-8"
    )
    assert read_pins(path) == {"pyyaml": "6.0.4", "ipython-pygments-lexers": "1.1.1"}
    path.write_text("numpy>=2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: expected name==version"):
        read_pins(path)


def test_mismatches_name_the_package_and_both_versions(tmp_path):
    c = tmp_path / "constraints.txt"
    c.write_text(f"pytest=={PYTEST}\nnot-a-real-package-xyz==1.0\n", encoding="utf-8")
    assert version_mismatches(c) == [], "equal pins, and pins of packages not installed here, are fine"
    c.write_text("pytest==0.0.1\n", encoding="utf-8")
    assert version_mismatches(c) == [f"pytest: {PYTEST} installed, constraints.txt pins 0.0.1"]


def test_a_local_build_label_is_the_same_version(tmp_path, monkeypatch):
    monkeypatch.setattr(metadata, "version", lambda name: "2.13.0+cpu")
    c = tmp_path / "constraints.txt"
    c.write_text("torch==2.13.0\n", encoding="utf-8")
    assert version_mismatches(c) == []


def test_constraints_are_found_in_the_course_folder_above_the_notebook(tmp_path):
    nb = _course(tmp_path, f"pytest=={PYTEST}\n")
    assert find_constraints(nb.parent) == tmp_path / "constraints.txt"
    assert pins_problem(nb.parent) is None
    assert find_constraints(ROOT / "solutions") == ROOT / "constraints.txt"


def test_store_refuses_other_versions_and_says_which(tmp_path, monkeypatch, capsys):
    stored = []
    monkeypatch.setattr(gptlib.course.execute, "store", lambda nb, timeout: stored.append(nb) or 0.0)
    nb = _course(tmp_path, f"numpy==0.0.1\npytest=={PYTEST}\n")
    assert main(["store", str(nb)]) == 2
    err = capsys.readouterr().err
    assert f"numpy: {metadata.version('numpy')} installed, constraints.txt pins 0.0.1" in err
    assert "pytest" not in err.split("here")[1].split("Install")[0], "only the packages that differ"
    assert 'python -m pip install -c constraints.txt -e ".[dev]"' in err and "--ignore-pins" in err
    assert stored == []
    assert main(["store", str(nb), "--ignore-pins"]) == 0
    assert stored == [nb]


def test_store_refuses_outside_a_course_with_pins(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gptlib.course.execute, "store", lambda nb, timeout: 0.0)
    nb = _course(tmp_path, "")
    (tmp_path / "constraints.txt").unlink()
    assert find_constraints(nb.parent) is None, "a constraints.txt above the temp folder: remove it"
    assert "no constraints.txt in" in pins_problem(nb.parent)
    assert main(["store", str(nb)]) == 2
    assert "no constraints.txt in" in capsys.readouterr().err
