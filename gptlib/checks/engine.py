"""What every check is made of: the exercise it checks, the one isolation idiom, the one way to call
the learner's code, and the one way to state and find a known mistake.

An `Exercise` knows its name and the diagnoses its check can give (a test holds each to a
hint). `@EXERCISE.check` wraps a check: it runs on one thread, with its own RNG stream
seeded 0 (the notebook's is as it was afterwards) and, when asked, without autograd; it
gets the learner's object as a `Ref` and reaches it only through the boundary
(`learner.py`), whose crashes it turns into plain words (`Exercise.call`).

A known mistake is a `Mistake`: its diagnosis code, the words that name it, and the
keywords that switch the check's reference into making it. `match` recomputes the
reference with each mistake switched on (then each pair of independent ones) and names
the one that reproduces what the learner's code gave.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

import torch

from gptlib.checks import (
    builders,  # noqa: F401  (registers the trusted objects a Spec may name)
    learner,
)
from gptlib.checks import codes as C
from gptlib.checks.learner import Backward, Call, Crash, Ref, Spec, Sub
from gptlib.checks.verdict import CheckFailure, NotDoneYet, passed
from gptlib.config import GPTConfig

ADVICE = ". Read the message, fix that line, and run your cell again."

EXERCISES: dict[str, Exercise] = {}


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """torch's global RNG seeded for a block, then restored as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def isolated(grad: bool = True) -> Iterator[None]:
    """The one isolation idiom: one CPU thread (a check's tensors are tiny: more threads cost more than the
    work), an RNG stream of its own seeded 0, autograd on or off; the caller's settings as before afterwards.
    The boundary carries the RNG state and the grad mode to the learner's side with every call."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with seeded(0), torch.set_grad_enabled(grad):
            yield
    finally:
        torch.set_num_threads(n)


def seed_learner(seed: int) -> None:
    """Seed the torch RNG stream the learner's code draws from (its dropout masks, its init)."""
    learner.backend().seed(seed)


def type_name(value: Any) -> str:
    """The type of a value that came back across the boundary, as a message names it."""
    return value.info.type_name if isinstance(value, Ref) else type(value).__name__


class Exercise:
    """One exercise: its name, and every diagnosis its check can give (not done, a crash, a missing
    super().__init__() or forward go without saying: any learner code can give them)."""

    def __init__(self, name: str, codes: Iterable[str]) -> None:
        self.name = name
        self.codes = frozenset(codes) | {C.NOT_DONE, C.CRASHED, C.NO_SUPER_INIT, C.NO_FORWARD}
        EXERCISES[name] = self

    def __repr__(self) -> str:
        return f"Exercise({self.name!r})"

    # -- what the check says --

    def fail(self, code: str, message: str, crash: Crash | None = None, doing: str = "") -> CheckFailure:
        """The failure to raise. The code must be one this exercise declared (so it has a hint)."""
        if code not in self.codes:
            raise ValueError(f"{self.name}: diagnosis {code!r} is not declared")
        return CheckFailure(self.name, code, message, crash, doing)

    def passed(self, verified: str) -> None:
        passed(self.name, verified)

    def check(self, body: Callable[[Ref], None] | None = None, *, grad: bool = True) -> Any:
        """Decorate a check: isolated (see `isolated`), the argument adopted as a Ref, the Refs dropped after."""

        def decorate(body: Callable[[Ref], None]) -> Callable[[Any], None]:
            @wraps(body)
            def run(arg: Any) -> None:
                b = learner.backend()
                try:
                    with isolated(grad):
                        b.seed(0)
                        body(b.adopt(arg))
                finally:
                    b.forget()

            run.exercise = self  # type: ignore[attr-defined]
            return run

        return decorate(body) if body is not None else decorate

    # -- calling the learner's code --

    def crashed(self, what: str, crash: Crash) -> CheckFailure:
        """The plain-words failure for a crash: not done yet, a missing super().__init__(), or what raised."""
        if crash.isa("NotImplementedError") and 'missing the required "forward" function' in crash.message:
            return self.fail(
                C.NO_FORWARD, f"{what}: the class has no forward method; define `def forward(self, x):`."
            )
        if crash.isa("NotImplementedError"):
            return NotDoneYet(self.name, what)
        if crash.isa("AttributeError") and "Module.__init__() call" in crash.message:
            return self.fail(C.NO_SUPER_INIT, f"{what}: call `super().__init__()` first in your __init__.")
        message = f"{what} raised {crash.name}: {crash.message}{crash.where}{ADVICE}"
        return self.fail(C.CRASHED, message, crash, what)

    def run(
        self,
        what: str,
        fn: Ref,
        *args: Any,
        backward: Backward | None = None,
        watch: tuple = (),
        **kwargs: Any,
    ) -> Call:
        """fn(*args, **kwargs) across the boundary (see learner.Backend.call for backward and watch); a crash
        becomes the failure that says so."""
        try:
            return learner.backend().call(fn, args, kwargs, backward=backward, watch=watch)
        except Crash as crash:
            raise self.crashed(
                f"backpropagating through {what}" if crash.stage == "backward" else what, crash
            ) from None

    def call(self, what: str, fn: Ref, *args: Any, **kwargs: Any) -> Any:
        """The value of fn(*args, **kwargs); a crash becomes the failure that says so."""
        return self.run(what, fn, *args, **kwargs).value

    def attempt_run(
        self,
        what: str,
        fn: Ref,
        *args: Any,
        backward: Backward | None = None,
        watch: tuple = (),
        **kwargs: Any,
    ) -> tuple[Call | None, Crash | None]:
        """(the Call, None) or (None, the crash), for a check that diagnoses a crash itself. A stub still
        raising NotImplementedError gives NotDoneYet."""
        try:
            return learner.backend().call(
                fn, _specs(args), _specs(kwargs), backward=backward, watch=watch
            ), None
        except Crash as crash:
            failure = self.crashed(what, crash)
            if failure.diagnosis != C.CRASHED:
                raise failure from None
            return None, crash

    def attempt(self, what: str, fn: Ref, *args: Any, **kwargs: Any) -> tuple[Any, Crash | None]:
        """(value, None) or (None, the crash): `attempt_run`'s value."""
        call, crash = self.attempt_run(what, fn, *args, **kwargs)
        return (call.value if call is not None else None), crash

    def error_only(self, failure: CheckFailure) -> str:
        """A crash as '<type>: <message><where>', to quote inside another message."""
        crash = failure.crash
        return f"{crash.name}: {crash.message}{crash.where}" if crash else failure.message

    def build(self, cls: Ref, *args: Any, **kwargs: Any) -> Ref:
        """Instantiate a learner's nn.Module class, with clear words for the usual slips."""
        info, name = cls.info, cls.info.name or repr(cls)
        if info.kind == "module":
            raise self.fail(
                C.INSTANCE_NOT_CLASS,
                f"pass the class itself, not an instance of it: `{info.type_name}`, not `{info.type_name}(...)`.",
            )
        if info.kind != "class":
            raise self.fail(C.NOT_A_CLASS, f"expected a class, got {name} ({info.type_name}).")
        if not cls.isa(torch.nn.Module):
            raise self.fail(C.NOT_A_MODULE, f"{name} must subclass nn.Module: `class {name}(nn.Module):`.")
        return self.call(f"{name}.__init__", cls, *args, **kwargs)


def _specs(values: Any) -> Any:
    """A check's arguments for the learner: a GPTConfig crosses as its Spec (it is no plain data)."""
    if isinstance(values, dict):
        return {k: _specs(v) for k, v in values.items()}
    if isinstance(values, tuple):
        return tuple(_specs(v) for v in values)
    return learner.config_spec(values) if type(values) is GPTConfig else values


# ---- the other operations of the boundary, for checks --------------------------------------------


def attribute(ex: Exercise, what: str, obj: Ref, name: str) -> Any:
    try:
        return learner.backend().attribute(obj, name)
    except Crash as crash:
        raise ex.crashed(what, crash) from None


def train(ex: Exercise, obj: Ref, mode: bool = True) -> None:
    try:
        learner.backend().train(obj, mode)
    except Crash as crash:
        raise ex.crashed(f"{obj.info.type_name}.train({mode})", crash) from None


def build(spec: Spec) -> Ref:
    return learner.backend().build(spec)


def parameters(obj: Ref, grads: bool = False) -> dict[str, torch.Tensor | None]:
    return learner.backend().parameters(obj, grads)


def set_parameters(obj: Ref, values: dict[str, torch.Tensor]) -> None:
    learner.backend().set_parameters(obj, values)


class Tree:
    """A learner's module tree, read once through the boundary: its sub-modules by path and a copy of every
    parameter's value, by the name named_parameters() gives it."""

    def __init__(self, module: Ref) -> None:
        self.ref = module
        self.subs = {s.path: s for s in learner.backend().modules(module)}
        self.params = learner.backend().parameters(module)

    def children(self, path: str = "") -> list[Sub]:
        """The sub-modules one level below `path`, in registration order."""
        depth = path.count(".") + 1 if path else 0
        return [
            s
            for p, s in self.subs.items()
            if p and p.count(".") == depth and (not path or p.startswith(path + "."))
        ]

    def params_of(self, path: str) -> dict[str, torch.Tensor]:
        """The parameters of a sub-module and of its descendants, by their full names."""
        names = {
            n
            for p, s in self.subs.items()
            if p == path or not path or p.startswith(path + ".")
            for n in s.params.values()
        }
        return {n: t for n, t in self.params.items() if n in names}

    def own(self, path: str) -> dict[str, torch.Tensor]:
        """A sub-module's own parameters, by their local names ('weight', 'bias')."""
        return {n: self.params[full] for n, full in self.subs[path].params.items()}

    def linears(self, path: str = "") -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """The nn.Linear layers at or below `path`: (weight (out, in), bias or None) by path."""
        return {
            p: (self.own(p)["weight"], self.own(p).get("bias"))
            for p, s in self.subs.items()
            if (p == path or not path or p.startswith(path + "."))
            and s.info.isa(torch.nn.Linear)
            and "weight" in s.params
        }

    def sub(self, path: str) -> Ref:
        return submodule(self.ref, path)


def submodule(module: Ref, path: str) -> Ref:
    """A Ref to the sub-module at `path` ('transformer.h.0'), through getattr one name at a time."""
    for name in filter(None, path.split(".")):
        module = learner.backend().attribute(module, name)
    return module


# ---- comparing tensors ---------------------------------------------------------------------------


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item()


def tensors_close(
    a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-3, equal_nan: bool = False
) -> bool:
    """Same shape, and |a - b| <= atol + rtol * |b| everywhere (in float64)."""
    if a.shape != b.shape:
        return False
    return torch.allclose(a.detach().double(), b.detach().double(), atol=atol, rtol=rtol, equal_nan=equal_nan)


def close(a: torch.Tensor, b: torch.Tensor, loose: bool = False) -> bool:
    """Same shape and values (NaN equal to NaN). loose: for a mistake computed another way."""
    atol, rtol = (1e-4, 1e-3) if loose else (1e-5, 1e-4)
    return tensors_close(a, b, atol, rtol, equal_nan=True)


def fraction_close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> float:
    """Share of entries that match: "73% of the values are right" tells a learner how far off they are."""
    return (
        torch.isclose(a.detach().double(), b.detach().double(), atol=atol, rtol=rtol).double().mean().item()
    )


def shape_str(t: Any) -> str:
    """A tensor's shape as a message shows it: "(2, 8, 16)"."""
    return str(tuple(t.shape))


def shapes_str(params: dict[str, torch.Tensor]) -> str:
    """Parameters with their shapes, as a message lists them: "fc.weight (32, 8), fc.bias (32,)"."""
    return ", ".join(f"{n} {tuple(p.shape)}" for n, p in params.items()) or "none"


def first_line(crash: Crash, width: int = 160) -> str:
    """The error's type and the first line of its message."""
    text = crash.message.strip().splitlines()
    return f"{crash.name}: {text[0][:width] if text else ''}"


# ---- known mistakes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mistake:
    """One known mistake: its diagnosis code, what it computes (in words), and the keywords that switch the
    check's reference into computing it."""

    code: str
    says: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def find_mistake(
    mistakes: list[Mistake], reproduces: Callable[..., bool], pairs: bool = True
) -> tuple[Mistake, ...] | None:
    """The first mistake whose keywords make `reproduces(**kwargs)` true, else (with pairs) the first pair of
    mistakes with disjoint keywords that does so together, else None."""
    for m in mistakes:
        if reproduces(**m.kwargs):
            return (m,)
    if pairs:
        for a, b in itertools.combinations(mistakes, 2):
            if a.kwargs.keys().isdisjoint(b.kwargs) and reproduces(**a.kwargs, **b.kwargs):
                return (a, b)
    return None


def match(
    out: torch.Tensor,
    compute: Callable[..., torch.Tensor],
    mistakes: list[Mistake],
    pairs: bool = True,
    same: Callable[[torch.Tensor, torch.Tensor], bool] = lambda a, b: close(a, b, loose=True),
) -> tuple[Mistake, ...] | None:
    """The mistake (or pair of mistakes) whose `compute(**kwargs)` gives `out`, or None."""
    with torch.no_grad():
        return find_mistake(mistakes, lambda **kwargs: same(compute(**kwargs), out), pairs)


def matched(ex: Exercise, what: str, found: tuple[Mistake, ...], note: str = "") -> CheckFailure:
    """The failure naming the mistake (or the two) that `what` matches; `note` is appended to the message."""
    if len(found) == 1:
        text = f"{what} matches {found[0].says}."
    else:
        text = f"{what} matches two mistakes at once: {found[0].says}; and {found[1].says}."
    return ex.fail(found[0].code, text + note)
