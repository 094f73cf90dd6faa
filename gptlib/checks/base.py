"""What every learner-facing check shares: its errors, how it runs a learner's code, how it reports.

A check never lets a raw torch traceback reach the learner. It either prints one
line saying what it verified, or raises a `CheckFailure` (an AssertionError) whose
message names the likely mistake, what to look at, and the hint for that mistake.
A stub that still raises NotImplementedError gives `NotDoneYet`: "not done yet",
not a failure.
"""

from __future__ import annotations

import contextlib
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gptlib.checks.hints import hint_for


class CheckFailure(AssertionError):
    """A check found a mistake. `diagnosis` is a short code for it (e.g. "missing-scale")."""

    def __init__(self, exercise: str, diagnosis: str, message: str):
        self.exercise = exercise
        self.diagnosis = diagnosis
        self.message = message
        hint = hint_for(exercise, diagnosis)
        text = f"[{exercise}] {message}"
        if hint:
            text += f"\nHint: {hint}"
        text += f'\nMore help: show_hints("{exercise}")'
        super().__init__(text)


class NotDoneYet(CheckFailure):
    """The exercise still raises NotImplementedError: nothing to check yet."""

    def __init__(self, exercise: str, what: str):
        super().__init__(
            exercise,
            "not-done",
            f"not done yet: {what} still raises NotImplementedError. Replace the "
            "`raise NotImplementedError()` line with your code, run that cell, then run this check again.",
        )


def passed(exercise: str, verified: str) -> None:
    """The one line a check prints on success."""
    print(f"✅ {exercise}: passed — {verified}")


_NOT_LEARNER = tuple(
    Path(p).as_posix() + "/" for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)


def _learner_frame(exc: BaseException) -> str:
    """' (line N of your cell)' for the innermost frame that is the learner's code, if any."""
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        name = fr.filename.replace("\\", "/")
        library = (
            "/gptlib/" in name or "/torch/" in name or "site-packages" in name or name.startswith("<frozen")
        )
        if not library and not name.startswith(_NOT_LEARNER):
            code = (fr.line or "").strip()
            return (
                f" (at `{code}`, line {fr.lineno} of your code)"
                if code
                else f" (line {fr.lineno} of your code)"
            )
    return ""


@contextlib.contextmanager
def learner_code(exercise: str, what: str) -> Iterator[None]:
    """Run the learner's code; turn what it raises into a plain-words CheckFailure."""
    try:
        yield
    except NotImplementedError:
        raise NotDoneYet(exercise, what) from None
    except CheckFailure:
        raise
    except AttributeError as e:
        if "Module.__init__() call" in str(e):
            raise CheckFailure(
                exercise, "no-super-init", f"{what}: call `super().__init__()` first in your __init__."
            ) from None
        raise _crashed(exercise, what, e) from None
    except Exception as e:  # the learner's code crashed: say where and what, without torch's internals
        raise _crashed(exercise, what, e) from None


def _crashed(exercise: str, what: str, e: Exception) -> CheckFailure:
    return CheckFailure(
        exercise,
        "crashed",
        f"{what} raised {type(e).__name__}: {e}{_learner_frame(e)}. Read the message, fix that line, "
        "and run your cell again.",
    )


def error_only(failure: CheckFailure, what: str) -> str:
    """A crash report (from `learner_code` or `call`) without its 'what raised' prefix and advice suffix,
    to quote inside another message."""
    return failure.message.removeprefix(f"{what} raised ").removesuffix(
        ". Read the message, fix that line, and run your cell again."
    )


def call(exercise: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a learner's function or class under `learner_code`."""
    with learner_code(exercise, what):
        return fn(*args, **kwargs)


def attempt(
    exercise: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[Any, Exception | None]:
    """Run learner code for a check that diagnoses a crash itself: (result, None) or (None, the exception).
    A stub that still raises NotImplementedError gives NotDoneYet."""
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError:
        raise NotDoneYet(exercise, what) from None
    except CheckFailure:
        raise
    except Exception as e:
        return None, e


def first_line(e: BaseException, width: int = 160) -> str:
    """The exception's type and the first line of its message (at most `width` characters of it)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:width] if text else ''}"


def build_module(exercise: str, cls: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """Instantiate a learner's nn.Module class with clear errors for the usual slips."""
    name = getattr(cls, "__name__", repr(cls))
    if isinstance(cls, nn.Module):
        raise CheckFailure(
            exercise,
            "instance-not-class",
            f"pass the class itself, not an instance: check(...)({name}) -> use `{type(cls).__name__}`.",
        )
    if not isinstance(cls, type):
        raise CheckFailure(exercise, "not-a-class", f"expected a class, got {name} ({type(cls).__name__}).")
    if not issubclass(cls, nn.Module):
        raise CheckFailure(
            exercise, "not-a-module", f"{name} must subclass nn.Module: `class {name}(nn.Module):`."
        )
    return call(exercise, f"{name}.__init__", cls, *args, **kwargs)


def reject_none_or_tuple(
    exercise: str, what: str, out: Any, instead: str, missing: str = "the `return` line"
) -> None:
    """Name the two commonest slips in a returned value: a missing `return` (None) and a trailing comma
    (a tuple). `instead` says what to return; `missing` names the return line the learner forgot."""
    if out is None:
        raise CheckFailure(exercise, "returned-none", f"{what} returned None: is {missing} missing?")
    if isinstance(out, tuple):
        raise CheckFailure(
            exercise, "returned-tuple", f"{what} returned a tuple of {len(out)} items; {instead}"
        )


def expect_tensor(
    exercise: str,
    what: str,
    out: Any,
    shape: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    shape_names: str = "",
) -> torch.Tensor:
    """Check that a learner's result is a tensor of the expected shape and dtype, with no NaN/inf."""
    reject_none_or_tuple(
        exercise,
        what,
        out,
        "it should return one tensor. Return only the output (drop the extra values or the trailing comma).",
    )
    if not isinstance(out, torch.Tensor):
        raise CheckFailure(exercise, "not-a-tensor", f"{what} returned a {type(out).__name__}, not a tensor.")
    if shape is not None and tuple(out.shape) != tuple(shape):
        names = f" {shape_names}" if shape_names else ""
        raise CheckFailure(
            exercise,
            "wrong-shape",
            f"{what} returned shape {tuple(out.shape)}; expected {tuple(shape)}{names}.",
        )
    if dtype is not None and out.dtype != dtype:
        raise CheckFailure(exercise, "wrong-dtype", f"{what} returned dtype {out.dtype}; expected {dtype}.")
    if out.is_floating_point() and not torch.isfinite(out).all():
        kind = "NaN" if torch.isnan(out).any() else "inf"
        raise CheckFailure(exercise, "nan", f"{what} returned {kind} values.")
    return out


def dropout_rate_failure(
    exercise: str, what: str, rate: float, p: float, field: str, others: dict[float, str]
) -> CheckFailure | None:
    """A "wrong-dropout-rate" failure if `rate`, the share of outputs zeroed in train mode, is more than 0.08
    from p = config.<field>; it names the other config rate (others: rate -> field) within 0.06 of it, if any."""
    if abs(rate - p) > 0.08:
        guess = min(others, key=lambda q: abs(q - rate))
        which = f" (config.{others[guess]} = {guess}?)" if abs(guess - rate) < 0.06 else ""
        return CheckFailure(
            exercise,
            "wrong-dropout-rate",
            f"{what} zeroed {rate:.0%} of the outputs{which}; with config.{field} = {p} about {p:.0%} should be zero.",
        )
    return None


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item()


def tensors_close(
    a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-3, equal_nan: bool = False
) -> bool:
    """Same shape, and |a - b| <= atol + rtol * |b| everywhere (in float64)."""
    if a.shape != b.shape:
        return False
    return torch.allclose(a.detach().double(), b.detach().double(), atol=atol, rtol=rtol, equal_nan=equal_nan)


def shape_str(t: torch.Tensor) -> str:
    """A tensor's shape as a message shows it: "(2, 8, 16)"."""
    return str(tuple(t.shape))


def fraction_close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> float:
    """Share of entries that match: "73% of the values are right" tells a learner how far off they are."""
    return (
        torch.isclose(a.detach().double(), b.detach().double(), atol=atol, rtol=rtol).double().mean().item()
    )


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, then restore the RNG as it was.

    A check builds the learner's module (whose init draws from the global RNG) and
    its inputs inside this, so it is deterministic and leaves the notebook's random
    stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run a block on one CPU thread, then restore torch's thread count.

    A check's tensors are tiny: synchronising several threads costs more than the work
    (10-20x slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def isolated(check: Callable[[Any], None], *, no_grad: bool = False) -> Callable[[Any], None]:
    """Wrap a check so it runs on one thread (its tensors are tiny) with its own RNG stream, seeded 0
    (and, with no_grad, without autograd): the learner's thread count and random state are as before
    afterwards."""

    @wraps(check)
    def run(arg: Any) -> None:
        with one_thread(), seeded(0), torch.no_grad() if no_grad else contextlib.nullcontext():
            check(arg)

    return run
