"""Checks for lesson 02, masked self-attention: causal_average, masked_softmax, Head, CausalSelfAttention.

Each check runs the learner's code next to a reference on the same inputs (and, for
the layers, the LEARNER's weights copied into the reference). When the outputs differ
it does not stop at "values differ": it computes the reference with one known mistake
switched on at a time (and every pair of them) — no scale, softmax over the wrong
axis, no mask, heads merged without the transpose, no projection, ... — and names the
mistake the learner's output matches. A wrong scale is estimated and its factor
reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from gptlib.attention import CausalSelfAttention as _ReferenceAttention
from gptlib.checks._attention_hints import register as _register_hints
from gptlib.checks._attention_reference import (
    AttentionWeights,
    attention_weights,
    expected_layouts,
    find_projections,
    load_weights,
    reference_attention,
)
from gptlib.checks.base import (
    CheckFailure,
    build_module,
    call,
    error_only,
    expect_tensor,
    fraction_close,
    isolated,
    max_diff,
    passed,
    seeded,
    shape_str,
)
from gptlib.checks.mistakes import (
    Mistake,
    close,
    fit_scale,
    match,
    matched_failure,
    scale_mistakes,
    scale_words,
)
from gptlib.config import GPTConfig

__all__ = ["check_causal_average", "check_masked_softmax", "check_head", "check_attention"]


def _nonfinite_positions(out: torch.Tensor, dim: int) -> list[int]:
    """Positions (along `dim`) where the output has a NaN or an inf."""
    bad = ~torch.isfinite(out.detach())
    other = [d for d in range(out.dim()) if d != dim % out.dim()]
    return torch.nonzero(bad.any(dim=other) if other else bad).flatten().tolist()


def _nonfinite_failure(exercise: str, what: str, out: torch.Tensor, dim: int) -> CheckFailure:
    """Name the likely cause from where the NaN/inf values sit (dim: the query positions)."""
    T = out.size(dim)
    bad = _nonfinite_positions(out, dim)
    kind = "NaN" if torch.isnan(out).any() else "inf"
    if len(bad) == T and T > 1:
        return CheckFailure(
            exercise,
            "nan-0-inf",
            f"{what} is {kind} at every position. The usual cause is a mask built with arithmetic, "
            "e.g. `scores * mask + (1 - mask) * float('-inf')`: where the mask is 1 that computes "
            "0 * -inf = NaN. Replace the hidden scores instead: masked_fill(mask == 0, float('-inf')).",
        )
    if bad == [0]:
        return CheckFailure(
            exercise,
            "row-masked",
            f"{what} is {kind} at position 0 only. Position 0's whole row of scores is masked: a softmax "
            "over nothing but -inf is 0/0 = NaN. The mask must keep the diagonal (every position may "
            "look at itself): torch.tril(...) with the default diagonal=0.",
        )
    if bad == list(range(T - 1)):
        return CheckFailure(
            exercise,
            "nan",
            f"{what} is {kind} at every position except the last, the only one with nothing masked: the "
            "-inf of the mask reaches the output. Either the softmax runs over an axis where a whole slice "
            "is -inf (it must be dim=-1, over the keys), or the mask is applied after the softmax.",
        )
    return CheckFailure(exercise, "nan", f"{what} has {kind} values at positions {bad} (of 0..{T - 1}).")


# ---- running learner code ------------------------------------------------------------------------


def _run(
    exercise: str, what: str, fn: Callable[[torch.Tensor], Any], x: torch.Tensor, works_for: str = ""
) -> Any:
    """fn(x) under plain-words errors; fails if fn changes x in place. works_for: sizes that worked
    already (a crash now means the code is tied to one size)."""
    before, version = x.clone(), x._version
    try:
        out = call(exercise, what, fn, x)
    except CheckFailure as e:
        if works_for and e.diagnosis == "crashed":
            raise CheckFailure(
                exercise,
                "fixed-T",
                f"{what} crashes, but it worked for {works_for}: your code is tied to one length. "
                f"Take T from the input (x.size(1) / scores.size(-1)), and slice a stored mask to it "
                f"(mask[:T, :T]). The error: {error_only(e, what)}",
            ) from None
        raise
    if x._version != version or not torch.equal(x, before):
        raise CheckFailure(
            exercise,
            "in-place",
            f"{what} changed its input in place, and the caller may still need it (in a GPT the residual "
            "connection adds x back later). Use out-of-place operations: masked_fill, not masked_fill_; "
            "y = x + ..., not x += ....",
        )
    return out


def _output(exercise: str, what: str, out: Any, shape: tuple[int, ...], dim: int) -> torch.Tensor:
    """The learner's output as a finite float32 tensor of the expected shape, or a named failure."""
    try:
        return expect_tensor(exercise, what, out, shape=shape, dtype=torch.float32)
    except CheckFailure as e:
        if e.diagnosis == "nan":
            raise _nonfinite_failure(exercise, what, out, dim) from None
        raise


# ---- 2.1 causal_average ----------------------------------------------------------------------------


def _average(x: torch.Tensor, kind: str = "right") -> torch.Tensor:
    """The running mean over time of x (B, T, C), and the ways it goes wrong."""
    T, C = x.size(1), x.size(2)
    counts = torch.arange(1, T + 1, dtype=x.dtype).view(1, T, 1)
    if kind == "right":
        return x.cumsum(1) / counts
    if kind == "all":
        return x.mean(1, keepdim=True).expand_as(x)
    if kind == "future":
        return x.flip(1).cumsum(1).flip(1) / counts.flip(1)
    if kind == "divide-by-T":
        return x.cumsum(1) / T
    if kind == "sum":
        return x.cumsum(1)
    if kind == "past-only":  # mean of positions < t; position 0 has none: 0
        past = torch.cat([torch.zeros_like(x[:, :1]), x.cumsum(1)[:, :-1]], dim=1)
        return past / (counts - 1).clamp(min=1)
    if kind == "channels":
        return x.cumsum(2) / torch.arange(1, C + 1, dtype=x.dtype)
    raise ValueError(kind)


_AVERAGE_MISTAKES = [
    Mistake("not-causal", "the mean over ALL positions, the future included", {"kind": "all"}),
    Mistake(
        "mask-transposed", "the mean over positions t..T-1 (the future) instead of 0..t", {"kind": "future"}
    ),
    Mistake("wrong-divisor", "the running sum divided by T instead of by t + 1", {"kind": "divide-by-T"}),
    Mistake("sum-not-mean", "the running sum, never divided", {"kind": "sum"}),
    Mistake(
        "excludes-self", "the mean of the positions before t, leaving out t itself", {"kind": "past-only"}
    ),
    Mistake(
        "wrong-axis",
        "a running mean over the channels (dim 2) instead of over time (dim 1)",
        {"kind": "channels"},
    ),
]


@isolated
def check_causal_average(causal_average: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check `causal_average(x)`: (B, T, C) -> (B, T, C), position t the mean of x[:, :t+1]."""
    ex = "causal_average"
    if not callable(causal_average):
        raise CheckFailure(
            ex, "not-callable", f"pass your function itself, got {type(causal_average).__name__}."
        )
    with seeded(0):
        xs = [torch.randn(2, 8, 3), torch.randn(1, 1, 4), torch.randn(3, 13, 2)]
    done: list[str] = []
    for x in xs:
        what = f"causal_average(x) for x of shape {shape_str(x)}"
        out = _run(ex, what, causal_average, x, works_for=", ".join(done))
        try:
            out = _output(ex, what, out, tuple(x.shape), dim=1)
        except CheckFailure as e:
            if e.diagnosis == "row-masked":  # NaN at t = 0 only: 0/0, an average over no positions
                raise CheckFailure(
                    ex,
                    "excludes-self",
                    f"{what} is NaN at position 0 only: 0/0, an average over no positions. Position t "
                    "averages positions 0..t, itself included (torch.tril keeps the diagonal).",
                ) from None
            raise
        want = _average(x)
        if not close(out, want):
            found = match(out, partial(_average, x), _AVERAGE_MISTAKES, pairs=False)
            if found:
                raise matched_failure(ex, what, found)
            raise CheckFailure(
                ex,
                "wrong-values",
                f"{what}: {fraction_close(out, want):.0%} of the values are right (largest difference "
                f"{max_diff(out, want):.3g}). Position 0 must equal x[:, 0], position 1 the mean of "
                "x[:, 0] and x[:, 1], and so on.",
            )
        done.append(f"T = {x.size(1)}")
    passed(ex, f"running means right for {', '.join(done)}; causal; x left untouched.")


# ---- 2.2 masked_softmax ----------------------------------------------------------------------------

_WEIGHT_MISTAKES = [
    Mistake(
        "softmax-axis",
        "a softmax over dim -2 (the queries): each COLUMN sums to 1 instead of each row",
        {"softmax_dim": -2},
    ),
    Mistake(
        "no-mask", "attention without the causal mask: every position also sees the future", {"mask": "none"}
    ),
    Mistake(
        "mask-transposed",
        "a flipped mask (torch.triu instead of torch.tril): each position sees itself and the FUTURE",
        {"mask": "upper"},
    ),
    Mistake(
        "row-masked",
        "a mask that hides the diagonal too (tril(..., diagonal=-1)): position 0 has no key left, "
        "so its row is spread over every position, the future included",
        {"mask": "strict", "fill": -1e9},
    ),
    Mistake(
        "mask-after-softmax",
        "the mask applied after the softmax: the future gets weight 0 but the rows no longer sum to 1",
        {"mask_after": "zero"},
    ),
]


@isolated
def check_masked_softmax(masked_softmax: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check `masked_softmax(scores)`: (..., T, T) -> weights (..., T, T), causal, rows summing to 1."""
    ex = "masked_softmax"
    if not callable(masked_softmax):
        raise CheckFailure(
            ex, "not-callable", f"pass your function itself, got {type(masked_softmax).__name__}."
        )
    with seeded(0):
        all_scores = [2 * torch.randn(*shape) for shape in ((2, 8, 8), (8, 8), (2, 3, 5, 5), (1, 1))]
    mistakes = _WEIGHT_MISTAKES + [
        Mistake(
            "softmax-axis",
            "a softmax over dim 1; use dim=-1 (the keys), right for any leading dims",
            {"softmax_dim": 1},
        ),
    ]
    done: list[str] = []
    for scores in all_scores:
        what = f"masked_softmax(scores) for scores of shape {shape_str(scores)}"
        out = _run(ex, what, masked_softmax, scores, works_for=", ".join(done))
        if isinstance(out, torch.Tensor) and out.shape == scores.shape and torch.isinf(out).any():
            if not torch.isnan(out).any():
                raise CheckFailure(
                    ex,
                    "mask-after-softmax",
                    f"{what} holds -inf weights: the mask was applied after the softmax. Weights are "
                    "probabilities (0..1): fill the SCORES with -inf, then take the softmax.",
                )
        out = _output(ex, what, out, tuple(scores.shape), dim=-2)
        want = attention_weights(scores)
        if not close(out, want):
            found = match(out, partial(attention_weights, scores), mistakes)
            if found:
                raise matched_failure(ex, what, found)
            scale = fit_scale(out, partial(_scaled_weights, scores))
            if scale is not None:
                raise CheckFailure(
                    ex,
                    "extra-scale",
                    f"{what} matches the right weights of the scores multiplied by {scale:.3g}. "
                    "masked_softmax should only mask and normalise: the scores come in already scaled.",
                )
            raise _weights_failure(ex, what, out, want)
        done.append(shape_str(scores))
    passed(ex, f"causal softmax weights right for scores of shapes {', '.join(done)}; scores left untouched.")


def _scaled_weights(scores: torch.Tensor, scale: float) -> torch.Tensor:
    """The right weights of scores * scale (a learner who scales inside masked_softmax)."""
    return attention_weights(scores * scale)


def _weights_failure(ex: str, what: str, out: torch.Tensor, want: torch.Tensor) -> CheckFailure:
    """No known mistake matched: say which property of attention weights is broken."""
    T = out.size(-1)
    future = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    if (out.masked_select(future) != 0).any():
        return CheckFailure(
            ex,
            "future-leak",
            f"{what} gives weight to the future: entries above the diagonal (key > query) must be exactly 0.",
        )
    sums = out.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return CheckFailure(
            ex,
            "not-normalised",
            f"{what}: the rows sum to values from {sums.min().item():.3g} to {sums.max().item():.3g}; each "
            "query's weights over the keys must sum to 1 (softmax over dim=-1, after masking).",
        )
    return CheckFailure(
        ex,
        "wrong-values",
        f"{what}: causal and normalised, but only {fraction_close(out, want):.0%} of the weights are "
        f"right (largest difference {max_diff(out, want):.3g}). Use the scores as they are: mask, then softmax.",
    )


# ---- 2.3 Head and 2.4 CausalSelfAttention ----------------------------------------------------------

_LAYER_MISTAKES = [
    Mistake(
        "qk-swapped",
        "scores k @ q^T instead of q @ k^T (keys and queries swapped): row t must be query t against every key",
        {"swap_qk": True},
    ),
]
_HEAD_MISTAKES = [
    Mistake(
        "merge-order",
        "heads merged with y.view(B, T, C) without y.transpose(1, 2) first: positions get mixed between heads",
        {"merge": "view"},
    ),
    Mistake(
        "merge-order",
        "heads merged in the wrong order (channel 0 of every head first, then channel 1, ...)",
        {"merge": "interleave"},
    ),
    Mistake(
        "head-split",
        "heads split with .view(B, n_head, T, head_size) instead of .view(B, T, n_head, head_size)"
        ".transpose(1, 2): each 'head' gets slices of several positions",
        {"split": "view"},
    ),
    Mistake(
        "head-split",
        "heads split and merged without the transposes (.view(B, n_head, T, hs) ... .view(B, T, C))",
        {"split": "view", "merge": "view"},
    ),
    Mistake(
        "no-proj", "attention without the output projection (self.proj is never applied)", {"proj": False}
    ),
]
_NONFINITE_MISTAKES = [
    Mistake(
        "row-masked",
        "a mask that hides the diagonal too: position 0 has no key left (NaN)",
        {"mask": "strict"},
    ),
    Mistake(
        "softmax-axis",
        "a softmax over dim 1 (the heads axis of (B, n_head, T, T)), where every masked slice is all -inf",
        {"softmax_dim": 1},
    ),
    Mistake(
        "mask-after-softmax",
        "the mask applied after the softmax, with -inf: the -inf weights reach the output",
        {"mask_after": "inf"},
    ),
]


@dataclass
class _LayerSpec:
    """What differs between the Head check and the CausalSelfAttention check."""

    exercise: str
    config: GPTConfig
    args: tuple[Any, ...]  # to the learner's class, after the config
    width: int  # output channels (head_size for a Head, n_embd for attention)
    n_head: int
    with_proj: bool
    mistakes: list[Mistake]


def _correct_output(spec: _LayerSpec, x: torch.Tensor, w: AttentionWeights) -> torch.Tensor:
    """The right answer: gptlib.CausalSelfAttention holding the learner's weights; a Head has no gptlib
    module of its own, so reference_attention (tested equal to gptlib) with one head."""
    if not spec.with_proj:
        return reference_attention(x, w, spec.n_head)
    ref = _ReferenceAttention(spec.config).eval()
    with torch.no_grad():
        load_weights(ref, w)
        return ref(x)


def _layer_mismatch(
    spec: _LayerSpec, what: str, x: torch.Tensor, out: torch.Tensor, search: Any, forward: Callable
) -> CheckFailure:
    """The learner's output differs from the reference: find out why."""
    ex, nh = spec.exercise, spec.n_head
    note = (
        ""
        if search.by_name
        else " (Your layers' names did not say which is the query, key, value"
        + (" or projection" if spec.with_proj else "")
        + f", so I read them as: {search.candidates[0].source}. Names like query/key/value"
        + ("/proj" if spec.with_proj else "")
        + " make this diagnosis surer.)"
    )
    # Known mistakes, alone or in pairs, with the most likely reading of the weights (alone with every reading).
    for i, w in enumerate(search.candidates):
        found = match(out, partial(reference_attention, x, w, nh), spec.mistakes, pairs=i == 0)
        if found:
            return matched_failure(ex, what, found, note if i == 0 else "")
        if search.by_name:
            break
    w = search.candidates[0]
    head_size = spec.width // nh
    right = 1 / math.sqrt(head_size)
    scale = fit_scale(out, partial(reference_attention, x, w, nh))
    if scale is not None:
        return CheckFailure(
            ex,
            "wrong-scale",
            f"{what}: your scores look scaled by {scale:.3g} instead of 1/sqrt(head_size) = "
            f"1/sqrt({head_size}) = {right:.3g}: {scale_words(scale, right)}.",
        )
    leak = _future_leak(ex, what, x, out, forward)
    if leak:
        return leak
    want = _correct_output(spec, x, w)
    share = fraction_close(out, want)
    if close(out[:, 0], want[:, 0]):
        where = (
            "Position 0, which can only look at itself, is right, so your projections are used correctly; "
            "the weights on earlier positions are off: check the scale (1/sqrt(head_size)), the mask and "
            "the softmax (dim=-1)."
        )
    else:
        proj = " and the output projection" if spec.with_proj else ""
        where = (
            "Even position 0 is wrong, and it can only look at itself (its output is the value of x[:, 0]"
            f"{', projected' if spec.with_proj else ''}): check the value projection, how the heads are "
            f"split and merged{proj}."
        )
    return CheckFailure(
        ex,
        "wrong-values",
        f"{what}: only {share:.0%} of the values match the reference with your weights (largest "
        f"difference {max_diff(out, want):.3g}), and it matches none of the usual mistakes. {where}{note}",
    )


def _future_leak(
    ex: str, what: str, x: torch.Tensor, out: torch.Tensor, forward: Callable
) -> CheckFailure | None:
    """Change every position from t0 on; outputs before t0 must not move."""
    T = x.size(1)
    t0 = T // 2
    with seeded(1):
        x2 = x.clone()
        x2[:, t0:] += torch.randn_like(x2[:, t0:])
    out2 = forward(x2)
    moved = [t for t in range(t0) if not close(out[:, t], out2[:, t])]
    if not moved:
        return None
    return CheckFailure(
        ex,
        "future-leak",
        f"{what}: future tokens leak. Changing the input at positions {t0}..{T - 1} changed the output at "
        f"earlier positions {moved}. A position may only use itself and the positions before it: mask the "
        "scores of later keys with -inf before the softmax (over dim=-1).",
    )


def _check_gradients(
    ex: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor, config: GPTConfig
) -> None:
    """Backpropagate a random loss; every parameter and the input must get a gradient."""
    with seeded(2):
        g = torch.randn(out.shape)
    call(ex, "backpropagating through your layer", (out * g).sum().backward)
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    if frozen:
        raise CheckFailure(
            ex,
            "no-grad",
            f"{', '.join(frozen)}: requires_grad=False, so training could never change them.",
        )
    missing = [(n, p) for n, p in module.named_parameters() if p.grad is None]
    module.zero_grad(set_to_none=True)
    bs = config.block_size
    masks = [n for n, p in missing if p.dim() >= 2 and tuple(p.shape[-2:]) == (bs, bs)]
    if masks:
        raise CheckFailure(
            ex,
            "mask-parameter",
            f"{', '.join(masks)}: a mask stored as an nn.Parameter. A mask is not learned (and gets no "
            "gradient). Store it with self.register_buffer('mask', ...).",
        )
    if missing:
        names = [n for n, _ in missing]
        raise CheckFailure(
            ex,
            "no-grad",
            f"no gradient reaches {', '.join(names)}: forward never uses them, or cuts the path to the output "
            "(.detach(), .data, torch.no_grad(), .item() or numpy).",
        )
    if x.grad is None:
        raise CheckFailure(
            ex,
            "no-grad",
            "no gradient flows back to the input x: the layers before attention could not learn. "
            "Do not detach x (or use .data) inside forward.",
        )


def _wrong_params(spec: _LayerSpec, name: str, search: Any, extra: str = "") -> CheckFailure:
    found = "\n".join(f"  - {p.describe()}" for p in search.found) or "  (no nn.Linear layers)"
    expected = expected_layouts(spec.config.n_embd, spec.width, spec.n_head, spec.with_proj)
    layouts = "\n".join(f"  - {s}" for s in expected)
    return CheckFailure(
        spec.exercise,
        "wrong-params",
        f"I could not find the projections I expected in your {name}.\nExpected one of:\n{layouts}\n"
        f"Found:\n{found}{extra}",
    )


def _check_layer(spec: _LayerSpec, cls: Any) -> list[str]:
    """Everything the Head and CausalSelfAttention checks share. Returns what was verified, in words."""
    ex, C, bs = spec.exercise, spec.config.n_embd, spec.config.block_size
    name = getattr(cls, "__name__", "your class")
    with seeded(0):
        module = build_module(ex, cls, spec.config, *spec.args)
        x = 2 * torch.randn(2, bs - 1, C)  # shorter than block_size: the mask must be sliced
        x_full, x_one = 2 * torch.randn(2, bs, C), 2 * torch.randn(2, 1, C)
    module.eval()

    def forward(inp: torch.Tensor, works_for: str = "") -> Any:
        return _run(ex, f"{name}.forward(x) for x of shape {shape_str(inp)}", module, inp, works_for)

    what = f"{name}.forward(x) for x of shape {shape_str(x)}"
    search = find_projections(module, C, spec.width, spec.with_proj)
    try:
        raw = forward(x)
    except CheckFailure as e:
        if e.diagnosis != "crashed":
            raise
        if not search.candidates:  # the likely cause: layers of the wrong size
            raise _wrong_params(
                spec, name, search, f"\nforward also crashed: {error_only(e, what)}"
            ) from None
        try:  # does it work at the full block size? then the mask is not sliced to T
            forward(x_full)
        except CheckFailure:
            raise e from None
        raise CheckFailure(
            ex,
            "fixed-T",
            f"{what} crashes, but x of shape {shape_str(x_full)} (T = block_size) works: slice the mask to the "
            f"input's length, e.g. self.mask[:T, :T] with T = x.size(1). The error: {error_only(e, what)}",
        ) from None
    out_shape = (x.size(0), x.size(1), spec.width)
    if isinstance(raw, torch.Tensor) and raw.shape == out_shape and not torch.isfinite(raw).all():
        for w in search.candidates[:1]:
            found = match(raw, partial(reference_attention, x, w, spec.n_head), _NONFINITE_MISTAKES, False)
            if found:
                raise matched_failure(ex, what, found)
    out = _output(ex, what, raw, out_shape, dim=1)
    with torch.no_grad():
        again = forward(x)
    if not close(out, again):
        raise CheckFailure(
            ex,
            "dropout-in-eval",
            f"{what} gave different outputs for the same x in eval mode: dropout (or other randomness) is "
            "still active. "
            "nn.Dropout switches itself off in eval(); F.dropout(t, p) and "
            "F.scaled_dot_product_attention(..., dropout_p=p) need p=0 (or training=False) when not self.training.",
        )
    if not search.candidates:
        raise _wrong_params(spec, name, search)
    with torch.no_grad():
        weights = next((w for w in search.candidates if close(_correct_output(spec, x, w), out)), None)
        if weights is None:
            raise _layer_mismatch(spec, what, x, out, search, lambda inp: forward(inp).detach())
        for inp in (x_full, x_one):
            other = f"{name}.forward(x) for x of shape {shape_str(inp)}"
            got = _output(
                ex,
                other,
                forward(inp, works_for=f"x of shape {shape_str(x)}"),
                (*inp.shape[:2], spec.width),
                1,
            )
            if not close(got, _correct_output(spec, inp, weights)):
                raise CheckFailure(
                    ex,
                    "fixed-T",
                    f"{other} is wrong although T = {x.size(1)} was right: does your code depend on a fixed "
                    f"length? Take T from x.size(1) and slice the mask to it.",
                )
        leak = _future_leak(ex, what, x_full, forward(x_full), forward)
        if leak:
            raise leak
    x_grad = x.clone().requires_grad_()
    _check_gradients(ex, module, x_grad, forward(x_grad), spec.config)
    n_params = sum(1 for _ in module.parameters())
    reference = "gptlib.CausalSelfAttention" if spec.with_proj else "the reference"
    return [
        f"matches {reference} with your weights for T = 1, {bs - 1} and {bs}",
        "causal",
        "deterministic in eval mode",
        f"gradients reach all {n_params} parameters and x",
        "x left untouched",
    ]


@isolated
def check_head(Head: Any) -> None:
    """Check `Head(config, head_size)`: one causal self-attention head, (B, T, C) -> (B, T, head_size)."""
    # head_size differs from n_embd (so 1/sqrt(n_embd) is a detectable mistake) and from n_embd // n_head
    # (so a Head that ignores its head_size argument gets the wrong shape).
    config = GPTConfig(
        vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=32, attn_pdrop=0.1, resid_pdrop=0.1
    )
    head_size = 8
    spec = _LayerSpec(
        "head",
        config,
        (head_size,),
        width=head_size,
        n_head=1,
        with_proj=False,
        mistakes=scale_mistakes(config.n_embd, head_size) + _WEIGHT_MISTAKES + _LAYER_MISTAKES,
    )
    verified = _check_layer(spec, Head)
    passed("head", "; ".join(verified) + ".")


def _dropout_behaviour(cls: Any, config: GPTConfig) -> str:
    """Train mode must drop on the attention weights (attn_pdrop) and on the output (resid_pdrop)."""
    ex = "attention"
    name = getattr(cls, "__name__", "your class")
    for attn_p, resid_p, where, rate in (
        (0.5, 0.0, "attention weights", "attn_pdrop"),
        (0.0, 0.5, "output (after the projection)", "resid_pdrop"),
    ):
        cfg = config.replace(attn_pdrop=attn_p, resid_pdrop=resid_p)
        what = f"{name} with attn_pdrop={attn_p}, resid_pdrop={resid_p}, in train mode"
        with seeded(3):
            module = build_module(ex, cls, cfg).train()
            x = 2 * torch.randn(2, config.block_size, config.n_embd)
            with torch.no_grad():
                a = _output(ex, what, _run(ex, what, module, x), tuple(x.shape), 1)
                b = _output(ex, what, _run(ex, what, module, x), tuple(x.shape), 1)
        if close(a, b):
            raise CheckFailure(
                ex,
                "no-dropout",
                f"{what}: two calls on the same x gave the same output, so there is no dropout on the "
                f"{where}. Add nn.Dropout(config.{rate}) there (it only acts in train mode).",
            )
        zeros = (a == 0).double().mean().item()
        if resid_p == 0.0 and zeros > 0.2:
            raise CheckFailure(
                ex,
                "dropout-rate",
                f"{what}: {zeros:.0%} of the outputs are exactly 0, yet resid_pdrop is 0: your dropout after "
                "the projection uses attn_pdrop. Use config.resid_pdrop there, config.attn_pdrop on the weights.",
            )
        if resid_p > 0.0 and not 0.35 < zeros < 0.65:
            raise CheckFailure(
                ex,
                "dropout-rate",
                f"{what}: {zeros:.0%} of the outputs are zeroed, not about 50%: the dropout after the "
                "projection should use config.resid_pdrop.",
            )
    return "dropout on the weights and the output in train mode only"


@isolated
def check_attention(CausalSelfAttention: Any) -> None:
    """Check `CausalSelfAttention(config)`: multi-head masked self-attention with an output projection.

    Compared with gptlib.CausalSelfAttention holding the learner's weights, in eval mode; then causality,
    dropout in train mode only, gradients, and that x is left untouched."""
    config = GPTConfig(
        vocab_size=11, block_size=8, n_layer=1, n_head=4, n_embd=32, attn_pdrop=0.1, resid_pdrop=0.1
    )
    head_size = config.n_embd // config.n_head
    spec = _LayerSpec(
        "attention",
        config,
        (),
        width=config.n_embd,
        n_head=config.n_head,
        with_proj=True,
        mistakes=scale_mistakes(config.n_embd, head_size)
        + _WEIGHT_MISTAKES
        + _LAYER_MISTAKES
        + _HEAD_MISTAKES,
    )
    verified = _check_layer(spec, CausalSelfAttention)
    verified.insert(3, _dropout_behaviour(CausalSelfAttention, config))
    passed("attention", "; ".join(verified) + ".")


_register_hints()
