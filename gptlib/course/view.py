"""The worker's gptlib for one lesson: the parts earlier lessons built, and nothing of the answers.

A student grading lesson 04 may build their Block from gptlib's attention and
MLP (lessons 02 and 03): that is how the course is built. They may not hand in
gptlib's own Block. So the sandbox does not show the worker the real gptlib:
it shows a copy made here, in which every module that a lesson from this one on
teaches (the "Taught in lesson NN" line of its docstring), every module that
imports one of those at its top, `gptlib.checks` and the grader are stubs that
raise ImportError with the reason. The originals are not in the copy at all,
not even compiled: withholding them is a boundary of the file system, not a
rule the student's code could walk around.
"""

from __future__ import annotations

import ast
import compileall
import re
import shutil
from pathlib import Path

import gptlib

TAUGHT = re.compile(r"^Taught in lessons? (.*)$", re.M)
WORKER_MODULES = ("__init__.py", "wire.py", "worker.py", "confine.py")  # gptlib.course's part in the sandbox
BOUNDARY_MODULES = ("gptlib.checks.learner", "gptlib.checks.builders")  # the learner side of the boundary
ALWAYS_WITHHELD = {"gptlib.checks": "the checks are", "gptlib.course": "the grader is"}
MOUNT = "/opt/gptlib-view"  # where the sandbox shows it (the folder that holds `gptlib/`)


def _module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _top_imports(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """gptlib modules imported by a module's top-level statements (what runs when it is imported)."""
    found = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            found |= {a.name for a in stmt.names if a.name.startswith("gptlib")}
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - stmt.level + 1]
                module = ".".join(base + ([stmt.module] if stmt.module else []))
            else:
                module = stmt.module or ""
            if module.startswith("gptlib"):
                found.add(module)
                found |= {f"{module}.{a.name}" for a in stmt.names}
    return found


def withheld(lesson: int, package: Path | None = None) -> dict[str, str]:
    """gptlib module -> why the worker grading `lesson` does not get it."""
    package = Path(package or Path(gptlib.__file__).resolve().parent)
    modules: dict[str, tuple[set[int], set[str]]] = {}
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name = _module_name(path, package)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree) or ""
        taught = {int(n) for m in TAUGHT.finditer(doc) for n in re.findall(r"\b(\d\d)\b", m.group(1))}
        modules[name] = (taught, _top_imports(tree, name, path.name == "__init__.py"))
    out: dict[str, str] = {}
    for name, (taught, _) in modules.items():
        if name in BOUNDARY_MODULES or name == "gptlib.checks":
            continue  # the boundary's learner side (no answers), in a package that imports nothing else
        if any(name == p or name.startswith(p + ".") for p in ALWAYS_WITHHELD):
            top = next(p for p in ALWAYS_WITHHELD if name == p or name.startswith(p + "."))
            out[name] = f"{ALWAYS_WITHHELD[top]} not part of graded code"
        elif taught and max(taught) >= lesson:
            out[name] = f"it is taught in lesson {max(taught):02d}: the finished answer"
    changed = True
    while changed:  # a module that imports a withheld one at its top cannot be imported either
        changed = False
        for name, (_, imports) in modules.items():
            if name == "gptlib" or name in out:
                continue
            bad = sorted(i for i in imports if i in out and i != name)
            if bad:
                out[name] = f"it imports {bad[0]}, which {out[bad[0]].removeprefix('it ')}"
                changed = True
    return out


def _message(name: str, lesson: int, why: str) -> str:
    text = f"{name} is not available while lesson {lesson:02d} is graded: {why}."
    if "not part of graded code" not in why:
        text += " Write your own; the parts earlier lessons built are yours to use."
    return text


def _stub(name: str, lesson: int, why: str) -> str:
    return f'"""Not available while lesson {lesson:02d} is graded."""\n\nraise ImportError({_message(name, lesson, why)!r})\n'


def _package_init(source: str, hidden: dict[str, str], lesson: int) -> str:
    """gptlib/__init__.py with the imports from withheld modules turned into a clear error on use."""
    tree = ast.parse(source)
    keep, gone = [], {}
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module in hidden:
            for a in stmt.names:
                gone[a.asname or a.name] = _message(
                    f"gptlib.{a.asname or a.name}", lesson, hidden[stmt.module]
                )
        else:
            keep.append(stmt)
    tree.body = keep
    return (
        ast.unparse(tree)
        + f"\n\n_WITHHELD = {gone!r}\n\n\ndef __getattr__(name):\n"
        + "    if name in _WITHHELD:\n        raise ImportError(_WITHHELD[name])\n"
        + "    raise AttributeError(f'module gptlib has no attribute {name!r}')\n"
    )


def build_view(dest: Path, lesson: int, package: Path | None = None) -> Path:
    """Write the view for `lesson` into `dest` (which gets `gptlib/`), compiled; return `dest`."""
    package = Path(package or Path(gptlib.__file__).resolve().parent)
    hidden = withheld(lesson, package)
    packages = {n for n in hidden if (package.parent / n.replace(".", "/")).is_dir()}
    root = Path(dest) / "gptlib"
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(package)
        target = root / rel
        owner = _module_name(path if path.suffix == ".py" else path.parent / "__init__.py", package)
        if rel.parts[0] == "course":  # of the grader, only what runs in the sandbox
            if len(rel.parts) == 2 and rel.name in WORKER_MODULES:
                _copy(path, target)
        elif owner == "gptlib.checks" and path.name == "__init__.py":  # the package, without the checks
            _write(
                target, '"""The checks are not part of graded code; only the learner boundary is here."""\n'
            )
        elif path.suffix == ".py" and owner in BOUNDARY_MODULES:
            _copy(path, target)
        elif any(owner == p or owner.startswith(p + ".") for p in packages):
            if path.name == "__init__.py" and owner in packages:  # a withheld package: its stub, nothing else
                _write(target, _stub(owner, lesson, hidden[owner]))
        elif owner == "gptlib" and path.name == "__init__.py":
            _write(target, _package_init(path.read_text(encoding="utf-8"), hidden, lesson))
        elif path.suffix == ".py" and owner in hidden:
            _write(target, _stub(owner, lesson, hidden[owner]))
        else:
            _copy(path, target)
    compileall.compile_dir(root, ddir=f"{MOUNT}/gptlib", quiet=1)
    return Path(dest)


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def _copy(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
