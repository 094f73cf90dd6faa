"""Learner-facing checks, one module per lesson: `check_<part>(LearnerClassOrFunction)`.

Each check builds the learner's code and gptlib's reference with the same config
and weights, runs both on the same inputs, and tests what needs no weights (shape,
causality, dropout, gradients, no NaN). It prints one line on success, and on
failure raises `CheckFailure` (an AssertionError) that names the likely mistake in
plain words, with the hint for it. It reaches the learner's code only through
`learner.py`, the boundary a grader can move into another process.
"""

import importlib

from gptlib.checks.hints import show_hints
from gptlib.checks.verdict import CheckFailure, NotDoneYet

__all__ = ["CheckFailure", "NotDoneYet", "show_hints"]

# Each lesson's module, in course order; its __all__ lists its checks, re-exported here so a notebook
# needs only `from gptlib.checks import ...`.
LESSONS = (
    "tokens_and_batches",
    "embeddings",
    "attention",
    "mlp",
    "residual_stack",
    "gpt",
    "training_and_sampling",
    "attention_maps",
    "generation_and_speed",
    "gpt2",
)
for _name in LESSONS:
    _mod = importlib.import_module(f"{__name__}.{_name}")
    for _check in _mod.__all__:
        globals()[_check] = getattr(_mod, _check)
        __all__.append(_check)
