"""Library and lessons point at each other: each module says which lesson teaches it, and that lesson exists."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTER = re.compile(r"lessons/(\d\d_\w+)\.ipynb")


def taught_in() -> dict[str, list[str]]:
    """Module path -> the lesson notebooks its docstring's 'Taught in' line names."""
    found = {}
    for path in sorted((ROOT / "gptlib").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        line = next((ln for ln in doc.splitlines() if ln.startswith("Taught in lesson")), None)
        if line is not None:
            found[str(path.relative_to(ROOT))] = POINTER.findall(line)
    return found


def test_every_taught_in_line_names_existing_lessons():
    pointers = taught_in()
    assert pointers, "no module docstring has a 'Taught in lesson NN: lessons/NN_name.ipynb.' line"
    for module, lessons in pointers.items():
        assert lessons, f"{module}: its 'Taught in' line names no lessons/NN_name.ipynb"
        for name in lessons:
            assert (ROOT / "lessons" / f"{name}.ipynb").is_file(), (
                f"{module} points at a missing lesson {name}"
            )
            assert (ROOT / "solutions" / f"{name}.ipynb").is_file(), (
                f"{module} points at a missing solution {name}"
            )


def test_every_lesson_is_named_by_the_module_it_teaches():
    named = {name for lessons in taught_in().values() for name in lessons}
    lessons = {p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")}
    assert lessons - named == set(), (
        f"lessons that no gptlib module's docstring points back to: {lessons - named}"
    )


def test_the_parts_of_the_model_are_taught_in_order():
    pointers = taught_in()
    order = ["embeddings", "attention", "mlp", "block", "head"]
    numbers = [int(pointers[f"gptlib/{m}.py"][0][:2]) for m in order]
    assert numbers == sorted(numbers), dict(zip(order, numbers, strict=True))


def test_the_readme_lesson_table_matches_the_notebooks():
    # The README's "your time" column repeats each notebook's own estimate: keep them equal.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d\d) \|.*\| (\d+) min[^|]*\|(?: [^|]+ \|){2}$", readme, re.M))
    lessons = sorted(p for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(rows) == [p.name[:2] for p in lessons], "the README's lesson table lists every lesson once"
    for path in lessons:
        header = json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"]
        minutes = re.search(r"Time:\*\* about (\d+) minutes", "".join(header)).group(1)
        assert rows[path.name[:2]] == minutes, (
            f"README says {rows[path.name[:2]]} min for {path.name}, it says {minutes}"
        )
