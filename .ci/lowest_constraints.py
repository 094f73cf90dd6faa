"""The lowest versions pyproject.toml declares, as a pip constraints file (pip has no lowest-resolution mode).

Every requirement of the package and of its extras becomes `name==lower_bound`; torch is the exception and
comes from constraints.txt (the one build CI installs). pip resolves everything else newest-first, so the
direct dependencies are at their lowest and the rest follows ("lowest-direct"):

    python .ci/lowest_constraints.py > lowest.txt
    python -m pip install -c lowest.txt -e ".[dev]"

Run it with the maintainers' venv (it needs gptlib and `packaging`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement

from gptlib.course.pins import normalize, read_pins

try:
    import tomllib  # novermin: Python 3.11+, with tomli below
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PINNED = ("torch",)  # one build to test with: its version comes from constraints.txt


def declared(pyproject: dict) -> list[Requirement]:
    """Every requirement of the package and of its extras, except the package's own extras."""
    project = pyproject["project"]
    own = normalize(project["name"])
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if normalize(r.name) != own]


def lower_bound(req: Requirement) -> str:
    """The version in the requirement's one `>=` clause; ValueError if it has none."""
    bounds = [s.version for s in req.specifier if s.operator == ">="]
    if len(bounds) != 1:
        raise ValueError(f"{req}: declare one lower bound (>=, the lowest version tested)")
    return bounds[0]


def lowest_constraints(pyproject: dict, pins: dict[str, str]) -> list[str]:
    """The constraint lines: each declared requirement at its lower bound, PINNED ones at their pin."""
    lines = []
    for req in declared(pyproject):
        name = normalize(req.name)
        version = pins[name] if name in PINNED else lower_bound(req)
        marker = f"; {req.marker}" if req.marker else ""
        lines.append(f"{name}=={version}{marker}")
    return lines


def main() -> int:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = read_pins(ROOT / "constraints.txt")
    print(
        "# The lowest versions pyproject.toml declares (torch: constraints.txt). Made by .ci/lowest_constraints.py"
    )
    print("\n".join(lowest_constraints(pyproject, pins)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
