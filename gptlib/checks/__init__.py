"""Learner-facing checks, one module per lesson: `check_<part>(LearnerClassOrFunction)`.

Each check builds the learner's code and gptlib's reference with the same
config and weights, runs both on the same inputs, and tests what needs no
weights (shape, causality, dropout, gradients, no NaN). It prints one line on
success, and on failure raises `CheckFailure` (an AssertionError) that names the
likely mistake in plain words, with the hint for it.
"""

import importlib
import pkgutil

from gptlib.checks.base import CheckFailure, NotDoneYet
from gptlib.checks.hints import show_hints

__all__ = ["CheckFailure", "NotDoneYet", "show_hints"]

# Every lesson's module (tokens, embeddings, attention, ...) lists its checks in __all__;
# re-export them all so a notebook needs only `from gptlib.checks import ...`.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name in ("base", "hints") or _info.name.startswith("_"):
        continue
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in getattr(_mod, "__all__", []):
        globals()[_name] = getattr(_mod, _name)
        __all__.append(_name)
