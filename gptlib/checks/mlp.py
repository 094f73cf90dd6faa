"""Checks for lesson 03 (the MLP block): the exact GELU, and the MLP module.

`check_mlp` finds the learner's two layers by shape, whatever their names: the
nn.Linear layers in the order forward calls them, or two weight matrices of
shapes (C, H) / (H, C) used with `@`. It gives them random values, copies them
into gptlib's MLP and compares. Before comparing it checks the hidden width
(4 * C), and then tells apart the usual mistakes by which wrong version of the
reference the output matches: the tanh GELU, ReLU, no activation, the
activation after the second layer, a residual added inside; and, in train
mode, dropout missing, in the wrong place, at the wrong rate or on in eval mode.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from gptlib.checks import codes as C
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    Tree,
    first_line,
    fraction_close,
    match,
    max_diff,
    parameters,
    seed_learner,
    set_parameters,
    shapes_str,
    train,
)
from gptlib.checks.learner import Backward, Ref
from gptlib.checks.probes import (
    deterministic,
    dropout_at_work,
    dropout_scaled,
    expect_callable,
    expect_tensor,
    gradients,
    untouched,
)
from gptlib.config import GPTConfig
from gptlib.mlp import MLP as _RefMLP

__all__ = ["check_gelu", "check_mlp"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Warnings of the learner's code silenced (e.g. math.erf on a tensor: the diagnosis says it better)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ==== gelu ==========================================================================================

GELU = Exercise(
    "gelu",
    [C.NOT_CALLABLE, C.TANH_APPROXIMATION, C.SIGMOID_APPROXIMATION, C.RELU, C.SILU, C.MISSING_HALF, C.ERF_ARGUMENT,
     C.MISSING_X, C.MATH_ERF, C.IN_PLACE, C.NO_GRAD, C.WRONG_VALUES, *C.TENSOR],
)  # fmt: skip


def _gelu(x: torch.Tensor, kind: str = "exact") -> torch.Tensor:
    """GELU and the usual wrong versions of it."""
    erf, s2 = torch.erf, math.sqrt(2.0)
    return {
        "exact": lambda: F.gelu(x),
        "tanh": lambda: F.gelu(x, approximate="tanh"),
        "sigmoid": lambda: x * torch.sigmoid(1.702 * x),
        "relu": lambda: F.relu(x),
        "no-half": lambda: x * (1 + erf(x / s2)),
        "erf(x)": lambda: 0.5 * x * (1 + erf(x)),
        "erf(x*s2)": lambda: 0.5 * x * (1 + erf(x * s2)),
        "erf(x/2)": lambda: 0.5 * x * (1 + erf(x / 2)),
        "cdf": lambda: 0.5 * (1 + erf(x / s2)),
        "silu": lambda: x * torch.sigmoid(x),
    }[kind]()


_GELU_MISTAKES = [
    Mistake(C.TANH_APPROXIMATION, "the tanh approximation (GPT-2's GELU)", {"kind": "tanh"}),
    Mistake(C.SIGMOID_APPROXIMATION, "the sigmoid approximation x * sigmoid(1.702 x)", {"kind": "sigmoid"}),
    Mistake(C.RELU, "ReLU", {"kind": "relu"}),
    Mistake(C.SILU, "SiLU (swish), x * sigmoid(x), a different activation", {"kind": "silu"}),
    Mistake(C.MISSING_HALF, "2 x the GELU: the factor 0.5 is missing", {"kind": "no-half"}),
    Mistake(C.ERF_ARGUMENT, "0.5 x (1 + erf(x)): the argument of erf is not divided by sqrt(2)",
            {"kind": "erf(x)"}),
    Mistake(C.ERF_ARGUMENT, "0.5 x (1 + erf(x sqrt 2)): multiplied by sqrt(2), not divided",
            {"kind": "erf(x*s2)"}),
    Mistake(C.ERF_ARGUMENT, "0.5 x (1 + erf(x / 2)): divided by 2, not by sqrt(2)", {"kind": "erf(x/2)"}),
    Mistake(C.MISSING_X, "Phi(x) = 0.5 (1 + erf(x / sqrt 2)) without the factor x", {"kind": "cdf"}),
]  # fmt: skip


@GELU.check
def check_gelu(fn: Ref) -> None:
    """Check gelu(x) == 0.5 * x * (1 + erf(x / sqrt(2))), elementwise, for any shape."""
    ex = GELU
    expect_callable(ex, fn, "gelu")
    g = torch.Generator().manual_seed(0)
    for x in (torch.linspace(-5, 5, 201), torch.randn(2, 3, 4, generator=g) * 3):
        what = f"gelu(x of shape {tuple(x.shape)})"
        with _quiet():
            call, crash = ex.attempt_run(what, fn, x, backward=Backward(wrt=(0,)))
        if crash is not None:
            msg = crash.message
            if "only one element tensors" in msg or "must be real number" in msg or "not Tensor" in msg:
                raise ex.fail(
                    C.MATH_ERF,
                    f"{what} raised {first_line(crash)}: math.erf takes one number (a Python float), not a "
                    "tensor; torch.erf works on every element of x.",
                )
            if "leaf Variable that requires grad" in msg:
                raise ex.fail(C.IN_PLACE, f"{what} raised {first_line(crash)}.")
            raise ex.fail(C.CRASHED, f"{what} raised {first_line(crash)}.", crash, what)
        out = expect_tensor(
            ex, what, untouched(ex, what, call, "x"), shape=tuple(x.shape), dtype=torch.float32
        )
        want = F.gelu(x)
        if not torch.allclose(out, want, atol=1e-5, rtol=1e-5):
            found = match(
                out, partial(_gelu, x), _GELU_MISTAKES, False, partial(torch.allclose, atol=1e-5, rtol=1e-5)
            )
            if found:
                gap = max_diff(_gelu(x, **found[0].kwargs), want)
                raise ex.fail(
                    found[0].code,
                    f"{what} computes {found[0].says}; it differs from the exact GELU by up to {gap:.2g}.",
                )
            worst = int((out - want).abs().flatten().argmax())
            raise ex.fail(
                C.WRONG_VALUES,
                f"{what}: {fraction_close(out, want):.0%} of the values match F.gelu; e.g. at x = "
                f"{x.flatten()[worst].item():.2f} yours is {out.flatten()[worst].item():.4f}, the GELU is "
                f"{want.flatten()[worst].item():.4f}.",
            )
        if not call.grads.connected:
            raise ex.fail(C.NO_GRAD, f"{what}'s result does not depend on x for autograd.")
        ref_x = x.clone().requires_grad_(True)
        F.gelu(ref_x).sum().backward()
        grad = call.grads.inputs[0]
        if grad is None or not torch.allclose(grad, ref_x.grad, atol=1e-4):
            raise ex.fail(C.NO_GRAD, f"{what}: the gradient with respect to x is not GELU's derivative.")
    what = "gelu(x) at x = ±30, ±60"
    out = expect_tensor(ex, what, ex.call(what, fn, torch.tensor([-60.0, -30.0, 30.0, 60.0])), shape=(4,))
    if not torch.allclose(out, torch.tensor([0.0, 0.0, 30.0, 60.0]), atol=1e-4):
        raise ex.fail(
            C.WRONG_VALUES, f"gelu at x = -60, -30, 30, 60 gave {out.tolist()}; expected about 0, 0, 30, 60."
        )
    ex.passed("0.5 x (1 + erf(x / sqrt 2)) matches F.gelu for any shape, with the right gradient, no NaN.")


# ==== mlp ===========================================================================================

MLP = Exercise(
    "mlp",
    [C.NOT_A_CLASS, C.INSTANCE_NOT_CLASS, C.NOT_A_MODULE, C.HIDDEN_WIDTH, C.MISSING_SECOND_LINEAR, C.EXTRA_LINEAR,
     C.LAYERS_NOT_FOUND, C.TANH_APPROXIMATION, C.RELU, C.NO_ACTIVATION, C.ACTIVATION_AFTER_PROJ, C.RESIDUAL_INSIDE,
     C.NO_DROPOUT, C.DROPOUT_IN_EVAL, C.DROPOUT_WRONG_PLACE, C.DROPOUT_RATE, C.DROPOUT_NOT_SCALED,
     C.MIXES_POSITIONS, C.WRONG_VALUES, C.NO_GRAD, C.IN_PLACE, *C.TENSOR],
)  # fmt: skip
_RATES = {"resid_pdrop": 0.5, "embd_pdrop": 0.25, "attn_pdrop": 0.125}  # each rate tells its field


@dataclass
class _Mapping:
    """One reading of the learner's weights as GPT's fc (H, C) and proj (C, H) layers; params: their names."""

    fc_w: torch.Tensor
    fc_b: torch.Tensor | None
    proj_w: torch.Tensor
    proj_b: torch.Tensor | None
    params: list[str]

    def output(self, x: torch.Tensor, kind: str = "ok") -> torch.Tensor:
        """The reference's eval-mode output for input x, or one of the classic mistakes'."""
        fc = F.linear(x, self.fc_w, self.fc_b)  # (B, T, H)
        act = {
            "tanh-approximation": lambda h: F.gelu(h, approximate="tanh"),
            "relu": F.relu,
            "no-activation": lambda h: h,
        }
        if kind == "activation-after-proj":
            return F.gelu(F.linear(fc, self.proj_w, self.proj_b))
        y = F.linear(act.get(kind, F.gelu)(fc), self.proj_w, self.proj_b)  # (B, T, C)
        return x + y if kind == "residual-inside" else y


_MLP_MISTAKES = [
    Mistake(C.TANH_APPROXIMATION, "uses the tanh approximation of GELU (GPT-2's), not the exact GELU",
            {"kind": "tanh-approximation"}),
    Mistake(C.RELU, "uses ReLU instead of GELU", {"kind": "relu"}),
    Mistake(C.NO_ACTIVATION, "has no activation between the two Linear layers", {"kind": "no-activation"}),
    Mistake(C.ACTIVATION_AFTER_PROJ, "applies the GELU after the second Linear instead of between the two",
            {"kind": "activation-after-proj"}),
    Mistake(C.RESIDUAL_INSIDE, "is x + MLP(x): the residual is added inside the MLP",
            {"kind": "residual-inside"}),
]  # fmt: skip


def _describe_linears(linears: dict[str, tuple[torch.Tensor, Any]]) -> str:
    found = [f"{n or 'self'} ({w.shape[1]} -> {w.shape[0]})" for n, (w, _) in linears.items()]
    return ", ".join(found) or "no nn.Linear layers"


def _mappings(order: list[str], tree: Tree, C_: int) -> tuple[list[_Mapping], int]:
    """Every plausible reading of the weights (the Linear layers in the order forward called them), and the
    hidden width H they imply."""
    ex, params = MLP, tree.params
    if order:
        layers = [(n, *tree.linears()[n]) for n in order]
        if len(layers) == 1:
            ((name, w, _),) = layers
            raise ex.fail(
                C.MISSING_SECOND_LINEAR,
                f"forward uses one Linear layer, `{name}` ({w.shape[1]} -> {w.shape[0]}); the MLP "
                f"needs two: C -> 4C and 4C -> C (C = {C_}).",
            )
        if len(layers) > 2:
            listed = ", ".join(f"{n} ({w.shape[1]} -> {w.shape[0]})" for n, w, _ in layers)
            raise ex.fail(C.EXTRA_LINEAR, f"forward calls {len(layers)} Linear layers: {listed}.")
        (n1, fc, fc_b), (n2, proj, proj_b) = layers
        if fc.shape[1] != C_ or proj.shape[0] != C_ or fc.shape[0] != proj.shape[1]:
            raise ex.fail(
                C.LAYERS_NOT_FOUND,
                f"forward calls `{n1}` ({fc.shape[1]} -> {fc.shape[0]}) then `{n2}` ({proj.shape[1]} "
                f"-> {proj.shape[0]}); expected {C_} -> {4 * C_} then {4 * C_} -> {C_}.",
            )
        own = {n: tree.subs[n].params for n in (n1, n2)}
        names = [own[n]["weight"] for n in own] + [own[n]["bias"] for n in own if "bias" in own[n]]
        return [_Mapping(fc, fc_b, proj, proj_b, names)], fc.shape[0]
    # no nn.Linear: look for two weight matrices used with @ (or F.linear)
    mats = {n: p for n, p in params.items() if p.dim() == 2}
    if len(mats) != 2 or not all(C_ in p.shape for p in mats.values()):
        raise ex.fail(
            C.LAYERS_NOT_FOUND,
            f"found no nn.Linear layers and not two weight matrices with a side of n_embd = {C_}. Expected "
            f"layers C -> 4C and 4C -> C: weights ({4 * C_}, {C_}) and ({C_}, {4 * C_}) as nn.Linear stores them, "
            f"or (C, 4C) and (4C, C) used with @. Found parameters: {shapes_str(params)}.",
        )
    (na, a), (nb, b) = mats.items()
    hidden = {s for p in (a, b) for s in p.shape if s != C_} or {C_}
    if len(hidden) != 1:
        raise ex.fail(
            C.LAYERS_NOT_FOUND,
            f"the weight matrices {na} {tuple(a.shape)} and {nb} {tuple(b.shape)} do not share a hidden width.",
        )
    H = hidden.pop()
    vecs = {n: p for n, p in params.items() if p.dim() == 1}
    b_h = next((n for n, p in vecs.items() if p.shape == (H,)), None)
    b_c = next((n for n, p in vecs.items() if p.shape == (C_,) and (H != C_ or n != b_h)), None)
    out = []
    for (n1, w1), (n2, w2) in (((na, a), (nb, b)), ((nb, b), (na, a))):
        for fc_w in [t for t in (w1, w1.T) if t.shape == (H, C_)]:
            for proj_w in [t for t in (w2, w2.T) if t.shape == (C_, H)]:
                names = [n1, n2] + [n for n in vecs if n in (b_h, b_c)]
                out.append(_Mapping(fc_w, vecs.get(b_h), proj_w, vecs.get(b_c), names))
    return out, H


@MLP.check
def check_mlp(cls: Ref) -> None:
    """Check an MLP(config) module: (B, T, C) -> Dropout(Linear(GELU(Linear(x)))), 4C wide inside."""
    ex, C_ = MLP, 8
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=C_, **_RATES)
    name = cls.info.name or "MLP"
    mod = ex.build(cls, cfg)
    g = torch.Generator().manual_seed(1)
    # random weights and biases, so that every term shows in the output
    set_parameters(
        mod,
        {n: torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]) for n, p in parameters(mod).items()},
    )
    tree = Tree(mod)
    linears = tree.linears()
    B, T = 3, 5
    x = torch.randn(B, T, C_, generator=g) * 2
    train(ex, mod, False)
    what = f"{name}.forward(x of shape {(B, T, C_)}) in eval mode"
    with _quiet():
        call, crash = ex.attempt_run(what, mod, x, watch=tuple(linears))
    if crash is not None:
        raise ex.fail(
            C.CRASHED,
            f"{what} raised {first_line(crash)}. Your Linear layers: {_describe_linears(linears)}; the MLP needs "
            f"{C_} -> {4 * C_} then {4 * C_} -> {C_} (C = n_embd = {C_}).",
            crash,
            what,
        )
    mappings, H = _mappings([p for p, _, _ in call.trace], tree, C_)
    if H != 4 * C_:
        raise ex.fail(
            C.HIDDEN_WIDTH,
            f"the hidden layer has {H} units = {H / C_:g} x n_embd; GPT's MLP is 4 x n_embd = {4 * C_} wide.",
        )
    out = expect_tensor(
        ex,
        what,
        untouched(ex, what, call, "x"),
        shape=(B, T, C_),
        dtype=torch.float32,
        shape_names="(B, T, C)",
    )
    with _quiet():
        again, _ = ex.attempt(what, mod, x)
    deterministic(ex, what.removesuffix(" in eval mode"), out, again, "x")

    # each position on its own: changing position 2 changes only position 2
    poked = x.clone()
    poked[:, 2] += 1.0
    out2 = expect_tensor(ex, what, ex.call(what, mod, poked), shape=(B, T, C_))
    changed = (out2 - out).abs().amax(dim=(0, 2)) > 1e-6  # (T,)
    if changed.sum() != 1 or not changed[2]:
        raise ex.fail(
            C.MIXES_POSITIONS,
            f"changing the input at position 2 changed the output at positions {changed.nonzero().flatten().tolist()}.",
        )

    with torch.no_grad():
        m = next((m for m in mappings if torch.allclose(out, m.output(x), atol=1e-5)), None)
        if m is None:
            for mapping in mappings:
                found = match(
                    out, partial(mapping.output, x), _MLP_MISTAKES, False, partial(torch.allclose, atol=1e-5)
                )
                if found:
                    raise ex.fail(found[0].code, f"{what}: the output {found[0].says}.")
            want = mappings[0].output(x)
            raise ex.fail(
                C.WRONG_VALUES,
                f"{what}: {fraction_close(out, want):.0%} of the values equal Dropout(proj(GELU(fc(x)))) (largest "
                f"difference {max_diff(out, want):.3g}).",
            )
    ref = _RefMLP(cfg).eval()
    with torch.no_grad():  # the learner's weights in gptlib's MLP
        ref.fc.weight.copy_(m.fc_w)
        ref.fc.bias.copy_(m.fc_b if m.fc_b is not None else torch.zeros(H))
        ref.proj.weight.copy_(m.proj_w)
        ref.proj.bias.copy_(m.proj_b if m.proj_b is not None else torch.zeros(C_))
    if not torch.allclose(out, ref(x), atol=1e-5):
        raise ex.fail(C.WRONG_VALUES, f"{what} differs from gptlib's MLP with your weights.")

    # dropout, in train mode: last, at resid_pdrop, scaled
    train(ex, mod, True)
    seed_learner(2)
    xb = torch.randn(16, 8, C_, generator=g)
    what_tr = f"{name}.forward(x of shape {tuple(xb.shape)}) in train mode"
    out_tr = expect_tensor(ex, what_tr, ex.call(what_tr, mod, xb), shape=tuple(xb.shape))
    out_ev = ref(xb)
    dropout_at_work(ex, what_tr, out_tr, out_ev, "resid_pdrop", _RATES)
    rate = (out_tr == 0).float().mean().item()
    if rate < 0.05:
        raise ex.fail(
            C.DROPOUT_WRONG_PLACE,
            f"{what_tr} differs from eval mode, but hardly any output is zeroed ({rate:.0%}): dropout acts "
            "inside the MLP, before a Linear layer, instead of on the final output.",
        )
    dropout_scaled(ex, what_tr, out_tr, out_ev, "resid_pdrop", _RATES)

    # gradients reach every weight
    train(ex, mod, False)
    gradients(ex, what, mod, x, backward=Backward(), names=m.params)
    ex.passed(
        f"{C_} -> {4 * C_} -> {C_} with the exact GELU; equals gptlib's MLP with your weights; each position on its "
        "own; dropout last, at resid_pdrop, in train mode only; gradients reach every weight."
    )
