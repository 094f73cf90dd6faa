"""Checks for lesson 04 (the residual stack): LayerNorm from scratch, and the pre-norm Block.

`check_layer_norm` gives the learner's gain and bias random values, copies them
into torch's nn.LayerNorm and compares the two on rows of very different scales
(a row of equal values, rows whose variance is near eps). When they differ it
computes LayerNorm with one known mistake at a time (and every pair): eps
outside the square root, the unbiased variance, the wrong axis, no gain or no
bias, ... and names the one the learner's output matches.

`check_block` finds the learner's two LayerNorms, attention and MLP among the
block's sub-modules (gptlib's or their own, whatever their names), and first
checks the WIRING with the learner's own sub-modules: the right composition
x + attn(ln1(x)), then x + mlp(ln2(x)), against the usual wrong ones (a
residual missing, post-norm, one LayerNorm used twice, the MLP first, ...).
Then it copies the learner's weights into gptlib.Block and compares, which
tests the sub-modules themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.attention import CausalSelfAttention as _RefAttention
from gptlib.block import Block as _RefBlock
from gptlib.checks import codes as C
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    Tree,
    find_mistake,
    fraction_close,
    matched,
    max_diff,
    parameters,
    seed_learner,
    seeded,
    set_parameters,
    shape_str,
    tensors_close,
    train,
)
from gptlib.checks.learner import Backward, Ref
from gptlib.checks.probes import (
    deterministic,
    dropout_active,
    expect_tensor,
    future_leak,
    gradients,
    leaks,
    untouched,
)
from gptlib.checks.reference_attention import find_projections, load_weights
from gptlib.checks.verdict import CheckFailure
from gptlib.config import GPTConfig
from gptlib.mlp import MLP as _RefMLP

__all__ = ["check_layer_norm", "check_block"]


def _run(ex: Exercise, what: str, fn: Ref, x: torch.Tensor) -> Any:
    """fn(x) with plain-words errors; fails if fn changed x in place."""
    return untouched(
        ex,
        what,
        ex.run(what, fn, x),
        "its input x",
        " The caller still needs x (the residual pathway adds it back): write `x = x + ...`, not `x += ...`, "
        "and use out-of-place operations (x - mean, not x.sub_).",
    )


def _output(ex: Exercise, what: str, fn: Ref, x: torch.Tensor, shape_names: str = "") -> torch.Tensor:
    """fn(x) as `_run`, and a float32 tensor shaped like x."""
    out = _run(ex, what, fn, x)
    return expect_tensor(ex, what, out, shape=tuple(x.shape), dtype=torch.float32, shape_names=shape_names)


def _gradients(ex: Exercise, module: Ref, x: torch.Tensor) -> int:
    """Backpropagate a random cotangent: every parameter and x get a gradient. Returns the parameter count."""
    with seeded(5):
        g = torch.randn(x.shape)
    return gradients(ex, "your module", module, x, backward=Backward(wrt=(0,), cotangent=g), input_name="x")


# ==== 4.1 layer_norm ================================================================================

LAYER_NORM = Exercise(
    "layer_norm",
    [*C.CLASS, C.EPS_OUTSIDE, C.UNBIASED_VAR, C.NO_EPS, C.EPS_VALUE, C.EPS_IGNORED, C.NO_SQRT, C.NO_CENTERING,
     C.WRONG_AXIS, C.NO_KEEPDIM, C.FIXED_RANK, C.GAIN_UNUSED, C.BIAS_UNUSED, C.GAIN_BIAS_UNUSED,
     C.BIAS_BEFORE_GAIN, C.GAIN_BIAS_SWAPPED, C.MISSING_GAIN_BIAS, C.WRONG_PARAMS, C.INIT, C.IN_PLACE, C.NO_GRAD,
     C.WRONG_GRAD, C.WRONG_VALUES, *C.TENSOR],
)  # fmt: skip
_GAIN_NAME = re.compile(r"weight|gain|gamma|scale|^w$|^g$|^w_|^g_|_w$|_g$")
_BIAS_NAME = re.compile(r"bias|beta|shift|offset|^b$|^b_|_b$")


def _ln(
    x: torch.Tensor,
    gain: torch.Tensor,
    bias: torch.Tensor,
    *,
    eps: float = 1e-5,
    dims: tuple[int, ...] = (-1,),
    correction: int = 0,
    eps_where: str = "inside",
    center: str = "mean",
    use_gain: bool = True,
    use_bias: bool = True,
    order: str = "gain-bias",
) -> torch.Tensor:
    """LayerNorm in float64: right by default; each keyword switches on one known mistake."""
    x = x.detach().double()
    g, b = gain.detach().double().reshape(-1), bias.detach().double().reshape(-1)
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, correction=correction)
    if center == "mean":
        centred = x - mean
    elif center == "none":
        centred = x
    else:  # "rms": divide by the root mean square, no centring
        centred, var = x, x.pow(2).mean(dim=dims, keepdim=True)
    den = {
        "inside": lambda: torch.sqrt(var + eps),
        "outside": lambda: torch.sqrt(var) + eps,
        "none": lambda: torch.sqrt(var),
        "no-sqrt": lambda: var + eps,
    }[eps_where]()
    x_hat = centred / den
    if order == "swapped":
        g, b = b, g
    g = g if use_gain else torch.ones_like(g)
    b = b if use_bias else torch.zeros_like(b)
    if order == "bias-gain":
        return (x_hat + b) * g
    return x_hat * g + b


_LN_MISTAKES = [
    Mistake(C.EPS_OUTSIDE, "eps added outside the square root, (x - mean) / (sqrt(var) + eps)",
            {"eps_where": "outside"}),
    Mistake(C.UNBIASED_VAR, "the unbiased variance, which divides by C - 1 (torch.var's default), instead "
            "of dividing by C", {"correction": 1}),
    Mistake(C.NO_EPS, "no eps at all, (x - mean) / sqrt(var)", {"eps_where": "none"}),
    Mistake(C.NO_SQRT, "dividing by the variance instead of its square root", {"eps_where": "no-sqrt"}),
    Mistake(C.NO_CENTERING, "no mean subtracted, x / sqrt(var + eps)", {"center": "none"}),
    Mistake(C.NO_CENTERING, "RMS normalisation, x / sqrt(mean(x²) + eps), with no mean subtracted",
            {"center": "rms"}),
    Mistake(C.WRONG_AXIS, "a mean and variance over the positions (dim 1) instead of the channels",
            {"dims": (1,)}),
    Mistake(C.WRONG_AXIS, "a mean and variance over the batch (dim 0) instead of the channels",
            {"dims": (0,)}),
    Mistake(C.WRONG_AXIS, "a mean and variance over the positions and channels together (dims 1 and 2)",
            {"dims": (1, 2)}),
    Mistake(C.WRONG_AXIS, "a mean and variance over the whole tensor", {"dims": (0, 1, 2)}),
    Mistake(C.GAIN_UNUSED, "the normalised x plus the bias, with the gain never applied",
            {"use_gain": False}),
    Mistake(C.BIAS_UNUSED, "the normalised x times the gain, with the bias never added", {"use_bias": False}),
    Mistake(C.GAIN_BIAS_UNUSED, "the normalised x alone: neither the gain nor the bias is applied",
            {"use_gain": False, "use_bias": False}),
    Mistake(C.BIAS_BEFORE_GAIN, "(x_hat + bias) * gain: shifted before it is scaled", {"order": "bias-gain"}),
]  # fmt: skip
_SWAPPED = Mistake(
    C.GAIN_BIAS_SWAPPED, "x_hat * bias + gain: the gain and the bias swap roles", {"order": "swapped"}
)
_EPS_VALUES = (1e-12, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _ln_input(C_: int) -> torch.Tensor:
    """(2, 6, C): rows of very different scales and offsets, one row of equal values (0.5: its mean is exact
    in float32, so x - mean is exactly 0), rows with var ~ eps."""
    scales = torch.tensor([[3.0, 1.0, 10.0, 0.0, 3e-3, 0.5], [2.0, 2e-3, 0.2, 5.0, 1.0, 4e-3]])
    offsets = torch.tensor([[1.0, -2.0, 5.0, 0.5, 0.01, 0.0], [-1.0, 0.02, 3.0, -4.0, 0.5, -0.01]])
    return torch.randn(2, 6, C_) * scales[..., None] + offsets[..., None]


@dataclass
class _LNParams:
    gain: torch.Tensor
    bias: torch.Tensor
    names: tuple[str, str]
    certain: bool  # names (or their initial values) said which is the gain


def _describe_values(p: torch.Tensor) -> str:
    if torch.all(p == p.flatten()[0]):
        return f"all {p.flatten()[0].item():g}"
    return f"values from {p.min().item():.3g} to {p.max().item():.3g}"


def _ln_params(params: dict[str, torch.Tensor], C_: int, name: str) -> _LNParams:
    """Find the gain and the bias (each n_embd values) and check that they start at ones and zeros."""
    ex = LAYER_NORM
    expected = (
        f"a gain (e.g. self.weight = nn.Parameter(torch.ones({C_}))) and a bias "
        f"(self.bias = nn.Parameter(torch.zeros({C_})))"
    )
    found = ", ".join(f"{n} {tuple(p.shape)}" for n, p in params.items()) or "none"
    vectors = {n: p for n, p in params.items() if p.numel() == C_}
    if not params:
        raise ex.fail(
            C.MISSING_GAIN_BIAS,
            f"{name}({C_}) has no parameters. Expected {expected}; a plain tensor attribute is not learned: "
            "wrap it in nn.Parameter.",
        )
    if len(vectors) != len(params) or len(vectors) > 2:
        raise ex.fail(C.WRONG_PARAMS, f"{name}({C_}) should hold exactly {expected}. Found: {found}.")
    if len(vectors) == 1:
        ((only, p),) = vectors.items()
        raise ex.fail(
            C.MISSING_GAIN_BIAS,
            f"{name}({C_}) has one parameter ({only} {tuple(p.shape)}); LayerNorm needs two: {expected}.",
        )
    (n1, p1), (n2, p2) = vectors.items()
    last = [n.rsplit(".", 1)[-1].lower() for n in (n1, n2)]
    gains = [bool(_GAIN_NAME.search(n)) and not _BIAS_NAME.search(n) for n in last]
    biases = [bool(_BIAS_NAME.search(n)) for n in last]
    if gains == [True, False] and biases == [False, True]:
        order, certain = (0, 1), True
    elif gains == [False, True] and biases == [True, False]:
        order, certain = (1, 0), True
    else:
        order, certain = (0, 1), False
        ones = [bool(torch.all(p == 1)) for p in (p1, p2)]
        zeros = [bool(torch.all(p == 0)) for p in (p1, p2)]
        if ones[1] and zeros[0]:
            order, certain = (1, 0), True
        elif ones[0] and zeros[1]:
            certain = True
    pairs = [(n1, p1), (n2, p2)]
    (gn, g), (bn, b) = pairs[order[0]], pairs[order[1]]
    if not (torch.all(g == 1) and torch.all(b == 0)):
        if certain or not (torch.all(b == 1) and torch.all(g == 0)):
            raise ex.fail(
                C.INIT,
                f"a fresh {name}({C_}) should start with the gain all ones and the bias all zeros; "
                f"{gn} starts at {_describe_values(g)} and {bn} at {_describe_values(b)}.",
            )
    return _LNParams(g, b, (gn, bn), certain)


def _ln_nonfinite(what: str, out: torch.Tensor, x: torch.Tensor) -> CheckFailure:
    rows = x.reshape(-1, x.size(-1))
    flat_bad = ~torch.isfinite(out.reshape(-1, out.size(-1))).all(-1)
    constant = rows.std(-1) == 0
    if flat_bad.any() and torch.equal(flat_bad, constant):
        return LAYER_NORM.fail(
            C.NO_EPS,
            f"{what} is NaN exactly on the row whose values are all equal: its variance is 0, and without eps "
            "inside the square root (x - mean) / sqrt(0) is 0 / 0.",
        )
    return LAYER_NORM.fail(C.NAN, f"{what} holds NaN or inf values.")


@LAYER_NORM.check
def check_layer_norm(LayerNorm: Ref) -> None:
    """Check `LayerNorm(n_embd, eps=1e-5)`: LayerNorm from scratch, equal to nn.LayerNorm with the same gain/bias."""
    ex, C_ = LAYER_NORM, 16
    name = LayerNorm.info.name or "LayerNorm"
    with seeded(0):
        module = ex.build(LayerNorm, C_)
        x = _ln_input(C_)
    p = _ln_params(parameters(module), C_, name)
    with seeded(1):  # random gain and bias, so a missing or misplaced one shows
        gain, bias = 1 + 0.5 * torch.randn(p.gain.shape), 0.5 * torch.randn(p.bias.shape)
    set_parameters(module, dict(zip(p.names, (gain, bias), strict=True)))
    readings = [(gain, bias)] if p.certain else [(gain, bias), (bias, gain)]
    what = f"{name}({C_})(x) for x of shape {shape_str(x)}"
    try:
        raw = _run(ex, what, module, x)
    except CheckFailure as e:
        if e.diagnosis == C.CRASHED and "must match the size" in e.crash.message:
            _no_keepdim(module, what, e, C_, readings)
        raise
    if isinstance(raw, torch.Tensor) and raw.shape == x.shape and not torch.isfinite(raw).all():
        raise _ln_nonfinite(what, raw, x)
    out = expect_tensor(ex, what, raw, shape=tuple(x.shape), dtype=torch.float32)

    reference = nn.LayerNorm(C_)  # torch's, holding the learner's gain and bias
    good = None
    for g, b in readings:
        with torch.no_grad():
            reference.weight.copy_(g.reshape(-1))
            reference.bias.copy_(b.reshape(-1))
            if tensors_close(out, reference(x)):
                good = (g, b)
                break
    if good is None:
        mistakes = _LN_MISTAKES + ([_SWAPPED] if p.certain else [])
        for pairs in (False, True):  # every single mistake with each reading first, then every pair
            for r in readings:
                found = find_mistake(mistakes, partial(_ln_matches, out, x, r), pairs=pairs)
                if found:
                    raise matched(ex, what, found)
        for eps in _EPS_VALUES:
            if any(tensors_close(out, _ln(x, g, b, eps=eps)) for g, b in readings):
                raise ex.fail(
                    C.EPS_VALUE,
                    f"{what} matches LayerNorm with eps = {eps:g}; {name}({C_}) should use the eps it is given "
                    "(default 1e-5).",
                )
        want = reference(x)
        raise ex.fail(
            C.WRONG_VALUES,
            f"{what}: only {fraction_close(out, want, atol=1e-4, rtol=1e-3):.0%} of the values equal "
            f"nn.LayerNorm({C_}) with your gain and bias (largest difference {max_diff(out, want):.3g}), and "
            "the output matches none of the usual mistakes. Each position's C channels should come out with "
            "mean 0 and variance 1 before the gain and the bias are applied.",
        )
    gain, bias = good
    verified = [
        f"equals nn.LayerNorm({C_}) with your gain and bias on rows of every scale (a constant row too)"
    ]

    # The eps argument must be used.
    with seeded(0):
        module2 = ex.build(LayerNorm, C_, eps=0.1)
    set_parameters(module2, dict(zip(parameters(module2), parameters(module).values(), strict=True)))
    what2 = f"{name}({C_}, eps=0.1)(x)"
    out2 = _output(ex, what2, module2, x)
    if not tensors_close(out2, _ln(x, gain, bias, eps=0.1)):
        if tensors_close(out2, _ln(x, gain, bias, eps=1e-5)):
            raise ex.fail(
                C.EPS_IGNORED, f"{what2} gives the same output as eps=1e-5: the eps argument is ignored."
            )
        raise ex.fail(C.EPS_IGNORED, f"{what2} is not LayerNorm with eps = 0.1.")
    verified.append("uses its eps")

    # Any number of leading dims: (N, C) and (C,).
    for shape in ((5, C_), (C_,)):
        with seeded(2):
            xs = 2 * torch.randn(*shape) + 1
        what_s = f"{name}({C_})(x) for x of shape {shape}"
        try:
            got = _output(ex, what_s, module, xs)
        except CheckFailure as e:
            if e.diagnosis not in (C.CRASHED, C.WRONG_SHAPE):
                raise
            raise ex.fail(
                C.FIXED_RANK,
                f"{e.message} (B, T, C) inputs worked: LayerNorm must work for any number of leading dims. "
                "Take the mean and variance over dim=-1, and give the gain and bias the shape (n_embd,).",
            ) from None
        if not tensors_close(got, _ln(xs, gain, bias)):
            raise ex.fail(
                C.FIXED_RANK,
                f"{what_s} is wrong, although (B, T, C) inputs were right: take the mean and variance over "
                "dim=-1 (the last dim, whatever the rank), not dim=2.",
            )
    verified.append("works for (N, C) and (C,) inputs")
    _gradients(ex, module, x)
    _input_gradient(module, x, gain, bias, what)
    verified.append("gradients reach the gain, the bias and x (the same as nn.LayerNorm's); x left untouched")
    ex.passed("; ".join(verified) + ".")


def _input_gradient(module: Ref, x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, what: str) -> None:
    """The gradient reaching x is nn.LayerNorm's: a mean or variance cut off from autograd changes it."""
    with seeded(5):
        g = torch.randn(x.shape)
    got = LAYER_NORM.run(what, module, x, backward=Backward(wrt=(0,), cotangent=g)).grads.inputs[0]
    xr = x.clone().requires_grad_(True)
    (F.layer_norm(xr, x.shape[-1:], gain.reshape(-1), bias.reshape(-1)) * g).sum().backward()
    if got is not None and not tensors_close(got, xr.grad, atol=1e-4, rtol=1e-3):
        raise LAYER_NORM.fail(
            C.WRONG_GRAD,
            f"{what} is right, but the gradient it sends back to x is not nn.LayerNorm's (largest difference "
            f"{max_diff(got, xr.grad):.3g}): the mean or the variance is detached (.detach(), .data, .item() or "
            "numpy), so backpropagation ignores how x moves them. Compute both from x with torch operations.",
        )


def _ln_matches(
    out: torch.Tensor, x: torch.Tensor, reading: tuple[torch.Tensor, torch.Tensor], **kwargs: Any
) -> bool:
    return tensors_close(out, _ln(x, *reading, **kwargs))


def _no_keepdim(module: Ref, what: str, e: CheckFailure, C_: int, readings: list) -> None:
    """(B, T, C) crashed on broadcasting; a single vector (C,) right: the mean and variance lost their dim."""
    with seeded(2):
        v = 2 * torch.randn(C_) + 1
    out, crash = LAYER_NORM.attempt(f"{what} for one vector of shape ({C_},)", module, v)
    if (
        crash is None
        and isinstance(out, torch.Tensor)
        and any(tensors_close(out, _ln(v, g, b)) for g, b in readings)
    ):
        raise LAYER_NORM.fail(
            C.NO_KEEPDIM,
            f"{what} raised {LAYER_NORM.error_only(e)}, while a single vector ({C_},) comes out right: the mean "
            "and the variance are taken without keepdim=True, so they lose their last dimension and no longer "
            "line up with x. Use x.mean(dim=-1, keepdim=True) (the same for the variance).",
            e.crash,
        ) from None


# ==== 4.2 block =====================================================================================

BLOCK = Exercise(
    "block",
    [*C.CLASS, C.NO_RESIDUAL_ATTN, C.NO_RESIDUAL_MLP, C.NO_RESIDUAL, C.POST_NORM, C.NORM_IN_RESIDUAL,
     C.NO_LAYERNORM, C.SAME_LAYERNORM, C.MLP_FIRST, C.PARALLEL, C.MLP_READS_ATTN, C.SUBLAYER_UNUSED, C.FUTURE_LEAK,
     C.ATTENTION_DIFFERS, C.MLP_DIFFERS, C.LAYERNORM_DIFFERS, C.WRONG_PARAMS, C.IN_PLACE, C.NO_DROPOUT,
     C.DROPOUT_IN_EVAL, C.DROPOUT_WRONG_PLACE, C.NO_GRAD, C.WRONG_VALUES, *C.TENSOR],
)  # fmt: skip


@dataclass
class _BlockParts:
    """The learner's sub-modules by role: two LayerNorms (in registration order), attention, MLP: (path, Ref)."""

    norms: list[tuple[str, Ref]]
    attn: tuple[str, Ref]
    mlp: tuple[str, Ref]


def _linear_shapes(tree: Tree, path: str) -> list[tuple[int, int]]:
    return [tuple(w.shape) for w, _ in tree.linears(path).values()]


def _is_norm(tree: Tree, path: str, C_: int) -> bool:
    if tree.subs[path].info.isa(nn.LayerNorm):
        return True
    params = tree.params_of(path)
    return (
        bool(params)
        and len(params) <= 2
        and all(p.numel() == C_ for p in params.values())
        and not tree.linears(path)
    )


def _is_mlp(tree: Tree, path: str, C_: int) -> bool:
    info = tree.subs[path].info
    if info.isa(_RefMLP):
        return True
    if info.isa(_RefAttention):
        return False
    shapes = _linear_shapes(tree, path)
    by_shape = (4 * C_, C_) in shapes and (C_, C_) not in shapes and (3 * C_, C_) not in shapes
    return by_shape or bool(re.search(r"mlp|ff|feed", path.lower()))


def _is_attention(tree: Tree, path: str, C_: int) -> bool:
    if tree.subs[path].info.isa(_RefAttention) or tree.subs[path].info.isa(nn.MultiheadAttention):
        return True
    if re.search(r"attn|atten|^sa$|heads", path.lower()):
        return True
    # q/k/v/output projections (C, C), a fused (3C, C), or one (head_size, C) per head
    return any(s[1] == C_ and (s[0] in (C_, 3 * C_) or C_ % s[0] == 0) for s in _linear_shapes(tree, path))


def _describe_children(tree: Tree) -> str:
    lines = [
        f"  - {s.path}: {s.info.type_name} ({sum(p.numel() for p in tree.params_of(s.path).values())} parameters)"
        for s in tree.children()
    ]
    return "\n".join(lines) or "  (no sub-modules)"


def _find_parts(tree: Tree, C_: int, name: str) -> _BlockParts:
    norms, attns, mlps, others = [], [], [], []
    for child in tree.children():
        n = child.path
        if not tree.params_of(n):
            continue  # dropout, activations, ...
        if _is_norm(tree, n, C_):
            norms.append(n)
        elif _is_mlp(tree, n, C_):
            mlps.append(n)
        elif _is_attention(tree, n, C_):
            attns.append(n)
        else:
            others.append(n)
    expected = (
        "Expected four sub-modules set in __init__: two LayerNorms over n_embd channels (e.g. ln1, ln2), a "
        "causal self-attention (e.g. attn = CausalSelfAttention(config)) and an MLP (e.g. mlp = MLP(config))."
    )
    found = f"\nFound:\n{_describe_children(tree)}"
    if len(norms) == 0:
        raise BLOCK.fail(C.NO_LAYERNORM, f"I found no LayerNorm in your {name}. {expected}{found}")
    if len(norms) == 1:
        raise BLOCK.fail(
            C.SAME_LAYERNORM,
            f"your {name} has one LayerNorm ({norms[0]}); pre-norm needs two, one before the attention and "
            f"one before the MLP, each with its own gain and bias.{found}",
        )
    if len(norms) > 2 or len(attns) != 1 or len(mlps) != 1 or others:
        raise BLOCK.fail(
            C.WRONG_PARAMS, f"I could not tell the parts of your {name} apart. {expected}{found}"
        )
    return _BlockParts(
        [(n, tree.sub(n)) for n in norms], (attns[0], tree.sub(attns[0])), (mlps[0], tree.sub(mlps[0]))
    )


def _compose(
    x: torch.Tensor, A: Callable, M: Callable, La: Callable, Lb: Callable, kind: str = "right"
) -> torch.Tensor:
    """The compositions: right, and the known mistakes. A, M: attention and MLP; La, Lb: the LayerNorm read
    before attention and before the MLP."""
    if kind == "no-residual-attn":
        h = A(La(x))
        return h + M(Lb(h))
    if kind == "no-residual-mlp":
        return M(Lb(x + A(La(x))))
    if kind == "no-residual":
        return M(Lb(A(La(x))))
    if kind == "post-norm":
        h = La(x + A(x))
        return Lb(h + M(h))
    if kind == "norm-in-residual":
        h = La(x)
        h = Lb(h + A(h))
        return h + M(h)
    if kind == "no-layernorm":
        h = x + A(x)
        return h + M(h)
    if kind == "same-layernorm":
        h = x + A(La(x))
        return h + M(La(h))
    if kind == "mlp-first":
        h = x + M(La(x))
        return h + A(Lb(h))
    if kind == "parallel":
        return x + A(La(x)) + M(Lb(x))
    if kind == "mlp-reads-attn":  # the MLP reads the attention's output, not the updated stream
        a = A(La(x))
        return x + a + M(Lb(a))
    if kind == "mlp-unused":
        return x + A(La(x))
    if kind == "attn-unused":
        return x + M(Lb(x))
    if kind == "identity":
        return x
    h = x + A(La(x))
    return h + M(Lb(h))


_BLOCK_MISTAKES = [
    Mistake(C.NO_RESIDUAL_ATTN, "x = self.attn(self.ln1(x)): the attention's output REPLACES x instead of "
            "being added to it (no residual around the attention)", {"kind": "no-residual-attn"}),
    Mistake(C.NO_RESIDUAL_MLP, "x = self.mlp(self.ln2(x)): the MLP's output replaces x (no residual around "
            "the MLP)", {"kind": "no-residual-mlp"}),
    Mistake(C.NO_RESIDUAL, "a stack with no residual at all: mlp(ln2(attn(ln1(x))))",
            {"kind": "no-residual"}),
    Mistake(C.POST_NORM, "post-norm, x = ln1(x + attn(x)) then ln2(x + mlp(x)): the LayerNorms sit on the "
            "residual pathway, after the sums, instead of before each sub-layer", {"kind": "post-norm"}),
    Mistake(C.NORM_IN_RESIDUAL, "x = ln1(x); x = x + attn(x) (and the same for the MLP): x itself is "
            "replaced by its normalised copy, so the pathway is normalised at every step",
            {"kind": "norm-in-residual"}),
    Mistake(C.NO_LAYERNORM, "x + attn(x), then + mlp(x): the sub-layers read x without a LayerNorm",
            {"kind": "no-layernorm"}),
    Mistake(C.SAME_LAYERNORM, "the same LayerNorm used before the attention AND before the MLP",
            {"kind": "same-layernorm"}),
    Mistake(C.MLP_FIRST, "the MLP applied before the attention", {"kind": "mlp-first"}),
    Mistake(C.PARALLEL, "x + attn(ln1(x)) + mlp(ln2(x)): the MLP reads the block's input, not x after the "
            "attention's update", {"kind": "parallel"}),
    Mistake(C.MLP_READS_ATTN, "a = attn(ln1(x)); x + a + mlp(ln2(a)): the MLP reads the attention's output "
            "instead of the updated stream x + a", {"kind": "mlp-reads-attn"}),
    Mistake(C.SUBLAYER_UNUSED, "x + attn(ln1(x)) alone: the MLP is never applied", {"kind": "mlp-unused"}),
    Mistake(C.SUBLAYER_UNUSED, "x + mlp(ln2(x)) alone: the attention is never applied",
            {"kind": "attn-unused"}),
    Mistake(C.SUBLAYER_UNUSED, "the input x, unchanged: neither sub-layer contributes", {"kind": "identity"}),
]  # fmt: skip


def _gain_bias(
    params: dict[str, torch.Tensor],
) -> tuple[tuple[str, torch.Tensor], tuple[str, torch.Tensor] | None]:
    """A LayerNorm's gain and bias ((full name, value); bias None if it has none), by name, else in order."""
    named = list(params.items())
    if len(named) == 2 and _BIAS_NAME.search(named[0][0].rsplit(".", 1)[-1].lower()):
        if not _BIAS_NAME.search(named[1][0].rsplit(".", 1)[-1].lower()):
            named.reverse()
    return named[0], (named[1] if len(named) == 2 else None)


def _subcall(sub: Ref, z: torch.Tensor, what: str = "") -> Any:
    """A sub-module's output; an attention that returns (y, weights) counts as y."""
    out = BLOCK.call(what or f"your {sub.info.type_name}", sub, z)
    return out[0] if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) else out


def _leak_failure(what: str, moved: list[int], x: torch.Tensor, parts: _BlockParts) -> CheckFailure:
    culprit = ""
    for n, m in parts.norms:
        if leaks(partial(_subcall, m), x, 2.0, seed=3):
            culprit = f" The culprit is `{n}`: your LayerNorm mixes positions; normalise over dim=-1 only."
            break
    else:
        n, m = parts.attn
        if leaks(partial(_subcall, m), x, 2.0, seed=3):
            culprit = f" The culprit is `{n}`: your attention lets positions see the future (its mask)."
    return future_leak(BLOCK, what, moved, x.size(1), culprit)


def _copy_norm(dst: nn.LayerNorm, params: dict[str, torch.Tensor]) -> None:
    (_, gain), bias = _gain_bias(params)
    dst.weight.copy_(gain.reshape(-1))
    dst.bias.copy_(bias[1].reshape(-1)) if bias is not None else dst.bias.zero_()


def _copy_attention(ref: _RefAttention, tree: Tree, path: str, attn: Ref, z: torch.Tensor, C_: int) -> bool:
    """Load the learner's attention weights into gptlib's; True if some reading reproduces their output."""
    want = _subcall(attn, z)
    if tree.subs[path].info.isa(_RefAttention):
        ref.load_state_dict(
            {n.removeprefix(path + "."): t for n, t in tree.params_of(path).items()}, strict=False
        )
        return tensors_close(ref(z), want, atol=1e-5, rtol=1e-4)
    for w in find_projections(attn, C_, C_, with_proj=True).candidates:
        load_weights(ref, w)
        if tensors_close(ref(z), want, atol=1e-5, rtol=1e-4):
            return True
    return False


def _copy_mlp(ref: _RefMLP, tree: Tree, path: str, C_: int) -> bool:
    """Load the learner's MLP weights into gptlib's; False if its Linear layers are not (4C, C) and (C, 4C)."""
    linears = list(tree.linears(path).values())
    fc = [(w, b) for w, b in linears if tuple(w.shape) == (4 * C_, C_)]
    proj = [(w, b) for w, b in linears if tuple(w.shape) == (C_, 4 * C_)]
    if len(linears) != 2 or len(fc) != 1 or len(proj) != 1:
        return False
    for dst, (w, b) in ((ref.fc, fc[0]), (ref.proj, proj[0])):
        dst.weight.copy_(w)
        dst.bias.copy_(b) if b is not None else dst.bias.zero_()
    return True


def _mlp_activation_note(ref: _RefMLP, mlp: Ref, z: torch.Tensor) -> str:
    got = _subcall(mlp, z)
    for act, words in (
        (F.relu, "ReLU"),
        (partial(F.gelu, approximate="tanh"), "the tanh-approximate GELU"),
        (lambda t: t, "no activation at all"),
    ):
        if tensors_close(got, ref.proj(act(ref.fc(z)))):
            return f" It matches an MLP with {words} instead of the exact GELU (nn.GELU())."
    return ""


def _sub_module_failure(
    name: str,
    tree: Tree,
    parts: _BlockParts,
    ref: _RefBlock,
    x: torch.Tensor,
    order: tuple[int, int],
    C_: int,
) -> CheckFailure | None:
    """The wiring is right; compare each sub-module with gptlib's holding the same weights."""
    la, lb = (parts.norms[i][1] for i in order)
    la_x = _subcall(la, x)
    for (n, norm), ref_norm in zip(
        (parts.norms[order[0]], parts.norms[order[1]]), (ref.ln1, ref.ln2), strict=True
    ):
        _copy_norm(ref_norm, tree.params_of(n))
        if not tensors_close(_subcall(norm, x), ref_norm(x)):
            return BLOCK.fail(
                C.LAYERNORM_DIFFERS,
                f"your {name} is wired right, but `{n}` differs from nn.LayerNorm({C_}) with the same gain and "
                f"bias ({fraction_close(_subcall(norm, x), ref_norm(x)):.0%} of the values match).",
            )
    an, attn = parts.attn
    if not _copy_attention(ref.attn, tree, an, attn, la_x, C_):
        return BLOCK.fail(
            C.ATTENTION_DIFFERS,
            f"your {name} is wired right, but `{an}` ({tree.subs[an].info.type_name}) does not compute what "
            "gptlib.CausalSelfAttention computes with the same weights (or its layers are not the query, key, "
            "value and output projections it expects).",
        )
    mn, mlp = parts.mlp
    z = _subcall(lb, x + _subcall(attn, la_x))
    if not _copy_mlp(ref.mlp, tree, mn, C_):
        shapes = ", ".join(f"Linear{s[::-1]}" for s in _linear_shapes(tree, mn)) or "no Linear layers"
        return BLOCK.fail(
            C.MLP_DIFFERS,
            f"`{mn}` should hold Linear({C_}, {4 * C_}) and Linear({4 * C_}, {C_}); it holds {shapes}.",
        )
    if not tensors_close(_subcall(mlp, z), ref.mlp(z)):
        return BLOCK.fail(
            C.MLP_DIFFERS,
            f"your {name} is wired right, but `{mn}` differs from gptlib's MLP with the same weights "
            f"({fraction_close(_subcall(mlp, z), ref.mlp(z)):.0%} of the values match)."
            + _mlp_activation_note(ref.mlp, mlp, z),
        )
    return None


@BLOCK.check
def check_block(Block: Ref) -> None:
    """Check `Block(config)`: x + attn(ln1(x)), then x + mlp(ln2(x)); compared with gptlib.Block holding the
    learner's weights, after the wiring is checked with the learner's own sub-modules."""
    ex = BLOCK
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=4, n_embd=32)
    C_ = config.n_embd
    name = Block.info.name or "Block"
    with seeded(0):
        block = ex.build(Block, config)
        x = 3 * torch.randn(2, config.block_size - 1, C_) + 1  # shorter than block_size; far from unit scale
        x_full, x_one = 3 * torch.randn(2, config.block_size, C_) - 1, 3 * torch.randn(3, 1, C_)
    train(ex, block, False)
    what = f"{name}.forward(x) for x of shape {shape_str(x)}"

    def forward(inp: torch.Tensor) -> torch.Tensor:
        w = f"{name}.forward(x) for x of shape {shape_str(inp)}"
        return _output(ex, w, block, inp, "(B, T, C), like x")

    with torch.no_grad():
        out = forward(x)
        deterministic(ex, what, out, forward(x), "x")
    tree = Tree(block)
    parts = _find_parts(tree, C_, name)
    # distinct random gains and biases, so the two LayerNorms (and their absence) can be told apart
    with seeded(7):
        values = {}
        for n, _ in parts.norms:
            (gn, gain), bias = _gain_bias(tree.params_of(n))
            values[gn] = 1 + 0.5 * torch.randn(gain.shape)
            if bias is not None:
                values[bias[0]] = 0.5 * torch.randn(bias[1].shape)
    set_parameters(block, values)
    tree = Tree(block)

    def sub(m: Ref, role: str) -> Callable[[torch.Tensor], torch.Tensor]:
        w = f"your {role} sub-module ({m.info.type_name})"
        return lambda z: expect_tensor(ex, w, _subcall(m, z, w), shape=tuple(z.shape))

    A, M = sub(parts.attn[1], "attention"), sub(parts.mlp[1], "MLP")
    L = [sub(m, "LayerNorm") for _, m in parts.norms]
    with torch.no_grad():
        out = forward(x)
        moved = leaks(forward, x_full, 2.0, seed=3)
        if moved:
            raise _leak_failure(f"{name}.forward(x) for x of shape {shape_str(x_full)}", moved, x_full, parts)
        orders = ((0, 1), (1, 0))
        order = next((o for o in orders if tensors_close(out, _compose(x, A, M, L[o[0]], L[o[1]]))), None)
        if order is None:
            found = find_mistake(
                _BLOCK_MISTAKES,
                lambda kind: any(
                    tensors_close(out, _compose(x, A, M, L[o[0]], L[o[1]], kind)) for o in orders
                ),
                pairs=False,
            )
            if found:
                raise matched(ex, what, found)
            want = _compose(x, A, M, L[0], L[1])
            raise ex.fail(
                C.WRONG_VALUES,
                f"{what}: only {fraction_close(out, want, atol=1e-4, rtol=1e-3):.0%} of the values equal "
                f"x + attn(ln1(x)) followed by x + mlp(ln2(x)) computed with your own sub-modules (largest "
                f"difference {max_diff(out, want):.3g}), and the output matches none of the usual wirings.",
            )
        ref = _RefBlock(config).eval()
        failure = _sub_module_failure(name, tree, parts, ref, x, order, C_)
        if failure:
            raise failure
        for inp in (x, x_full, x_one):
            got, want = forward(inp), ref(inp)
            if not tensors_close(got, want):
                raise ex.fail(
                    C.WRONG_VALUES,
                    f"{name}.forward(x) for x of shape {shape_str(inp)}: {fraction_close(got, want):.0%} of the "
                    f"values equal gptlib.Block holding your weights (largest difference {max_diff(got, want):.3g}).",
                )
    n_params = _gradients(ex, block, x)

    train(ex, block, True)
    with seeded(4), torch.no_grad():
        a, b = forward(x_full), forward(x_full)
    dropout_active(
        ex,
        name,
        a,
        b,
        " gptlib's CausalSelfAttention and MLP drop out (attn_pdrop, resid_pdrop) in train mode; if you wrote "
        "your own, give them nn.Dropout layers.",
    )
    with torch.no_grad():  # the same dropout masks: the block must be its sub-modules, nothing more
        seed_learner(6)
        a = forward(x_full)
        seed_learner(6)
        b = _compose(x_full, A, M, L[order[0]], L[order[1]])
    if not tensors_close(a, b, atol=1e-5, rtol=1e-4):
        raise ex.fail(
            C.DROPOUT_WRONG_PLACE,
            f"{name} in train mode differs from your own sub-modules wired the right way with the same dropout "
            "masks, though eval mode agrees: the block adds randomness of its own. The attention and the MLP "
            "already end with dropout; a second nn.Dropout around them in the block drops their output twice.",
        )
    ex.passed(
        "pre-norm wiring right (x + attn(ln1(x)), then x + mlp(ln2(x))); equals gptlib.Block with your weights "
        f"for T = 1, {config.block_size - 1} and {config.block_size}; causal; dropout in train mode only; "
        f"gradients reach all {n_params} parameter tensors and x; x left untouched."
    )
