"""The install paths agree: ranges in pyproject.toml, pins in constraints.txt, the README, .ci/run, environment.yml.

Learners install ranges (beside whatever else they have); maintainers and CI install the exact versions the
stored notebook outputs were made with, from constraints.txt; CI also runs the library's tests on the lowest
versions the ranges allow (.ci/lowest_constraints.py).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from gptlib.course.pins import normalize, read_pins

try:
    import tomllib  # novermin: Python 3.11+, with tomli below
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
NAME = PROJECT["name"]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
PINS = read_pins(ROOT / "constraints.txt")
# What a learner installs, and what maintainers and CI install (README, .ci/run):
LEARNER_INSTALL = f'python -m pip install "{NAME}[course]"'
CLONE_INSTALL = 'python -m pip install -e ".[course]"'
MAINTAINER_INSTALL = 'python -m pip install -c constraints.txt -e ".[dev]"'
# The packages whose versions the stored outputs depend on: each must be pinned.
OUTPUT_PACKAGES = [
    "torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "ipykernel", "jupyterlab", "nbval", "nbclient",
    "nbformat", "ipython",
]  # fmt: skip
PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14"]


def _lowest():
    spec = importlib.util.spec_from_file_location(
        "lowest_constraints", ROOT / ".ci" / "lowest_constraints.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOWEST = _lowest()
DECLARED = LOWEST.declared(PYPROJECT)


def test_every_requirement_declares_the_range_it_is_tested_on():
    assert DECLARED, "no requirements found"
    for req in DECLARED:
        assert LOWEST.lower_bound(req), req  # ValueError without one
        assert not [s for s in req.specifier if s.operator in ("==", "===", "~=")], (
            f"{req}: a range, not a pin"
        )
    learner = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in ("course", "gpt2"):
        learner += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    no_ceiling = [str(r) for r in learner if not any(s.operator == "<" for s in r.specifier)]
    assert not no_ceiling, (
        f"give these an upper bound (the next major, or what the package's policy says): {no_ceiling}"
    )


def test_constraints_pin_every_requirement_inside_its_range():
    for req in DECLARED:
        if req.marker and not req.marker.evaluate():
            continue  # e.g. tomli, for Python 3.10 only
        name = normalize(req.name)
        assert name in PINS, f"constraints.txt has no pin for {req.name}"
        assert req.specifier.contains(PINS[name], prereleases=True), (
            f"constraints.txt pins {name}=={PINS[name]}, outside pyproject.toml's {req}"
        )
    missing = [p for p in OUTPUT_PACKAGES if p not in PINS]
    assert not missing, f"stored outputs depend on these: pin them in constraints.txt: {missing}"
    assert PINS["torch"] == "2.13.0"


def test_constraints_file_holds_exact_pins_once_each():
    names = []
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][0-9A-Za-z.]*", line), line
            names.append(normalize(line.split("==")[0]))
    assert len(names) == len(set(names)), "a package pinned twice"
    assert NAME not in names, "the course itself is not pinned"


def test_lowest_constraints_are_the_lower_bounds_and_torch_from_the_pins():
    lines = LOWEST.lowest_constraints(PYPROJECT, PINS)
    assert len(lines) == len(DECLARED)
    got = {normalize(line.split("==")[0]): line.split("==")[1] for line in lines}
    for req in DECLARED:
        name = normalize(req.name)
        expected = PINS[name] if name == "torch" else LOWEST.lower_bound(req)
        assert got[name].split(";")[0].strip() == expected
    assert got["numpy"] == LOWEST.lower_bound(
        Requirement(next(r for r in PROJECT["dependencies"] if "numpy" in r))
    )
    # every lower bound is older than (or equal to) the pin: the lowest run tests something the pins do not
    for name, version in got.items():
        version = version.split(";")[0].strip()
        if name in PINS:
            assert Version(version) <= Version(PINS[name]), f"{name}: lower bound {version} above the pin"
    with pytest.raises(ValueError, match="lower bound"):
        LOWEST.lower_bound(Requirement("numpy<3"))


def test_python_versions_agree():
    assert PROJECT["requires-python"] == f">={PYTHONS[0]}"
    listed = sorted(
        c.rsplit(":: ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert sorted(listed, key=Version) == PYTHONS
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + PYTHONS[0].replace(".", "")
    vermin_target = re.search(
        r'^OLDEST = "([\d.]+)"', (ROOT / "tests" / "test_style.py").read_text(encoding="utf-8"), re.M
    )
    assert vermin_target.group(1) == PYTHONS[0], (
        "tests/test_style.py checks the code against the oldest Python"
    )


def test_readme_gives_learners_ranges_and_maintainers_the_pins():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    maintainers = README.split("## For maintainers", 1)[1].split("\n## ", 1)[0]
    assert LEARNER_INSTALL in quickstart and CLONE_INSTALL in quickstart
    assert "gptlib-course start" in quickstart
    assert "constraints.txt" not in quickstart and "[dev]" not in quickstart, (
        "learners need no pins, no dev tools"
    )
    assert MAINTAINER_INSTALL in maintainers
    assert re.search(r"^python -m pytest$", maintainers, re.M)


def test_ci_installs_and_tests_as_the_maintainers_section_says():
    assert MAINTAINER_INSTALL in CI
    assert re.search(r"^python -m pytest$", CI, re.M)
    assert re.search(r"python3 -m venv", CI), ".ci/run must make its own virtual environment"
    # the second venv: the lowest declared versions, the library's tests without notebooks or the wheel
    assert "lowest_constraints.py" in CI
    assert re.search(r'^python -m pytest tests -m "not notebooks and not wheel"', CI, re.M)
    assert "--nbval-lax" in CI, "one solution's cells run (outputs not compared) at the lowest versions"


def test_environment_yml_installs_what_a_learner_needs():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"], "the one Python the course is tested on"
    assert "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # the project itself, with the learner's extra: no second list of versions, no dev tools
    assert pip_section == [CLONE_INSTALL.removeprefix("python -m pip install ")]


def test_every_install_hint_names_the_distribution():
    """'pip install gptlib' would install someone else's project from PyPI: every hint names ours."""
    files = [*(ROOT / "gptlib").rglob("*.py"), *(ROOT / "solutions").glob("*.ipynb"), ROOT / "README.md"]
    files += [*(ROOT / "lessons").glob("*.ipynb"), *(ROOT / "docs").glob("*.md")]
    hints = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            hints += re.findall(r"pip install[^`\n]*", line)
    assert hints
    wrong = [h for h in hints if re.search(r"\bgptlib(?![-\w])", h)]
    assert not wrong, f"these install hints name 'gptlib', not {NAME!r}: {wrong}"
    assert [h for h in hints if NAME in h]
