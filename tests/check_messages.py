"""Every message the learner-facing checks give, recorded while tests and notebooks run; two recordings compared.

A refactor of gptlib/checks/ must leave what learners read unchanged, except where a message is improved on
purpose. This records, for every call of a public check (`check_*`), what came out: the pass line it printed,
or the failure it raised (exercise, diagnosis, message, and the whole text), keyed by the test (or notebook)
that made the call and the call's number within it. It records inside pytest (tests/conftest.py installs it
when GPTLIB_MESSAGES is set) and inside every notebook kernel those tests start (an IPython startup file).

    python tests/check_messages.py record OUT.jsonl [pytest arguments]   # default: the check tests,
                                                                         # the lessons, the solutions
    python tests/check_messages.py compare [-v] BEFORE.jsonl AFTER.jsonl [TEXT...]  # what changed, call by call
                                                       # (only tests whose id holds one of the TEXTs)

Run `record` under `heavy` (it runs the tests).
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_VAR, TAG_VAR = "GPTLIB_MESSAGES", "GPTLIB_MESSAGES_TEST"
DEFAULT_TARGETS = ["tests/test_checks_*.py", "tests/test_lessons.py", "solutions"]

_counts: dict[str, int] = defaultdict(int)


class _Tee(io.TextIOBase):
    """Writes through to `inner` and keeps a copy."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.parts = inner, []

    def write(self, s: str) -> int:
        self.parts.append(s)
        return self.inner.write(s)

    def flush(self) -> None:
        self.inner.flush()


def _record(check: str, error: BaseException | None, printed: str) -> None:
    tag = os.environ.get(TAG_VAR, "?")
    _counts[tag] += 1
    row: dict[str, Any] = {"test": tag, "n": _counts[tag], "check": check, "printed": printed}
    if error is None:
        row["outcome"] = "returned"
    else:
        row["outcome"] = type(error).__name__
        for field in ("exercise", "diagnosis", "message"):
            row[field] = getattr(error, field, None)
        try:
            row["text"] = str(error)
        except Exception as e:  # noqa: BLE001  (a learner's exception may not print)
            row["text"] = f"<str failed: {type(e).__name__}>"
    with open(os.environ[OUT_VAR], "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _wrap(fn: Any) -> Any:
    if getattr(fn, "_recorded", False):
        return fn

    @functools.wraps(fn)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        old = sys.stdout
        tee = _Tee(old)
        sys.stdout = tee
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            sys.stdout = old
            _record(fn.__name__, e, "".join(tee.parts))
            raise
        sys.stdout = old
        _record(fn.__name__, None, "".join(tee.parts))
        return result

    recorded._recorded = True  # type: ignore[attr-defined]
    return recorded


def install() -> None:
    """Wrap every public check of gptlib.checks (in the package and in each of its modules)."""
    import gptlib.checks  # noqa: F401  (imports every lesson's checks)

    wrapped: dict[int, Any] = {}
    for name, module in list(sys.modules.items()):
        if not (name == "gptlib.checks" or name.startswith("gptlib.checks.")) or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if attr.startswith("check_") and callable(value):
                if str(getattr(value, "__module__", "")).startswith("gptlib.checks"):
                    key = id(getattr(value, "__wrapped__", value))
                    wrapped.setdefault(key, _wrap(value))
                    setattr(module, attr, wrapped[key])


def record(out: Path, pytest_args: list[str]) -> int:
    out = out.resolve()
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as ipython_dir:
        startup = Path(ipython_dir) / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-record-check-messages.py").write_text(
            f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\n"
            "import check_messages\ncheck_messages.install()\ndel sys.path[0]\n",
            encoding="utf-8",
        )
        env = dict(os.environ, **{OUT_VAR: str(out), "IPYTHONDIR": ipython_dir})
        args = pytest_args or DEFAULT_TARGETS
        # only a pattern is expanded: a test id ("...[02_attention]") or an option (-k) passes as it is
        expanded = [
            *(str(p.relative_to(ROOT)) for a in args if "*" in a for p in sorted(ROOT.glob(a))),
            *(a for a in args if "*" not in a),
        ]
        return subprocess.call([sys.executable, "-m", "pytest", "-q", *expanded], cwd=ROOT, env=env)


def _load(path: Path, renamed: bool = False) -> dict[tuple[str, int], dict]:
    """Rows by (test, call number); object addresses blanked; with renamed, old codes read as new."""
    text = _LINE.sub("line N of your code", _ADDRESS.sub(" at 0x...", path.read_text(encoding="utf-8")))
    rows = [json.loads(line) for line in text.splitlines()]
    rows = [_renamed(r) if renamed else r for r in rows]
    return {(r["test"], r["n"]): r for r in rows}


FIELDS = ("check", "outcome", "exercise", "diagnosis", "message", "text", "printed")
# Diagnosis codes renamed on purpose (one spelling per mistake): a recording made before is read with these.
RENAMED = {
    "modifies-data": "in-place",
    "modifies-input": "in-place",
    "changes-model": "in-place",
    "modified-hf": "in-place",
    "not-a-function": "not-callable",
    "wrong-value": "wrong-values",
    "wrong-dropout-rate": "dropout-rate",
    "dropout-missing": "no-dropout",
    "not-normalized": "not-normalised",
    "heads-split": "head-split",
    "heads-not-split": "one-head",
    "no-scale": "missing-scale",
    "heads-merged-wrong": "merge-order",
    "tanh-gelu": "tanh-approximation",
    "softmax-dim": "softmax-axis",
    "ignores-generator": "generator-ignored",
    "dropout-on": "train-mode",
    "returns-probabilities": "probabilities",
}
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
_LINE = re.compile(r"line \d+ of your code")  # lines of the tests' own learner code move as tests are edited


def _renamed(row: dict) -> dict:
    test = row["test"]
    for before, after in RENAMED.items():  # a parametrized test's id ends with the code: ...[fn-heads-split0]
        test = re.sub(rf"(?<=[-\[]){re.escape(before)}(?=\d*\])", after, test)
    row = dict(row, test=test)
    if row.get("diagnosis") in RENAMED:
        row["diagnosis"] = RENAMED[row["diagnosis"]]
    return row


def _kind(a: dict, b: dict | None) -> str:
    """What kind of change this is, for the summary."""
    if b is None:
        return "call gone (a test removed or renamed)"
    if not b:
        return "new call (a test added)"
    if not (a.get("outcome") == b.get("outcome") and a.get("diagnosis") == b.get("diagnosis")):
        return "verdict changed (outcome or diagnosis)"
    if a.get("message") != b.get("message"):
        return "message changed"
    if a.get("printed") != b.get("printed"):
        return "pass line changed"
    ta, tb = a.get("text") or "", b.get("text") or ""
    if b.get("outcome") == "NotDoneYet" and "\nHint: " in ta and "\nHint: " not in tb:
        return "not-done: the hint that repeated it dropped"
    if "\nHint: " not in ta and "\nHint: " in tb:
        return "hint added"
    if ta.split("\nHint: ")[0] == tb.split("\nHint: ")[0]:
        return "hint changed"
    return "other"


def compare(before_path: Path, after_path: Path, only: list[str], verbose: bool = False) -> int:
    before, after = _load(before_path, renamed=True), _load(after_path)
    if only:
        before, after = (
            {k: v for k, v in d.items() if any(t in k[0] for t in only)} for d in (before, after)
        )
    same, changed = 0, []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            changed.append((key, "only before" if b is None else "only after", a or b, None if a else {}))
            continue
        diffs = [f for f in FIELDS if a.get(f) != b.get(f)]
        if diffs:
            changed.append((key, ", ".join(diffs), a, b))
        else:
            same += 1
    kinds: dict[str, int] = defaultdict(int)
    for key, what, a, b in changed:
        kind = _kind(a, b)
        kinds[kind] += 1
        print(f"== {key[0]} #{key[1]}: {what} [{kind}]")
        for f in (
            FIELDS
            if verbose or kind in ("other", "message changed", "verdict changed (outcome or diagnosis)")
            else ()
        ):
            if b is None:
                print(f"   {f}: {a.get(f)!r}")
            elif a.get(f) != b.get(f):
                print(f"   {f} before: {a.get(f)!r}\n   {f} after:  {b.get(f)!r}")
    print(f"{same} identical, {len(changed)} changed, of {len(before)} before and {len(after)} after.")
    for kind, n in sorted(kinds.items()):
        print(f"  {n:5d} {kind}")
    return 0 if not changed else 1


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["--help"]
    if command == "record" and rest:
        sys.exit(record(Path(rest[0]), rest[1:]))
    verbose = "-v" in rest
    rest = [a for a in rest if a != "-v"]
    if command == "compare" and len(rest) >= 2:
        sys.exit(compare(Path(rest[0]), Path(rest[1]), rest[2:], verbose))
    print(__doc__)
    sys.exit(2)
