"""The properties every check probes the same way: callable, returns a tensor of the right shape, leaves
its input untouched, causal, deterministic in eval mode, dropout at work in train mode, gradients reach
every parameter and the input.

Each probe measures through the boundary and raises the exercise's failure in plain words; the words
that depend on the exercise (what the input is called, what to do about it) are the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from gptlib.checks import codes as C
from gptlib.checks.engine import Exercise, close, parameters, seeded, tensors_close, type_name
from gptlib.checks.learner import Backward, Call, Ref
from gptlib.checks.verdict import CheckFailure


def expect_callable(ex: Exercise, fn: Ref, name: str) -> None:
    """A function exercise got a function (not a class, not the function's result)."""
    if fn.info.kind == "class" or not fn.info.callable:
        raise ex.fail(C.NOT_CALLABLE, f"expected the function {name}, got {fn!r:.80}.")


def reject_none_or_tuple(
    ex: Exercise, what: str, out: Any, instead: str, missing: str = "the `return` line"
) -> None:
    """The two commonest slips in a returned value: a missing `return` (None) and a trailing comma (a
    tuple). `instead` says what to return; `missing` names the return line the learner forgot."""
    if out is None:
        raise ex.fail(C.RETURNED_NONE, f"{what} returned None: is {missing} missing?")
    if isinstance(out, tuple):
        raise ex.fail(C.RETURNED_TUPLE, f"{what} returned a tuple of {len(out)} items; {instead}")


def expect_tensor(
    ex: Exercise,
    what: str,
    out: Any,
    shape: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    shape_names: str = "",
    finite: bool = True,
) -> torch.Tensor:
    """A tensor of the expected shape and dtype, with no NaN/inf (unless finite=False)."""
    reject_none_or_tuple(
        ex,
        what,
        out,
        "it should return one tensor. Return only the output (drop the extra values or the trailing comma).",
    )
    if not isinstance(out, torch.Tensor):
        raise ex.fail(C.NOT_A_TENSOR, f"{what} returned a {type_name(out)}, not a tensor.")
    if shape is not None and tuple(out.shape) != tuple(shape):
        names = f" {shape_names}" if shape_names else ""
        raise ex.fail(
            C.WRONG_SHAPE, f"{what} returned shape {tuple(out.shape)}; expected {tuple(shape)}{names}."
        )
    if dtype is not None and out.dtype != dtype:
        raise ex.fail(C.WRONG_DTYPE, f"{what} returned dtype {out.dtype}; expected {dtype}.")
    if finite and out.is_floating_point() and not torch.isfinite(out).all():
        kind = "NaN" if torch.isnan(out).any() else "inf"
        raise ex.fail(C.NAN, f"{what} returned {kind} values.")
    return out


def untouched(ex: Exercise, what: str, call: Call, inputs: str = "its input", advice: str = "") -> Any:
    """The call left its tensor arguments as they were (else IN_PLACE, naming `inputs`). Returns its value."""
    if call.changed:
        raise ex.fail(C.IN_PLACE, f"{what} changed {inputs} in place.{advice}")
    return call.value


def run_untouched(ex: Exercise, what: str, fn: Ref, *args: Any, tied: str = "", advice: str = "") -> Any:
    """fn(*args), its tensor arguments left untouched (see `untouched`). `tied`, when other sizes worked
    already: the message for a crash now (FIXED_T, the code is tied to one size), the error appended."""
    try:
        call = ex.run(what, fn, *args)
    except CheckFailure as e:
        if tied and e.diagnosis == C.CRASHED:
            raise ex.fail(C.FIXED_T, f"{tied} The error: {ex.error_only(e)}", e.crash) from None
        raise
    return untouched(ex, what, call, advice=advice)


def leaks(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: float, seed: int
) -> list[int]:
    """Causality: positions before T // 2 whose output moves when every later position of x changes
    (x + scale * noise for floats; other token ids for ids)."""
    T = x.size(1)
    t0 = T // 2
    x2 = x.clone()
    if x.is_floating_point():
        with seeded(seed):
            x2[:, t0:] += scale * torch.randn_like(x2[:, t0:])
    else:
        x2[:, t0:] = (x2[:, t0:] + 1 + torch.arange(T - t0)) % int(scale)
    a, b = forward(x), forward(x2)
    return [t for t in range(t0) if not close(a[:, t], b[:, t])]


def future_leak(
    ex: Exercise,
    what: str,
    moved: list[int],
    T: int,
    advice: str = "",
    inputs: str = "input",
    outputs: str = "output",
) -> Any:
    """The failure for outputs that moved when only later positions changed."""
    return ex.fail(
        C.FUTURE_LEAK,
        f"{what}: future tokens leak. Changing the {inputs} at positions {T // 2}..{T - 1} changed the {outputs} at "
        f"earlier positions {moved}.{advice}",
    )


EVAL_ADVICE = " nn.Dropout switches itself off in eval(); F.dropout needs training=self.training."


def deterministic(
    ex: Exercise, what: str, a: torch.Tensor, b: Any, inputs: str = "input", advice: str = EVAL_ADVICE
) -> None:
    """Two calls on the same input in eval mode agree (`b` not a tensor: left to the other probes)."""
    if isinstance(b, torch.Tensor) and not tensors_close(a, b, atol=1e-6, rtol=1e-5):
        raise ex.fail(
            C.DROPOUT_IN_EVAL,
            f"{what} gave different outputs for the same {inputs} in eval mode: dropout is still on.{advice}",
        )


def dropout_active(ex: Exercise, what: str, a: torch.Tensor, b: torch.Tensor, advice: str = "") -> None:
    """Two calls on the same input in train mode differ: dropout is at work."""
    if tensors_close(a, b, atol=1e-6, rtol=1e-5):
        raise ex.fail(
            C.NO_DROPOUT,
            f"{what} in train mode gave the same output twice for the same input: no dropout anywhere.{advice}",
        )


def _listed(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def gradients(
    ex: Exercise,
    what: str,
    module: Ref,
    *args: Any,
    backward: Backward,
    names: list[str] | None = None,
    input_name: str = "",
    explain: Callable[[list[str]], None] | None = None,
) -> int:
    """Backpropagate through module(*args): every parameter (of `names`, or all) gets a gradient, and the
    first argument too when `input_name` names it. `explain(missing)` may raise a more precise failure.
    Returns the number of parameter tensors."""
    grads = ex.run(what, module, *args, backward=backward).grads
    params = parameters(module)
    frozen = [n for n, p in params.items() if not p.requires_grad and (names is None or n in names)]
    if frozen:
        raise ex.fail(
            C.NO_GRAD, f"{_listed(frozen)}: requires_grad=False, so training could never change them."
        )
    missing = missing_grads(grads.params, names)
    if missing:
        if explain:
            explain(missing)
        raise ex.fail(
            C.NO_GRAD,
            f"no gradient reaches {_listed(missing)}: forward never uses {'it' if len(missing) == 1 else 'them'}, "
            "or cuts the path to the output "
            "(.detach(), .data, torch.no_grad(), .item() or numpy).",
        )
    if input_name and grads.inputs[0] is None:
        raise ex.fail(
            C.NO_GRAD,
            f"no gradient flows back to the input {input_name}, so nothing before this layer could learn. "
            f"Do not detach {input_name} (or use .data) inside forward.",
        )
    return len(params)


def dropout_at_work(
    ex: Exercise, what: str, out: torch.Tensor, eval_out: torch.Tensor, field: str, rates: dict[str, float]
) -> None:
    """The output in train mode differs from the eval-mode output: dropout at config.<field> is at work."""
    if torch.allclose(out, eval_out, atol=1e-6):
        raise ex.fail(
            C.NO_DROPOUT, f"{what} equals the eval-mode output: no dropout ({field}={rates[field]})."
        )


def dropout_scaled(
    ex: Exercise,
    what: str,
    out: torch.Tensor,
    eval_out: torch.Tensor,
    field: str,
    rates: dict[str, float],
    unscaled: str = ".",
) -> None:
    """Dropout on the output in train mode: the share zeroed is p = config.<field> (`rates`: the config's
    dropout rates by field, all different, so a wrong one is named), and the values that survive are the
    eval-mode ones divided by 1 - p (`unscaled` ends the message that says they are not)."""
    zero, p = out == 0, rates[field]
    rate = zero.float().mean().item()
    if abs(rate - p) > 0.08:  # name the config's other rate if it is near
        guess = min((f for f in rates if f != field), key=lambda f: abs(rates[f] - rate))
        which = f" (config.{guess} = {rates[guess]}?)" if abs(rates[guess] - rate) < 0.06 else ""
        raise ex.fail(
            C.DROPOUT_RATE,
            f"{what} zeroed {rate:.0%} of the outputs{which}; with config.{field} = {p} about {p:.0%} should be zero.",
        )
    if not torch.allclose(out[~zero], eval_out[~zero] / (1 - p), atol=1e-5):
        raise ex.fail(
            C.DROPOUT_NOT_SCALED,
            f"{what}: the values that survive dropout should be the eval-mode values divided by 1 - p{unscaled}",
        )


def missing_grads(params: dict[str, torch.Tensor | None], names: list[str] | None = None) -> list[str]:
    """Parameters (of `names`, or all) that got no gradient, or only zeros."""
    return [
        n for n, g in params.items() if (names is None or n in names) and (g is None or not g.abs().sum())
    ]


def chi2(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square of draw counts (rows, V) against probabilities (rows, V); inf if a token of
    probability ~0 was drawn."""
    expected = probs * counts.sum(-1, keepdim=True).double()
    if ((expected < 1e-9) & (counts > 0)).any():
        return math.inf
    live = expected >= 1e-9
    return float((((counts - expected) ** 2) / expected.clamp_min(1e-300))[live].sum())


def chi2_limit(df: int, z: float) -> float:
    """The chi-square value a right sampler exceeds with the probability of a standard normal above z
    (Wilson-Hilferty)."""
    if df <= 0:
        return 0.5
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3
