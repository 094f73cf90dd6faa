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

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.checks.base import (
    CheckFailure,
    attempt,
    build_module,
    call,
    dropout_rate_failure,
    expect_tensor,
    first_line,
    fraction_close,
    max_diff,
    one_thread,
    passed,
)
from gptlib.checks.hints import register_hints
from gptlib.config import GPTConfig
from gptlib.mlp import MLP as _RefMLP

__all__ = ["check_gelu", "check_mlp"]


def _attempt(exercise: str, what: str, fn: Callable[..., Any], *args: Any) -> tuple[Any, Exception | None]:
    """`attempt` with warnings silenced (e.g. math.erf on a tensor: the diagnosis says it better)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return attempt(exercise, what, fn, *args)


# --- gelu -------------------------------------------------------------------------------------

_GELU = "gelu"

register_hints(
    _GELU,
    levels=[
        "GELU(x) = x * Phi(x), where Phi is the cumulative distribution function of the standard normal "
        "distribution: the input times the probability that a standard normal variable is below it.",
        "Phi(x) = 0.5 * (1 + erf(x / sqrt(2))). torch.erf works on whole tensors (math.erf only on one "
        "number); math.sqrt(2) is a plain float.",
        "return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))",
    ],
    diagnoses={
        "tanh-approximation": "that is GPT-2's tanh approximation; the exact GELU uses the error function: "
        "0.5 * x * (1 + torch.erf(x / math.sqrt(2))).",
        "sigmoid-approximation": "x * sigmoid(1.702 x) is a quick approximation; write the exact form with torch.erf.",
        "relu": "ReLU cuts everything below 0 to exactly 0; GELU is smooth and slightly negative just below 0. "
        "Use x * Phi(x) with Phi(x) = 0.5 * (1 + erf(x / sqrt(2))).",
        "missing-half": "Phi(x) = 0.5 * (1 + erf(x / sqrt(2))): the 0.5 makes it a probability between 0 and 1.",
        "erf-argument": "erf takes x divided by the square root of 2: torch.erf(x / math.sqrt(2)).",
        "missing-x": "0.5 * (1 + erf(x / sqrt(2))) is Phi(x) alone; GELU multiplies it by x.",
        "math-erf": "math.erf takes one number; torch.erf works on a whole tensor.",
        "modifies-input": "do not change x in place (no x.mul_(), x *= ...): build a new tensor.",
        "no-grad": "use torch operations only (no numpy, .item() or .detach()) so gradients flow through.",
        "wrong-values": "GELU(x) = 0.5 * x * (1 + erf(x / sqrt(2))); compare yours with F.gelu(x) at a few points.",
    },
)


def _gelu_variants(x: torch.Tensor) -> list[tuple[str, torch.Tensor, str]]:
    erf = torch.erf
    s2 = math.sqrt(2.0)
    return [
        ("tanh-approximation", F.gelu(x, approximate="tanh"), "the tanh approximation (GPT-2's GELU)"),
        (
            "sigmoid-approximation",
            x * torch.sigmoid(1.702 * x),
            "the sigmoid approximation x * sigmoid(1.702 x)",
        ),
        ("relu", F.relu(x), "ReLU"),
        ("missing-half", x * (1 + erf(x / s2)), "2 x the GELU: the factor 0.5 is missing"),
        (
            "erf-argument",
            0.5 * x * (1 + erf(x)),
            "0.5 x (1 + erf(x)): the argument of erf is not divided by sqrt(2)",
        ),
        (
            "erf-argument",
            0.5 * x * (1 + erf(x * s2)),
            "0.5 x (1 + erf(x sqrt 2)): multiplied by sqrt(2), not divided",
        ),
        ("erf-argument", 0.5 * x * (1 + erf(x / 2)), "0.5 x (1 + erf(x / 2)): divided by 2, not by sqrt(2)"),
        ("missing-x", 0.5 * (1 + erf(x / s2)), "Phi(x) = 0.5 (1 + erf(x / sqrt 2)) without the factor x"),
    ]


def check_gelu(fn: Any) -> None:
    """Check gelu(x) == 0.5 * x * (1 + erf(x / sqrt(2))), elementwise, for any shape."""
    with one_thread():
        _check_gelu(fn)


def _check_gelu(fn: Any) -> None:
    if isinstance(fn, type) or not callable(fn):
        raise CheckFailure(_GELU, "not-a-function", f"expected the function gelu, got {fn!r:.80}.")
    g = torch.Generator().manual_seed(0)
    line = torch.linspace(-5, 5, 201)
    cube = torch.randn(2, 3, 4, generator=g) * 3
    for x in (line, cube):
        what = f"gelu(x of shape {tuple(x.shape)})"
        arg = x.clone().requires_grad_(True)
        out, err = _attempt(_GELU, what, fn, arg)
        if err is not None:
            msg = str(err)
            if "only one element tensors" in msg or "must be real number" in msg or "not Tensor" in msg:
                raise CheckFailure(_GELU, "math-erf", f"{what} raised {first_line(err)}.") from None
            if "leaf Variable that requires grad" in msg:
                raise CheckFailure(_GELU, "modifies-input", f"{what} raised {first_line(err)}.") from None
            raise CheckFailure(_GELU, "crashed", f"{what} raised {first_line(err)}.") from None
        if not torch.equal(arg.detach(), x):
            raise CheckFailure(_GELU, "modifies-input", f"{what} changed x in place.")
        out = expect_tensor(_GELU, what, out, shape=tuple(x.shape), dtype=torch.float32)
        want = F.gelu(x)
        if not torch.allclose(out.detach(), want, atol=1e-5, rtol=1e-5):
            for code, value, words in _gelu_variants(x):
                if torch.allclose(out.detach(), value, atol=1e-5, rtol=1e-5):
                    gap = max_diff(value, want)
                    raise CheckFailure(
                        _GELU,
                        code,
                        f"{what} computes {words}; it differs from the exact GELU by up to {gap:.2g}.",
                    )
            worst = int((out.detach() - want).abs().flatten().argmax())
            raise CheckFailure(
                _GELU,
                "wrong-values",
                f"{what}: {fraction_close(out, want):.0%} of the values match F.gelu; e.g. at x = "
                f"{x.flatten()[worst].item():.2f} yours is {out.flatten()[worst].item():.4f}, the GELU is "
                f"{want.flatten()[worst].item():.4f}.",
            )
        if not out.requires_grad:
            raise CheckFailure(_GELU, "no-grad", f"{what}'s result does not depend on x for autograd.")
        out.sum().backward()
        ref_x = x.clone().requires_grad_(True)
        F.gelu(ref_x).sum().backward()
        if arg.grad is None or not torch.allclose(arg.grad, ref_x.grad, atol=1e-4):
            raise CheckFailure(
                _GELU, "no-grad", f"{what}: the gradient with respect to x is not GELU's derivative."
            )
    big = torch.tensor([-60.0, -30.0, 30.0, 60.0])
    out = call(_GELU, "gelu(x) at x = ±30, ±60", fn, big.clone())
    out = expect_tensor(_GELU, "gelu(x) at x = ±30, ±60", out, shape=(4,))
    if not torch.allclose(out, torch.tensor([0.0, 0.0, 30.0, 60.0]), atol=1e-4):
        raise CheckFailure(
            _GELU,
            "wrong-values",
            f"gelu at x = -60, -30, 30, 60 gave {out.tolist()}; expected about 0, 0, 30, 60.",
        )
    passed(
        _GELU, "0.5 x (1 + erf(x / sqrt 2)) matches F.gelu for any shape, with the right gradient, no NaN."
    )


# --- mlp --------------------------------------------------------------------------------------

_MLP = "mlp"
_P_RESID, _P_EMBD, _P_ATTN = 0.5, 0.25, 0.125

register_hints(
    _MLP,
    levels=[
        "Four parts in a row, applied to every position on its own: a Linear that widens C to 4C, the GELU, "
        "a Linear back from 4C to C, and dropout.",
        "In __init__: `nn.Linear(config.n_embd, 4 * config.n_embd)`, `nn.GELU()` (or your gelu from "
        "exercise 3.1), `nn.Linear(4 * config.n_embd, config.n_embd)`, `nn.Dropout(config.resid_pdrop)`. "
        "nn.Linear works on the last dimension, so (B, T, C) inputs need no reshaping.",
        "__init__:\n"
        "    self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)\n"
        "    self.gelu = nn.GELU()\n"
        "    self.proj = nn.Linear(4 * config.n_embd, config.n_embd)\n"
        "    self.drop = nn.Dropout(config.resid_pdrop)\n"
        "forward(x):\n"
        "    h = self.gelu(self.fc(x))      # (B, T, 4C)\n"
        "    return self.drop(self.proj(h))  # (B, T, C)",
    ],
    diagnoses={
        "hidden-width": "the hidden layer is 4 times as wide as the model: nn.Linear(config.n_embd, "
        "4 * config.n_embd), then nn.Linear(4 * config.n_embd, config.n_embd).",
        "missing-second-linear": "after the GELU, a second nn.Linear(4 * config.n_embd, config.n_embd) brings the "
        "width back to C.",
        "extra-linear": "the MLP has exactly two Linear layers: C -> 4C and 4C -> C.",
        "layers-not-found": "use two nn.Linear layers (or two weight matrices of shapes (C, 4C) and (4C, C)).",
        "tanh-gelu": "this lesson's MLP uses the exact GELU: nn.GELU() (its default approximate='none'), or "
        "your exact gelu from exercise 3.1.",
        "relu": "GPT uses GELU, not ReLU: nn.GELU().",
        "no-activation": "put the GELU between the two Linear layers; without it the two layers collapse into one "
        "linear map.",
        "activation-after-proj": "the GELU goes between the two Linear layers: proj(gelu(fc(x))), not gelu(proj(fc(x))).",
        "residual-inside": "return only the MLP's output; the residual `x + mlp(x)` is added by the Block "
        "(lesson 04).",
        "dropout-missing": "end with dropout: `self.drop = nn.Dropout(config.resid_pdrop)`, "
        "`return self.drop(self.proj(h))`.",
        "dropout-in-eval": "nn.Dropout switches itself off in eval mode; F.dropout(x, p) does not unless you pass "
        "training=self.training. Use the nn.Dropout module.",
        "dropout-wrong-place": "dropout comes last, on the output of the second Linear: Linear, GELU, Linear, Dropout.",
        "wrong-dropout-rate": "the MLP's dropout rate is config.resid_pdrop (it drops what is added to the "
        "residual stream).",
        "dropout-not-scaled": "use nn.Dropout: it divides the values it keeps by 1 - p.",
        "mixes-positions": "the MLP works on each position separately: nn.Linear acts on the last dimension "
        "(C) only; do not reshape (B, T, C) so that positions mix.",
        "wrong-values": "compute proj(gelu(fc(x))) and apply dropout; check the order of the layers.",
        "no-grad": "use every layer's weights through torch operations (no .detach() or .data) so all of them learn.",
        "modifies-input": "do not change x in place.",
    },
)


class _Mapping:
    """One reading of the learner's weights as GPT's fc (H, C) and proj (C, H) layers."""

    def __init__(
        self,
        fc_w: torch.Tensor,
        fc_b: torch.Tensor | None,
        proj_w: torch.Tensor,
        proj_b: torch.Tensor | None,
        params: list[str],
    ) -> None:
        self.fc_w, self.fc_b, self.proj_w, self.proj_b, self.params = fc_w, fc_b, proj_w, proj_b, params

    def variants(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reference's eval-mode output and the outputs of the classic mistakes, for input x."""
        fc = F.linear(x, self.fc_w, self.fc_b)  # (B, T, H)

        def proj(h: torch.Tensor) -> torch.Tensor:
            return F.linear(h, self.proj_w, self.proj_b)  # (B, T, C)

        right = proj(F.gelu(fc))
        return {
            "ok": right,
            "tanh-gelu": proj(F.gelu(fc, approximate="tanh")),
            "relu": proj(F.relu(fc)),
            "no-activation": proj(fc),
            "activation-after-proj": F.gelu(proj(fc)),
            "residual-inside": x + right,
        }


_VARIANT_WORDS = {
    "tanh-gelu": "uses the tanh approximation of GELU (GPT-2's), not the exact GELU",
    "relu": "uses ReLU instead of GELU",
    "no-activation": "has no activation between the two Linear layers",
    "activation-after-proj": "applies the GELU after the second Linear instead of between the two",
    "residual-inside": "is x + MLP(x): the residual is added inside the MLP",
}


def _linear_calls(
    mod: nn.Module, x: torch.Tensor, what: str
) -> tuple[Any, Exception | None, list[tuple[str, nn.Linear]]]:
    """Run mod(x) and record the nn.Linear layers it calls, in order."""
    names = {m: n for n, m in mod.named_modules() if isinstance(m, nn.Linear)}
    order: list[tuple[str, nn.Linear]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append((names[m], m))) for m in names]
    try:
        out, err = _attempt(_MLP, what, mod, x)
    finally:
        for h in hooks:
            h.remove()
    return out, err, order


def _describe_linears(mod: nn.Module) -> str:
    found = [
        f"{n or 'self'} ({m.in_features} -> {m.out_features})"
        for n, m in mod.named_modules()
        if isinstance(m, nn.Linear)
    ]
    return ", ".join(found) or "no nn.Linear layers"


def _mappings(mod: nn.Module, order: list[tuple[str, nn.Linear]], C: int) -> tuple[list[_Mapping], int]:
    """Every plausible reading of the weights, and the hidden width H they imply."""
    if order:
        if len(order) == 1:
            name, lin = order[0]
            raise CheckFailure(
                _MLP,
                "missing-second-linear",
                f"forward uses one Linear layer, `{name}` ({lin.in_features} -> {lin.out_features}); the MLP "
                f"needs two: C -> 4C and 4C -> C (C = {C}).",
            )
        if len(order) > 2:
            listed = ", ".join(f"{n} ({m.in_features} -> {m.out_features})" for n, m in order)
            raise CheckFailure(_MLP, "extra-linear", f"forward calls {len(order)} Linear layers: {listed}.")
        (n1, fc), (n2, proj) = order
        if fc.in_features != C or proj.out_features != C or fc.out_features != proj.in_features:
            raise CheckFailure(
                _MLP,
                "layers-not-found",
                f"forward calls `{n1}` ({fc.in_features} -> {fc.out_features}) then `{n2}` ({proj.in_features} "
                f"-> {proj.out_features}); expected {C} -> {4 * C} then {4 * C} -> {C}.",
            )
        names = [f"{n1}.weight", f"{n2}.weight"] + [f"{n}.bias" for n, m in order if m.bias is not None]
        return [_Mapping(fc.weight, fc.bias, proj.weight, proj.bias, names)], fc.out_features
    # no nn.Linear: look for two weight matrices used with @ (or F.linear)
    params = dict(mod.named_parameters())
    mats = {n: p for n, p in params.items() if p.dim() == 2}
    shapes = ", ".join(f"{n} {tuple(p.shape)}" for n, p in params.items()) or "none"
    if len(mats) != 2 or not all(C in p.shape for p in mats.values()):
        raise CheckFailure(
            _MLP,
            "layers-not-found",
            f"found no nn.Linear layers and not two weight matrices with a side of n_embd = {C}. Expected "
            f"layers C -> 4C and 4C -> C: weights ({4 * C}, {C}) and ({C}, {4 * C}) as nn.Linear stores them, "
            f"or (C, 4C) and (4C, C) used with @. Found parameters: {shapes}.",
        )
    (na, a), (nb, b) = mats.items()
    hidden = {s for p in (a, b) for s in p.shape if s != C} or {C}
    if len(hidden) != 1:
        raise CheckFailure(
            _MLP,
            "layers-not-found",
            f"the weight matrices {na} {tuple(a.shape)} and {nb} {tuple(b.shape)} do not share a hidden width.",
        )
    H = hidden.pop()
    vecs = {n: p for n, p in params.items() if p.dim() == 1}
    b_h = next((p for p in vecs.values() if p.shape == (H,)), None)
    b_c = next((p for n, p in vecs.items() if p.shape == (C,) and (H != C or p is not b_h)), None)
    out = []
    for (n1, w1), (n2, w2) in (((na, a), (nb, b)), ((nb, b), (na, a))):
        for fc_w in {id(t): t for t in (w1, w1.T) if t.shape == (H, C)}.values():
            for proj_w in {id(t): t for t in (w2, w2.T) if t.shape == (C, H)}.values():
                names = [n1, n2] + [n for n, p in vecs.items() if p is b_h or p is b_c]
                out.append(_Mapping(fc_w, b_h, proj_w, b_c, names))
    return out, H


def check_mlp(cls: Any) -> None:
    """Check an MLP(config) module: (B, T, C) -> Dropout(Linear(GELU(Linear(x)))), 4C wide inside."""
    with one_thread(), torch.random.fork_rng(devices=[]):
        _check_mlp(cls)


def _check_mlp(cls: Any) -> None:
    C = 8
    cfg = GPTConfig(
        vocab_size=11,
        block_size=8,
        n_layer=1,
        n_head=2,
        n_embd=C,
        embd_pdrop=_P_EMBD,
        resid_pdrop=_P_RESID,
        attn_pdrop=_P_ATTN,
    )
    name = getattr(cls, "__name__", "MLP")
    torch.manual_seed(0)
    mod = build_module(_MLP, cls, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random weights and biases, so that every term shows in the output
        for p in mod.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    B, T = 3, 5
    x = torch.randn(B, T, C, generator=g) * 2
    mod.eval()
    what = f"{name}.forward(x of shape {(B, T, C)}) in eval mode"
    arg = x.clone()
    out, err, order = _linear_calls(mod, arg, what)
    if err is not None:
        raise CheckFailure(
            _MLP,
            "crashed",
            f"{what} raised {first_line(err)}. Your Linear layers: {_describe_linears(mod)}; the MLP needs "
            f"{C} -> {4 * C} then {4 * C} -> {C} (C = n_embd = {C}).",
        ) from None
    mappings, H = _mappings(mod, order, C)
    if H != 4 * C:
        raise CheckFailure(
            _MLP,
            "hidden-width",
            f"the hidden layer has {H} units = {H / C:g} x n_embd; GPT's MLP is 4 x n_embd = {4 * C} wide.",
        )
    if not torch.equal(arg, x):
        raise CheckFailure(_MLP, "modifies-input", f"{what} changed x in place.")
    out = expect_tensor(_MLP, what, out, shape=(B, T, C), dtype=torch.float32, shape_names="(B, T, C)")
    again, _ = _attempt(_MLP, what, mod, x.clone())
    if isinstance(again, torch.Tensor) and not torch.equal(again, out):
        raise CheckFailure(
            _MLP,
            "dropout-in-eval",
            f"two calls of {what} gave different outputs: dropout is still on in eval mode.",
        )

    # each position on its own: changing position 2 changes only position 2
    poked = x.clone()
    poked[:, 2] += 1.0
    out2 = expect_tensor(_MLP, what, call(_MLP, what, mod, poked), shape=(B, T, C))
    changed = (out2 - out).abs().amax(dim=(0, 2)) > 1e-6  # (T,)
    if changed.sum() != 1 or not changed[2]:
        raise CheckFailure(
            _MLP,
            "mixes-positions",
            f"changing the input at position 2 changed the output at positions {changed.nonzero().flatten().tolist()}.",
        )

    with torch.no_grad():
        found = [
            (m, code)
            for m in mappings
            for code, v in m.variants(x).items()
            if torch.allclose(out, v, atol=1e-5)
        ]
    if not any(code == "ok" for _, code in found):
        if found:
            code = found[0][1]
            raise CheckFailure(_MLP, code, f"{what}: the output {_VARIANT_WORDS[code]}.")
        want = mappings[0].variants(x)["ok"]
        raise CheckFailure(
            _MLP,
            "wrong-values",
            f"{what}: {fraction_close(out, want):.0%} of the values equal Dropout(proj(GELU(fc(x)))) (largest "
            f"difference {max_diff(out, want):.3g}).",
        )
    m = next(m for m, code in found if code == "ok")
    ref = _RefMLP(cfg).eval()
    with torch.no_grad():  # the learner's weights in gptlib's MLP
        ref.fc.weight.copy_(m.fc_w)
        ref.fc.bias.copy_(m.fc_b if m.fc_b is not None else torch.zeros(H))
        ref.proj.weight.copy_(m.proj_w)
        ref.proj.bias.copy_(m.proj_b if m.proj_b is not None else torch.zeros(C))
    if not torch.allclose(out, ref(x), atol=1e-5):
        raise CheckFailure(_MLP, "wrong-values", f"{what} differs from gptlib's MLP with your weights.")

    # dropout, in train mode: last, at resid_pdrop, scaled
    mod.train()
    torch.manual_seed(2)
    xb = torch.randn(16, 8, C, generator=g)
    what_tr = f"{name}.forward(x of shape {tuple(xb.shape)}) in train mode"
    out_tr = expect_tensor(_MLP, what_tr, call(_MLP, what_tr, mod, xb), shape=tuple(xb.shape))
    out_ev = ref(xb)
    if torch.allclose(out_tr, out_ev, atol=1e-6):
        raise CheckFailure(
            _MLP,
            "dropout-missing",
            f"{what_tr} equals the eval-mode output: no dropout (resid_pdrop={_P_RESID}).",
        )
    zero = out_tr == 0
    rate = zero.float().mean().item()
    if rate < 0.05:
        raise CheckFailure(
            _MLP,
            "dropout-wrong-place",
            f"{what_tr} differs from eval mode, but hardly any output is zeroed ({rate:.0%}): dropout acts "
            "inside the MLP, before a Linear layer, instead of on the final output.",
        )
    others = {_P_EMBD: "embd_pdrop", _P_ATTN: "attn_pdrop"}
    failure = dropout_rate_failure(_MLP, what_tr, rate, _P_RESID, "resid_pdrop", others)
    if failure:
        raise failure
    if not torch.allclose(out_tr[~zero], out_ev[~zero] / (1 - _P_RESID), atol=1e-5):
        raise CheckFailure(
            _MLP,
            "dropout-not-scaled",
            f"{what_tr}: the values that survive dropout should be the eval-mode values divided by 1 - p.",
        )

    # gradients reach every weight
    mod.eval()
    mod.zero_grad(set_to_none=True)
    call(_MLP, what, mod, x).sum().backward()
    params = dict(mod.named_parameters())
    missing = [
        n for n in m.params if n in params and (params[n].grad is None or params[n].grad.abs().sum() == 0)
    ]
    if missing:
        raise CheckFailure(_MLP, "no-grad", f"after backward, {missing} got no gradient.")
    mod.zero_grad(set_to_none=True)
    passed(
        _MLP,
        f"{C} -> {4 * C} -> {C} with the exact GELU; equals gptlib's MLP with your weights; each position on its "
        "own; dropout last, at resid_pdrop, in train mode only; gradients reach every weight.",
    )
