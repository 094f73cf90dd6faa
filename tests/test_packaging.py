"""The install paths agree: pyproject.toml, environment.yml, the README and .ci/run."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _readme_install_command() -> str:
    m = re.search(r"^\s*(python -m pip install -e \"\.\[[a-z,]+\]\")\s*$", README, re.M)
    assert m, 'the README must show the install command `python -m pip install -e ".[dev]"`'
    return m.group(1)


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"
    assert "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # The conda env installs the project itself, with the extra the README uses: no second list of versions.
    extra = re.search(r"\.\[([a-z,]+)\]", _readme_install_command()).group(1)
    assert pip_section == [f'-e ".[{extra}]"']


def test_every_dependency_is_pinned_exactly():
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("gptlib[")]
    loose = [r for r in reqs if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+]*", r)]
    assert not loose, f"pin these exactly (stored notebook outputs depend on versions): {loose}"
    assert "torch==2.13.0" in project["dependencies"]


def test_ci_installs_and_tests_as_the_readme_says():
    assert _readme_install_command() in CI
    assert "python -m pytest" in README
    assert re.search(r"^python -m pytest\b", CI, re.M)
    assert re.search(r"python3 -m venv", CI), ".ci/run must make its own virtual environment"


def test_every_data_file_in_the_package_is_installed():
    # A non-editable install (a wheel) keeps only .py files and what package-data names, e.g. the offline corpus.
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["gptlib"]
    package = ROOT / "gptlib"
    data = [
        p.relative_to(package)
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert data, "gptlib ships its offline corpus as package data"
    missing = [str(p) for p in data if not any(p.match(pat) for pat in patterns)]
    assert not missing, (
        f"files under gptlib/ that a wheel would leave out (add them to package-data): {missing}"
    )
