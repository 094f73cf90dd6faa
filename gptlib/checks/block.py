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

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.attention import CausalSelfAttention as _RefAttention
from gptlib.block import Block as _RefBlock
from gptlib.checks.base import (
    CheckFailure,
    build_module,
    call,
    expect_tensor,
    fraction_close,
    max_diff,
    passed,
    seeded,
    shape_str,
    tensors_close,
)
from gptlib.checks.hints import register_hints
from gptlib.checks.mistakes import Mistake, matched_failure
from gptlib.config import GPTConfig
from gptlib.mlp import MLP as _RefMLP

__all__ = ["check_layer_norm", "check_block"]


def _run(exercise: str, what: str, fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
    """fn(x) with plain-words errors; fails if fn changed x in place."""
    before, version = x.detach().clone(), x._version
    out = call(exercise, what, fn, x)
    if x._version != version or not torch.equal(x.detach(), before):
        raise CheckFailure(
            exercise,
            "in-place",
            f"{what} changed its input x in place. The caller still needs x (the residual pathway adds it "
            "back): write `x = x + ...`, not `x += ...`, and use out-of-place operations (x - mean, not x.sub_).",
        )
    return out


def _gradients(exercise: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """Backpropagate a random loss: every parameter and x must get a gradient. Returns the parameter count."""
    with seeded(5):
        g = torch.randn(out.shape)
    call(exercise, "backpropagating through your module", (out * g).sum().backward)
    named = list(module.named_parameters())
    frozen = [n for n, p in named if not p.requires_grad]
    if frozen:
        raise CheckFailure(
            exercise,
            "no-grad",
            f"parameters {frozen} have requires_grad=False: training could never change them.",
        )
    missing = [n for n, p in named if p.grad is None]
    module.zero_grad(set_to_none=True)
    if missing:
        raise CheckFailure(
            exercise,
            "no-grad",
            f"no gradient reaches {missing}: forward never uses them, or cuts the path to the output "
            "(.detach(), .data, torch.no_grad(), .item() or numpy).",
        )
    if x.grad is None:
        raise CheckFailure(
            exercise,
            "no-grad",
            "no gradient flows back to the input x, so nothing below this layer could learn. Do not detach x "
            "(or use .data) inside forward.",
        )
    return len(named)


# ==== 4.1 layer_norm ================================================================================

_LN = "layer_norm"

register_hints(
    _LN,
    levels=[
        "LayerNorm works on each position's vector of C channels on its own: subtract that vector's mean, "
        "divide by its standard deviation, then scale by a learned gain and shift by a learned bias (one "
        "value per channel).",
        "In __init__, make two nn.Parameter of n_embd values: the gain starts at ones and the bias at zeros, so "
        "a fresh LayerNorm only normalises. Keep eps. In forward, take the mean and the variance over the "
        "LAST dim (dim=-1, keepdim=True). Use the biased variance (divide by C): x.var(-1, unbiased=False) "
        "or ((x - mean) ** 2).mean(-1). Put eps INSIDE the square root, so a row of equal values gives 0, "
        "not 0/0.",
        "__init__:\n"
        "    self.weight = nn.Parameter(torch.ones(n_embd))   # the gain\n"
        "    self.bias = nn.Parameter(torch.zeros(n_embd))\n"
        "    self.eps = eps\n"
        "forward(x):\n"
        "    mean = x.mean(dim=-1, keepdim=True)                      # (..., 1)\n"
        "    var = x.var(dim=-1, keepdim=True, unbiased=False)        # (..., 1)\n"
        "    x_hat = (x - mean) / torch.sqrt(var + self.eps)          # (..., C)\n"
        "    return x_hat * self.weight + self.bias",
    ],
    diagnoses={
        "eps-outside": "eps goes inside the square root: (x - mean) / torch.sqrt(var + eps), as torch and the "
        "LayerNorm paper do.",
        "unbiased-var": "torch.var and torch.std divide by C - 1 by default (the unbiased estimate). LayerNorm "
        "divides by C: pass unbiased=False (or correction=0), or compute ((x - mean) ** 2).mean(-1).",
        "no-eps": "add eps inside the square root: a row of equal values has variance 0, and 0 / 0 is NaN.",
        "eps-value": "use the eps given to __init__ (store it as self.eps); do not write your own constant.",
        "eps-ignored": "store the eps argument in __init__ (self.eps = eps) and use self.eps in forward.",
        "no-sqrt": "divide by the standard deviation, torch.sqrt(var + eps), not by the variance.",
        "no-centering": "subtract the mean first: x - x.mean(dim=-1, keepdim=True).",
        "wrong-axis": "normalise each position's channels: mean and var over dim=-1 with keepdim=True. Not "
        "over the positions (dim 1) or the batch (dim 0); dim=-1 also works for inputs of any rank.",
        "fixed-rank": "use dim=-1 (the last dim), not dim=2: LayerNorm must work for (N, C) as well as (B, T, C).",
        "gain-unused": "multiply the normalised x by the gain: x_hat * self.weight + self.bias.",
        "bias-unused": "add the bias after scaling: x_hat * self.weight + self.bias.",
        "gain-bias-unused": "finish with x_hat * self.weight + self.bias: the gain and bias let the model undo "
        "or reshape the normalisation where that helps.",
        "bias-before-gain": "scale first, then shift: x_hat * weight + bias, not (x_hat + bias) * weight.",
        "gain-bias-swapped": "the gain multiplies and the bias adds: x_hat * self.weight + self.bias.",
        "missing-gain-bias": "make both: self.weight = nn.Parameter(torch.ones(n_embd)) and "
        "self.bias = nn.Parameter(torch.zeros(n_embd)).",
        "wrong-params": "a LayerNorm over n_embd channels has exactly two parameters of n_embd values each.",
        "init": "start the gain at ones and the bias at zeros (torch.ones / torch.zeros), so a fresh LayerNorm "
        "leaves a normalised vector unchanged.",
        "in-place": "compute a new tensor (x - mean), never x -= mean: the caller still needs x.",
    },
)

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
    if eps_where == "inside":
        den = torch.sqrt(var + eps)
    elif eps_where == "outside":
        den = torch.sqrt(var) + eps
    elif eps_where == "none":
        den = torch.sqrt(var)
    else:  # "no-sqrt"
        den = var + eps
    x_hat = centred / den
    if order == "swapped":
        g, b = b, g
    g = g if use_gain else torch.ones_like(g)
    b = b if use_bias else torch.zeros_like(b)
    if order == "bias-gain":
        return (x_hat + b) * g
    return x_hat * g + b


_LN_MISTAKES = [
    Mistake(
        "eps-outside",
        "eps added outside the square root, (x - mean) / (sqrt(var) + eps)",
        {"eps_where": "outside"},
    ),
    Mistake(
        "unbiased-var",
        "the unbiased variance, which divides by C - 1 (torch.var's default), instead of dividing by C",
        {"correction": 1},
    ),
    Mistake("no-eps", "no eps at all, (x - mean) / sqrt(var)", {"eps_where": "none"}),
    Mistake("no-sqrt", "dividing by the variance instead of its square root", {"eps_where": "no-sqrt"}),
    Mistake("no-centering", "no mean subtracted, x / sqrt(var + eps)", {"center": "none"}),
    Mistake(
        "no-centering",
        "RMS normalisation, x / sqrt(mean(x²) + eps), with no mean subtracted",
        {"center": "rms"},
    ),
    Mistake(
        "wrong-axis", "a mean and variance over the positions (dim 1) instead of the channels", {"dims": (1,)}
    ),
    Mistake(
        "wrong-axis", "a mean and variance over the batch (dim 0) instead of the channels", {"dims": (0,)}
    ),
    Mistake(
        "wrong-axis",
        "a mean and variance over the positions and channels together (dims 1 and 2)",
        {"dims": (1, 2)},
    ),
    Mistake("wrong-axis", "a mean and variance over the whole tensor", {"dims": (0, 1, 2)}),
    Mistake(
        "gain-unused", "the normalised x plus the bias, with the gain never applied", {"use_gain": False}
    ),
    Mistake("bias-unused", "the normalised x times the gain, with the bias never added", {"use_bias": False}),
    Mistake(
        "gain-bias-unused",
        "the normalised x alone: neither the gain nor the bias is applied",
        {"use_gain": False, "use_bias": False},
    ),
    Mistake("bias-before-gain", "(x_hat + bias) * gain: shifted before it is scaled", {"order": "bias-gain"}),
]
_SWAPPED = Mistake(
    "gain-bias-swapped", "x_hat * bias + gain: the gain and the bias swap roles", {"order": "swapped"}
)
_EPS_VALUES = (1e-12, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _ln_input(C: int) -> torch.Tensor:
    """(2, 6, C): rows of very different scales and offsets, one row of equal values (0.5: its mean is exact
    in float32, so x - mean is exactly 0), rows with var ~ eps."""
    scales = torch.tensor([[3.0, 1.0, 10.0, 0.0, 3e-3, 0.5], [2.0, 2e-3, 0.2, 5.0, 1.0, 4e-3]])
    offsets = torch.tensor([[1.0, -2.0, 5.0, 0.5, 0.01, 0.0], [-1.0, 0.02, 3.0, -4.0, 0.5, -0.01]])
    return torch.randn(2, 6, C) * scales[..., None] + offsets[..., None]


@dataclass
class _LNParams:
    gain: nn.Parameter
    bias: nn.Parameter
    names: tuple[str, str]
    certain: bool  # names (or their initial values) said which is the gain


def _ln_params(module: nn.Module, C: int, name: str) -> _LNParams:
    """Find the gain and the bias (each n_embd values) and check that they start at ones and zeros."""
    params = dict(module.named_parameters())
    expected = (
        f"a gain (e.g. self.weight = nn.Parameter(torch.ones({C}))) and a bias "
        f"(self.bias = nn.Parameter(torch.zeros({C})))"
    )
    found = ", ".join(f"{n} {tuple(p.shape)}" for n, p in params.items()) or "none"
    vectors = {n: p for n, p in params.items() if p.numel() == C}
    if not params:
        raise CheckFailure(
            _LN,
            "missing-gain-bias",
            f"{name}({C}) has no parameters. Expected {expected}; a plain tensor attribute is not learned: "
            "wrap it in nn.Parameter.",
        )
    if len(vectors) != len(params) or len(vectors) > 2:
        raise CheckFailure(
            _LN, "wrong-params", f"{name}({C}) should hold exactly {expected}. Found: {found}."
        )
    if len(vectors) == 1:
        (only,) = vectors
        raise CheckFailure(
            _LN,
            "missing-gain-bias",
            f"{name}({C}) has one parameter ({only} {tuple(vectors[only].shape)}); LayerNorm needs two: {expected}.",
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
            raise CheckFailure(
                _LN,
                "init",
                f"a fresh {name}({C}) should start with the gain all ones and the bias all zeros; "
                f"{gn} starts at {_describe_values(g)} and {bn} at {_describe_values(b)}.",
            )
    return _LNParams(g, b, (gn, bn), certain)


def _describe_values(p: torch.Tensor) -> str:
    p = p.detach()
    if torch.all(p == p.flatten()[0]):
        return f"all {p.flatten()[0].item():g}"
    return f"values from {p.min().item():.3g} to {p.max().item():.3g}"


def _match_ln(
    out: torch.Tensor,
    x: torch.Tensor,
    readings: list[tuple[torch.Tensor, torch.Tensor]],
    mistakes: list[Mistake],
    eps: float,
) -> tuple[Mistake, ...] | None:
    """The mistake (or the pair of mistakes) whose LayerNorm equals `out` with some reading of the gain/bias."""
    for gain, bias in readings:
        for m in mistakes:
            if tensors_close(out, _ln(x, gain, bias, eps=eps, **m.kwargs)):
                return (m,)
    for gain, bias in readings:
        for a, b in itertools.combinations(mistakes, 2):
            if a.kwargs.keys().isdisjoint(b.kwargs) and tensors_close(
                out, _ln(x, gain, bias, eps=eps, **a.kwargs, **b.kwargs)
            ):
                return (a, b)
    return None


def _ln_nonfinite(what: str, out: torch.Tensor, x: torch.Tensor) -> CheckFailure:
    rows = x.reshape(-1, x.size(-1))
    flat_bad = ~torch.isfinite(out.detach().reshape(-1, out.size(-1))).all(-1)
    constant = rows.std(-1) == 0
    if flat_bad.any() and torch.equal(flat_bad, constant):
        return CheckFailure(
            _LN,
            "no-eps",
            f"{what} is NaN exactly on the row whose values are all equal: its variance is 0, and without eps "
            "inside the square root (x - mean) / sqrt(0) is 0 / 0.",
        )
    return CheckFailure(_LN, "nan", f"{what} holds NaN or inf values.")


def check_layer_norm(LayerNorm: Any) -> None:
    """Check `LayerNorm(n_embd, eps=1e-5)`: LayerNorm from scratch, equal to nn.LayerNorm with the same gain/bias."""
    with torch.random.fork_rng(devices=[]):  # the notebook's random stream stays as it was
        _check_layer_norm(LayerNorm)


def _check_layer_norm(LayerNorm: Any) -> None:
    ex, C = _LN, 16
    name = getattr(LayerNorm, "__name__", "LayerNorm")
    with seeded(0):
        module = build_module(ex, LayerNorm, C)
        x = _ln_input(C)
    p = _ln_params(module, C, name)
    with seeded(1), torch.no_grad():  # random gain and bias, so a missing or misplaced one shows
        p.gain.copy_(1 + 0.5 * torch.randn(p.gain.shape))
        p.bias.copy_(0.5 * torch.randn(p.bias.shape))
    readings = [(p.gain, p.bias)] if p.certain else [(p.gain, p.bias), (p.bias, p.gain)]
    what = f"{name}({C})(x) for x of shape {shape_str(x)}"
    raw = _run(ex, what, module, x)
    if isinstance(raw, torch.Tensor) and raw.shape == x.shape and not torch.isfinite(raw).all():
        raise _ln_nonfinite(what, raw, x)
    out = expect_tensor(ex, what, raw, shape=tuple(x.shape), dtype=torch.float32)

    reference = nn.LayerNorm(C)  # torch's, holding the learner's gain and bias
    good = None
    for gain, bias in readings:
        with torch.no_grad():
            reference.weight.copy_(gain.reshape(-1))
            reference.bias.copy_(bias.reshape(-1))
            if tensors_close(out, reference(x)):
                good = (gain, bias)
                break
    if good is None:
        mistakes = _LN_MISTAKES + ([_SWAPPED] if p.certain else [])
        found = _match_ln(out, x, readings, mistakes, eps=1e-5)
        if found:
            raise matched_failure(_LN, what, found)
        for eps in _EPS_VALUES:
            if any(tensors_close(out, _ln(x, g, b, eps=eps)) for g, b in readings):
                raise CheckFailure(
                    _LN,
                    "eps-value",
                    f"{what} matches LayerNorm with eps = {eps:g}; {name}({C}) should use the eps it is given "
                    "(default 1e-5).",
                )
        want = reference(x)
        raise CheckFailure(
            _LN,
            "wrong-values",
            f"{what}: only {fraction_close(out, want, atol=1e-4, rtol=1e-3):.0%} of the values equal "
            f"nn.LayerNorm({C}) with your gain and bias (largest difference {max_diff(out, want):.3g}), and "
            "the output matches none of the usual mistakes. Each position's C channels should come out with "
            "mean 0 and variance 1 before the gain and the bias are applied.",
        )
    gain, bias = good
    verified = [
        f"equals nn.LayerNorm({C}) with your gain and bias on rows of every scale (a constant row too)"
    ]

    # The eps argument must be used.
    with seeded(0):
        module2 = build_module(ex, LayerNorm, C, eps=0.1)
    with torch.no_grad():
        for mine, theirs in zip(module2.parameters(), module.parameters(), strict=True):
            mine.copy_(theirs)
    what2 = f"{name}({C}, eps=0.1)(x)"
    out2 = expect_tensor(ex, what2, _run(ex, what2, module2, x), shape=tuple(x.shape), dtype=torch.float32)
    if not tensors_close(out2, _ln(x, gain, bias, eps=0.1)):
        if tensors_close(out2, _ln(x, gain, bias, eps=1e-5)):
            raise CheckFailure(
                _LN,
                "eps-ignored",
                f"{what2} gives the same output as eps=1e-5: the eps argument is ignored.",
            )
        raise CheckFailure(_LN, "eps-ignored", f"{what2} is not LayerNorm with eps = 0.1.")
    verified.append("uses its eps")

    # Any number of leading dims: (N, C) and (C,).
    for shape in ((5, C), (C,)):
        with seeded(2):
            xs = 2 * torch.randn(*shape) + 1
        what_s = f"{name}({C})(x) for x of shape {shape}"
        try:
            got = expect_tensor(ex, what_s, _run(ex, what_s, module, xs), shape=shape, dtype=torch.float32)
        except CheckFailure as e:
            if e.diagnosis not in ("crashed", "wrong-shape"):
                raise
            raise CheckFailure(
                _LN,
                "fixed-rank",
                f"{e.message} (B, T, C) inputs worked: LayerNorm must work for any number of leading dims. "
                "Take the mean and variance over dim=-1, and give the gain and bias the shape (n_embd,).",
            ) from None
        if not tensors_close(got, _ln(xs, gain, bias)):
            raise CheckFailure(
                _LN,
                "fixed-rank",
                f"{what_s} is wrong, although (B, T, C) inputs were right: take the mean and variance over "
                "dim=-1 (the last dim, whatever the rank), not dim=2.",
            )
    verified.append("works for (N, C) and (C,) inputs")

    xg = x.clone().requires_grad_()
    _gradients(ex, module, xg, _run(ex, what, module, xg))
    verified.append("gradients reach the gain, the bias and x; x left untouched")
    passed(ex, "; ".join(verified) + ".")


# ==== 4.2 block =====================================================================================

_BLOCK = "block"

register_hints(
    _BLOCK,
    levels=[
        "A block is two sub-layers on the residual pathway. Each one reads a LayerNorm'd copy of x and ADDS "
        "its result to x; x itself is never normalised or replaced. Attention (communication) comes first, "
        "then the MLP (computation).",
        "In __init__ make four sub-modules: two LayerNorms (ln1 before attention, ln2 before the MLP: each "
        "learns its own gain and bias), a CausalSelfAttention and an MLP; gptlib has both "
        "(from gptlib import CausalSelfAttention, MLP), or use yours from lessons 02 and 03. forward has two "
        "lines, each of the form x = x + sublayer(norm(x)).",
        "__init__(self, config):\n"
        "    super().__init__()\n"
        "    self.ln1 = nn.LayerNorm(config.n_embd)\n"
        "    self.attn = CausalSelfAttention(config)\n"
        "    self.ln2 = nn.LayerNorm(config.n_embd)\n"
        "    self.mlp = MLP(config)\n"
        "forward(self, x):                          # (B, T, C)\n"
        "    x = x + self.attn(self.ln1(x))         # communicate\n"
        "    x = x + self.mlp(self.ln2(x))          # compute\n"
        "    return x",
    ],
    diagnoses={
        "no-residual-attn": "add the attention's output to x instead of replacing x: x = x + self.attn(self.ln1(x)).",
        "no-residual-mlp": "add the MLP's output to x instead of replacing x: x = x + self.mlp(self.ln2(x)).",
        "no-residual": "both sub-layers add to the residual pathway: x = x + sublayer(norm(x)), twice.",
        "post-norm": "pre-norm normalises the INPUT of each sub-layer and leaves the sum alone: "
        "x = x + self.attn(self.ln1(x)), not x = self.ln1(x + self.attn(x)).",
        "norm-in-residual": "do not overwrite x with its normalised copy (x = self.ln1(x)); pass the normalised "
        "copy to the sub-layer only: x = x + self.attn(self.ln1(x)).",
        "no-layernorm": "each sub-layer reads a normalised copy of x: self.attn(self.ln1(x)) and self.mlp(self.ln2(x)).",
        "same-layernorm": "make two LayerNorms, ln1 for attention and ln2 for the MLP: each has its own gain and "
        "bias, because the two sub-layers want differently scaled inputs.",
        "mlp-first": "attention comes first (the tokens communicate), then the MLP (each token computes on what "
        "it gathered).",
        "parallel": "the MLP reads x AFTER the attention's update: two lines, one after the other, "
        "x = x + self.attn(self.ln1(x)) then x = x + self.mlp(self.ln2(x)).",
        "sublayer-unused": "forward must use both sub-layers: attention, then the MLP.",
        "future-leak": "a block is causal if its attention is: use gptlib's CausalSelfAttention, or fix the mask "
        "of yours (lesson 02). A LayerNorm must normalise over the channels (dim=-1) only.",
        "attention-differs": "check your attention with check_attention (lesson 02), or use gptlib's: "
        "from gptlib import CausalSelfAttention.",
        "mlp-differs": "the MLP is Linear(C, 4C), GELU, Linear(4C, C), Dropout; check it against lesson 03 or use "
        "gptlib's: from gptlib import MLP.",
        "layernorm-differs": "check your LayerNorm with check_layer_norm, or use nn.LayerNorm(config.n_embd).",
        "wrong-params": "the block holds two LayerNorms, one attention and one MLP, as attributes set in __init__.",
        "in-place": "write x = x + ..., not x += ...: += changes the caller's tensor.",
        "no-dropout": "keep the dropout of the sub-modules (attn_pdrop, resid_pdrop): gptlib's have it built in.",
        "dropout-in-eval": "use nn.Dropout modules (they switch off in eval mode), not F.dropout without "
        "training=self.training.",
    },
)


def _subcall(sub: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """A sub-module's output; an attention that returns (y, weights) counts as y."""
    out = sub(z)
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    return out


@dataclass
class _BlockParts:
    """The learner's sub-modules by role: two LayerNorms (in registration order), attention, MLP."""

    norms: list[tuple[str, nn.Module]]
    attn: tuple[str, nn.Module]
    mlp: tuple[str, nn.Module]


def _linear_shapes(m: nn.Module) -> list[tuple[int, int]]:
    return [tuple(s.weight.shape) for s in m.modules() if isinstance(s, nn.Linear)]


def _is_norm(m: nn.Module, C: int) -> bool:
    if isinstance(m, nn.LayerNorm):
        return True
    params = list(m.parameters())
    return (
        bool(params)
        and len(params) <= 2
        and all(p.numel() == C for p in params)
        and not any(isinstance(s, nn.Linear) for s in m.modules())
    )


def _is_mlp(name: str, m: nn.Module, C: int) -> bool:
    if isinstance(m, _RefMLP):
        return True
    if isinstance(m, _RefAttention):
        return False
    shapes = _linear_shapes(m)
    by_shape = (4 * C, C) in shapes and (C, C) not in shapes and (3 * C, C) not in shapes
    return by_shape or bool(re.search(r"mlp|ff|feed", name.lower()))


def _is_attention(name: str, m: nn.Module, C: int) -> bool:
    if isinstance(m, (_RefAttention, nn.MultiheadAttention)):
        return True
    if re.search(r"attn|atten|^sa$|heads", name.lower()):
        return True
    # q/k/v/output projections (C, C), a fused (3C, C), or one (head_size, C) per head
    return any(s[1] == C and (s[0] in (C, 3 * C) or C % s[0] == 0) for s in _linear_shapes(m))


def _describe_children(block: nn.Module) -> str:
    lines = []
    for n, m in block.named_children():
        count = sum(p.numel() for p in m.parameters())
        lines.append(f"  - {n}: {type(m).__name__} ({count} parameters)")
    return "\n".join(lines) or "  (no sub-modules)"


def _find_parts(block: nn.Module, C: int, name: str) -> _BlockParts:
    norms, attns, mlps, others = [], [], [], []
    for n, m in block.named_children():
        if not any(True for _ in m.parameters()):
            continue  # dropout, activations, ...
        if _is_norm(m, C):
            norms.append((n, m))
        elif _is_mlp(n, m, C):
            mlps.append((n, m))
        elif _is_attention(n, m, C):
            attns.append((n, m))
        else:
            others.append((n, m))
    expected = (
        "Expected four sub-modules set in __init__: two LayerNorms over n_embd channels (e.g. ln1, ln2), a "
        "causal self-attention (e.g. attn = CausalSelfAttention(config)) and an MLP (e.g. mlp = MLP(config))."
    )
    if len(norms) == 0:
        raise CheckFailure(
            _BLOCK,
            "no-layernorm",
            f"I found no LayerNorm in your {name}. {expected}\nFound:\n{_describe_children(block)}",
        )
    if len(norms) == 1:
        raise CheckFailure(
            _BLOCK,
            "same-layernorm",
            f"your {name} has one LayerNorm ({norms[0][0]}); pre-norm needs two, one before the attention and "
            f"one before the MLP, each with its own gain and bias.\nFound:\n{_describe_children(block)}",
        )
    if len(norms) > 2 or len(attns) != 1 or len(mlps) != 1 or others:
        raise CheckFailure(
            _BLOCK,
            "wrong-params",
            f"I could not tell the parts of your {name} apart. {expected}\n"
            f"Found:\n{_describe_children(block)}",
        )
    return _BlockParts(norms, attns[0], mlps[0])


# The compositions: right, and the known mistakes. A, M: attention and MLP; La, Lb: the LayerNorm read
# before attention and before the MLP.
def _compose(
    x: torch.Tensor, A: Callable, M: Callable, La: Callable, Lb: Callable, kind: str
) -> torch.Tensor:
    if kind == "right":
        h = x + A(La(x))
        return h + M(Lb(h))
    if kind == "no-residual-attn":
        h = A(La(x))
        return h + M(Lb(h))
    if kind == "no-residual-mlp":
        h = x + A(La(x))
        return M(Lb(h))
    if kind == "no-residual":
        return M(Lb(A(La(x))))
    if kind == "post-norm":
        h = La(x + A(x))
        return Lb(h + M(h))
    if kind == "norm-in-residual":
        h = La(x)
        h = h + A(h)
        h = Lb(h)
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
    if kind == "mlp-unused":
        return x + A(La(x))
    if kind == "attn-unused":
        return x + M(Lb(x))
    if kind == "identity":
        return x
    raise ValueError(kind)


_BLOCK_MISTAKES = {
    "no-residual-attn": (
        "no-residual-attn",
        "x = self.attn(self.ln1(x)): the attention's output REPLACES x "
        "instead of being added to it (no residual around the attention)",
    ),
    "no-residual-mlp": (
        "no-residual-mlp",
        "x = self.mlp(self.ln2(x)): the MLP's output replaces x (no residual around the MLP)",
    ),
    "no-residual": ("no-residual", "a stack with no residual at all: mlp(ln2(attn(ln1(x))))"),
    "post-norm": (
        "post-norm",
        "post-norm, x = ln1(x + attn(x)) then ln2(x + mlp(x)): the LayerNorms sit on "
        "the residual pathway, after the sums, instead of before each sub-layer",
    ),
    "norm-in-residual": (
        "norm-in-residual",
        "x = ln1(x); x = x + attn(x) (and the same for the MLP): x "
        "itself is replaced by its normalised copy, so the pathway is normalised at every step",
    ),
    "no-layernorm": ("no-layernorm", "x + attn(x), then + mlp(x): the sub-layers read x without a LayerNorm"),
    "same-layernorm": ("same-layernorm", "the same LayerNorm used before the attention AND before the MLP"),
    "mlp-first": ("mlp-first", "the MLP applied before the attention"),
    "parallel": (
        "parallel",
        "x + attn(ln1(x)) + mlp(ln2(x)): the MLP reads the block's input, not x after the attention's update",
    ),
    "mlp-unused": ("sublayer-unused", "x + attn(ln1(x)) alone: the MLP is never applied"),
    "attn-unused": ("sublayer-unused", "x + mlp(ln2(x)) alone: the attention is never applied"),
    "identity": ("sublayer-unused", "the input x, unchanged: neither sub-layer contributes"),
}


def _randomise_norms(parts: _BlockParts) -> None:
    """Distinct random gains and biases, so the two LayerNorms (and their absence) can be told apart."""
    with seeded(7), torch.no_grad():
        for _, norm in parts.norms:
            gain, bias = _gain_bias(norm)
            gain.copy_(1 + 0.5 * torch.randn(gain.shape))
            if bias is not None:
                bias.copy_(0.5 * torch.randn(bias.shape))


def _leak(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> list[int]:
    """Positions before T // 2 whose output moves when every later position of x changes."""
    T = x.size(1)
    t0 = T // 2
    with seeded(3):
        x2 = x.clone()
        x2[:, t0:] += 2 * torch.randn_like(x2[:, t0:])
    a, b = forward(x), forward(x2)
    return [t for t in range(t0) if not tensors_close(a[:, t], b[:, t], atol=1e-5, rtol=1e-4)]


def _leak_failure(what: str, moved: list[int], x: torch.Tensor, parts: _BlockParts) -> CheckFailure:
    T, t0 = x.size(1), x.size(1) // 2
    culprit = ""
    for n, m in parts.norms:
        if _leak(lambda z, m=m: _subcall(m, z), x):
            culprit = f" The culprit is `{n}`: your LayerNorm mixes positions; normalise over dim=-1 only."
            break
    else:
        n, m = parts.attn
        if _leak(lambda z, m=m: _subcall(m, z), x):
            culprit = f" The culprit is `{n}`: your attention lets positions see the future (its mask)."
    return CheckFailure(
        _BLOCK,
        "future-leak",
        f"{what}: future tokens leak. Changing the input at positions {t0}..{T - 1} changed the output at "
        f"earlier positions {moved}.{culprit}",
    )


def _gain_bias(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A LayerNorm's gain and bias (None if it has none), by name, else in registration order."""
    named = [(n.rsplit(".", 1)[-1].lower(), p) for n, p in norm.named_parameters()]
    if len(named) == 2 and _BIAS_NAME.search(named[0][0]) and not _BIAS_NAME.search(named[1][0]):
        named.reverse()
    return named[0][1], (named[1][1] if len(named) == 2 else None)


def _copy_norm(dst: nn.LayerNorm, src: nn.Module) -> None:
    gain, bias = _gain_bias(src)
    dst.weight.copy_(gain.reshape(-1))
    dst.bias.copy_(bias.reshape(-1)) if bias is not None else dst.bias.zero_()


def _copy_linear(dst: nn.Linear, src: nn.Linear) -> None:
    dst.weight.copy_(src.weight)
    if src.bias is not None:
        dst.bias.copy_(src.bias)
    else:
        dst.bias.zero_()


def _copy_attention(ref: _RefAttention, attn: nn.Module, z: torch.Tensor, C: int, n_head: int) -> bool:
    """Load the learner's attention weights into gptlib's; True if some reading reproduces their output."""
    want = _subcall(attn, z)
    if isinstance(attn, _RefAttention):
        ref.load_state_dict(attn.state_dict())
        return tensors_close(ref(z), want, atol=1e-5, rtol=1e-4)
    # the attention checks' reader of projections: separate, fused or per-head, whatever their names
    from gptlib.checks._attention_reference import find_projections, load_weights

    for w in find_projections(attn, C, C, with_proj=True).candidates:
        load_weights(ref, w)
        if tensors_close(ref(z), want, atol=1e-5, rtol=1e-4):
            return True
    return False


def _copy_mlp(ref: _RefMLP, mlp: nn.Module, C: int) -> bool:
    """Load the learner's MLP weights into gptlib's; False if its Linear layers are not (4C, C) and (C, 4C)."""
    if isinstance(mlp, _RefMLP):
        ref.load_state_dict(mlp.state_dict())
        return True
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    fc = [m for m in linears if tuple(m.weight.shape) == (4 * C, C)]
    proj = [m for m in linears if tuple(m.weight.shape) == (C, 4 * C)]
    if len(linears) != 2 or len(fc) != 1 or len(proj) != 1:
        return False
    _copy_linear(ref.fc, fc[0])
    _copy_linear(ref.proj, proj[0])
    return True


def _mlp_activation_note(ref: _RefMLP, mlp: nn.Module, z: torch.Tensor) -> str:
    got = _subcall(mlp, z)
    for act, words in (
        (F.relu, "ReLU"),
        (lambda t: F.gelu(t, approximate="tanh"), "the tanh-approximate GELU"),
        (lambda t: t, "no activation at all"),
    ):
        if tensors_close(got, ref.proj(act(ref.fc(z)))):
            return f" It matches an MLP with {words} instead of the exact GELU (nn.GELU())."
    return ""


def _sub_module_failure(
    name: str,
    parts: _BlockParts,
    ref: _RefBlock,
    x: torch.Tensor,
    order: tuple[int, int],
    C: int,
    n_head: int,
) -> CheckFailure | None:
    """The wiring is right; compare each sub-module with gptlib's holding the same weights."""
    la, lb = (parts.norms[i][1] for i in order)
    la_x = _subcall(la, x)
    for (n, norm), ref_norm in zip(
        (parts.norms[order[0]], parts.norms[order[1]]), (ref.ln1, ref.ln2), strict=True
    ):
        _copy_norm(ref_norm, norm)
        if not tensors_close(_subcall(norm, x), ref_norm(x)):
            return CheckFailure(
                _BLOCK,
                "layernorm-differs",
                f"your {name} is wired right, but `{n}` differs from nn.LayerNorm({C}) with the same gain and "
                f"bias ({fraction_close(_subcall(norm, x), ref_norm(x)):.0%} of the values match).",
            )
    an, attn = parts.attn
    if not _copy_attention(ref.attn, attn, la_x, C, n_head):
        return CheckFailure(
            _BLOCK,
            "attention-differs",
            f"your {name} is wired right, but `{an}` ({type(attn).__name__}) does not compute what "
            "gptlib.CausalSelfAttention computes with the same weights (or its layers are not the query, key, "
            "value and output projections it expects).",
        )
    mn, mlp = parts.mlp
    z = _subcall(lb, x + _subcall(attn, la_x))
    if not _copy_mlp(ref.mlp, mlp, C):
        shapes = ", ".join(f"Linear{s[::-1]}" for s in _linear_shapes(mlp)) or "no Linear layers"
        return CheckFailure(
            _BLOCK,
            "mlp-differs",
            f"`{mn}` should hold Linear({C}, {4 * C}) and Linear({4 * C}, {C}); it holds {shapes}.",
        )
    if not tensors_close(_subcall(mlp, z), ref.mlp(z)):
        return CheckFailure(
            _BLOCK,
            "mlp-differs",
            f"your {name} is wired right, but `{mn}` differs from gptlib's MLP with the same weights "
            f"({fraction_close(_subcall(mlp, z), ref.mlp(z)):.0%} of the values match)."
            + _mlp_activation_note(ref.mlp, mlp, z),
        )
    return None


def check_block(Block: Any) -> None:
    """Check `Block(config)`: x + attn(ln1(x)), then x + mlp(ln2(x)); compared with gptlib.Block holding the
    learner's weights, after the wiring is checked with the learner's own sub-modules."""
    with torch.random.fork_rng(devices=[]):  # the notebook's random stream stays as it was
        _check_block(Block)


def _check_block(Block: Any) -> None:
    ex = _BLOCK
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=4, n_embd=32)
    C = config.n_embd
    name = getattr(Block, "__name__", "Block")
    with seeded(0):
        block = build_module(ex, Block, config)
        x = 3 * torch.randn(2, config.block_size - 1, C) + 1  # shorter than block_size; far from unit scale
        x_full, x_one = 3 * torch.randn(2, config.block_size, C) - 1, 3 * torch.randn(3, 1, C)
    block.eval()
    what = f"{name}.forward(x) for x of shape {shape_str(x)}"

    def forward(inp: torch.Tensor) -> torch.Tensor:
        w = f"{name}.forward(x) for x of shape {shape_str(inp)}"
        return expect_tensor(
            ex,
            w,
            _run(ex, w, block, inp),
            shape=tuple(inp.shape),
            dtype=torch.float32,
            shape_names="(B, T, C), like x",
        )

    with torch.no_grad():
        out = forward(x)
        if not tensors_close(out, forward(x), atol=1e-6, rtol=1e-5):
            raise CheckFailure(
                ex,
                "dropout-in-eval",
                f"{what} gave different outputs for the same x in eval mode: dropout is "
                "still on. nn.Dropout switches itself off in eval(); F.dropout needs training=self.training.",
            )
    parts = _find_parts(block, C, name)
    _randomise_norms(parts)
    A = parts.attn[1]
    M = parts.mlp[1]
    L = [m for _, m in parts.norms]

    def sub(m: nn.Module, role: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(z: torch.Tensor) -> torch.Tensor:
            w = f"your {role} sub-module ({type(m).__name__})"
            return expect_tensor(ex, w, call(ex, w, _subcall, m, z), shape=tuple(z.shape))

        return run

    As, Ms = sub(A, "attention"), sub(M, "MLP")
    Ls = [sub(n, "LayerNorm") for n in L]
    with torch.no_grad():
        out = forward(x)
        moved = _leak(forward, x_full)
        if moved:
            raise _leak_failure(f"{name}.forward(x) for x of shape {shape_str(x_full)}", moved, x_full, parts)
        order = None
        for o in ((0, 1), (1, 0)):
            if tensors_close(out, _compose(x, As, Ms, Ls[o[0]], Ls[o[1]], "right")):
                order = o
                break
        if order is None:
            for kind, (code, says) in _BLOCK_MISTAKES.items():
                for o in ((0, 1), (1, 0)):
                    if tensors_close(out, _compose(x, As, Ms, Ls[o[0]], Ls[o[1]], kind)):
                        raise CheckFailure(ex, code, f"{what} matches {says}.")
            want = _compose(x, As, Ms, Ls[0], Ls[1], "right")
            raise CheckFailure(
                ex,
                "wrong-values",
                f"{what}: only {fraction_close(out, want, atol=1e-4, rtol=1e-3):.0%} of the values equal "
                f"x + attn(ln1(x)) followed by x + mlp(ln2(x)) computed with your own sub-modules (largest "
                f"difference {max_diff(out, want):.3g}), and the output matches none of the usual wirings.",
            )
        ref = _RefBlock(config).eval()
        failure = _sub_module_failure(name, parts, ref, x, order, C, config.n_head)
        if failure:
            raise failure
        for inp in (x, x_full, x_one):
            got, want = forward(inp), ref(inp)
            if not tensors_close(got, want):
                raise CheckFailure(
                    ex,
                    "wrong-values",
                    f"{name}.forward(x) for x of shape {shape_str(inp)}: {fraction_close(got, want):.0%} of the "
                    f"values equal gptlib.Block holding your weights (largest difference {max_diff(got, want):.3g}).",
                )
    xg = x.clone().requires_grad_()
    n_params = _gradients(ex, block, xg, forward(xg))

    block.train()
    with seeded(4), torch.no_grad():
        a, b = forward(x_full), forward(x_full)
    if tensors_close(a, b, atol=1e-6, rtol=1e-5):
        raise CheckFailure(
            ex,
            "no-dropout",
            f"{name} in train mode gave the same output twice for the same x: no dropout anywhere. gptlib's "
            "CausalSelfAttention and MLP drop out (attn_pdrop, resid_pdrop) in train mode; if you wrote your "
            "own, give them nn.Dropout layers.",
        )
    passed(
        ex,
        "pre-norm wiring right (x + attn(ln1(x)), then x + mlp(ln2(x))); equals gptlib.Block with your weights "
        f"for T = 1, {config.block_size - 1} and {config.block_size}; causal; dropout in train mode only; "
        f"gradients reach all {n_params} parameter tensors and x; x left untouched.",
    )
