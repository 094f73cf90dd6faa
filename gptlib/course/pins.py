"""The pinned versions (constraints.txt) that stored notebook outputs were made with, against the installed ones.

pyproject.toml declares ranges, so a learner's install fits beside other packages; the outputs that nbval
compares only hold with the exact versions they were stored with. `store` and the nbval run check them here.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

CONSTRAINTS = "constraints.txt"


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): 'PyYAML' and 'pyyaml', 'a_b' and 'a-b' agree."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """name -> version for each `name==version` line of a constraints file (comments and blanks skipped)."""
    pins = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}, line {n}: expected name==version, got {line!r}")
        pins[normalize(name.strip())] = version.strip()
    return pins


def find_constraints(start: Path) -> Path | None:
    """The constraints.txt in `start` or the nearest folder above it (the course's repository)."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / CONSTRAINTS).is_file():
            return folder / CONSTRAINTS
    return None


def version_mismatches(constraints: Path) -> list[str]:
    """One line per installed package whose version differs from its pin, e.g.
    'numpy: 2.3.0 installed, constraints.txt pins 2.4.6'. Pinned packages that are not installed are skipped
    (pins for another platform); local build labels are ignored (torch 2.13.0+cpu is 2.13.0)."""
    out = []
    for name, pinned in read_pins(constraints).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.split("+", 1)[0] != pinned:
            out.append(f"{name}: {installed} installed, {constraints.name} pins {pinned}")
    return out


def pins_problem(start: Path) -> str | None:
    """Why outputs made here would not be the stored ones (None when the installed versions are the pins)."""
    constraints = find_constraints(start)
    if constraints is None:
        return (
            f"no {CONSTRAINTS} in {Path(start).resolve()} or above it: outputs are stored in the course's "
            "repository, with the versions pinned there."
        )
    mismatches = version_mismatches(constraints)
    if not mismatches:
        return None
    return (
        f"stored notebook outputs are made with the versions pinned in {constraints}, and here\n  "
        + "\n  ".join(mismatches)
        + f'\nInstall the pins: python -m pip install -c {CONSTRAINTS} -e ".[dev]" (from {constraints.parent})'
    )
