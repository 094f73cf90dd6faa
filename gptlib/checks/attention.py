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
import re
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from gptlib.attention import CausalSelfAttention as _ReferenceAttention
from gptlib.checks import codes as C
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    attribute,
    close,
    fraction_close,
    match,
    matched,
    max_diff,
    parameters,
    seed_learner,
    seeded,
    shape_str,
    train,
)
from gptlib.checks.learner import Backward, Ref
from gptlib.checks.probes import (
    deterministic,
    expect_callable,
    expect_tensor,
    future_leak,
    gradients,
    leaks,
    run_untouched,
)
from gptlib.checks.reference_attention import (
    FILL_ZERO,
    SOFTMAX_OVER_QUERIES,
    AttentionWeights,
    attention_weights,
    expected_layouts,
    find_projections,
    fit_scale,
    load_weights,
    reference_attention,
    scale_mistakes,
    scale_words,
)
from gptlib.checks.verdict import CheckFailure
from gptlib.config import GPTConfig

__all__ = ["check_causal_average", "check_masked_softmax", "check_head", "check_attention"]

_RUN_CODES = (C.NOT_CALLABLE, C.IN_PLACE, C.FIXED_T, C.NAN_0_INF, C.ROW_MASKED, *C.TENSOR)


def _nonfinite_failure(ex: Exercise, what: str, out: torch.Tensor, dim: int) -> CheckFailure:
    """Name the likely cause from where the NaN/inf values sit (dim: the query positions)."""
    T = out.size(dim)
    bad_mask = ~torch.isfinite(out)
    other = [d for d in range(out.dim()) if d != dim % out.dim()]
    bad = torch.nonzero(bad_mask.any(dim=other) if other else bad_mask).flatten().tolist()
    kind = "NaN" if torch.isnan(out).any() else "inf"
    if len(bad) == T and T > 1:
        return ex.fail(
            C.NAN_0_INF,
            f"{what} is {kind} at every position. The usual cause is a mask built with arithmetic, "
            "e.g. `scores * mask + (1 - mask) * float('-inf')`: where the mask is 1 that computes "
            "0 * -inf = NaN. Replace the hidden scores instead: masked_fill(mask == 0, float('-inf')).",
        )
    if bad == [0]:
        return ex.fail(
            C.ROW_MASKED,
            f"{what} is {kind} at position 0 only. Position 0's whole row of scores is masked: a softmax "
            "over nothing but -inf is 0/0 = NaN. The mask must keep the diagonal (every position may "
            "look at itself): torch.tril(...) with the default diagonal=0.",
        )
    if bad == list(range(T - 1)):
        return ex.fail(
            C.NAN,
            f"{what} is {kind} at every position except the last, the only one with nothing masked: the "
            "-inf of the mask reaches the output. Either the softmax runs over an axis where a whole slice "
            "is -inf (it must be dim=-1, over the keys), or the mask is applied after the softmax.",
        )
    return ex.fail(C.NAN, f"{what} has {kind} values at positions {bad} (of 0..{T - 1}).")


def _run(ex: Exercise, what: str, fn: Ref, x: torch.Tensor, works_for: str = "") -> Any:
    """fn(x), x left untouched. works_for: sizes that worked already (a crash now: tied to one size)."""
    tied = works_for and (
        f"{what} crashes, but it worked for {works_for}: your code is tied to one length. Take T from the "
        "input (x.size(1) / scores.size(-1)), and slice a stored mask to it (mask[:T, :T])."
    )
    advice = (
        " The caller may still need it (in a GPT the residual connection adds x back later). Use out-of-place "
        "operations: masked_fill, not masked_fill_; y = x + ..., not x += ...."
    )
    return run_untouched(ex, what, fn, x, tied=tied, advice=advice)


def _output(
    ex: Exercise, what: str, out: Any, shape: tuple[int, ...], dim: int, nonfinite: Any = None
) -> torch.Tensor:
    """The learner's output as a finite float32 tensor of the expected shape, or a named failure.
    nonfinite(out): the mistake a non-finite output matches, if one does."""
    out = expect_tensor(ex, what, out, shape=shape, dtype=torch.float32, finite=False)
    if not torch.isfinite(out).all():
        found = nonfinite(out) if nonfinite else None
        raise matched(ex, what, found) if found else _nonfinite_failure(ex, what, out, dim)
    return out


# ==== 2.1 causal_average ============================================================================

AVERAGE = Exercise(
    "causal_average",
    [*_RUN_CODES, C.NOT_CAUSAL, C.MASK_TRANSPOSED, C.WRONG_DIVISOR, C.SUM_NOT_MEAN, C.EXCLUDES_SELF, C.WRONG_AXIS,
     C.COLUMNS_NORMALISED, C.RETURNED_WEIGHTS, C.WRONG_VALUES],
)  # fmt: skip


def _average(x: torch.Tensor, kind: str = "right") -> torch.Tensor:
    """The running mean over time of x (B, T, C), and the ways it goes wrong."""
    T, C_ = x.size(1), x.size(2)
    counts = torch.arange(1, T + 1, dtype=x.dtype).view(1, T, 1)
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
        return x.cumsum(2) / torch.arange(1, C_ + 1, dtype=x.dtype)
    if kind == "channel-mean":
        return x.mean(2, keepdim=True).expand_as(x)
    if kind == "batch":
        return x.cumsum(0) / torch.arange(1, x.size(0) + 1, dtype=x.dtype).view(-1, 1, 1)
    if kind == "columns":  # tril / tril.sum(0): each COLUMN of the weights sums to 1
        wei = torch.tril(torch.ones(T, T, dtype=x.dtype))
        return (wei / wei.sum(0, keepdim=True)) @ x
    return x.cumsum(1) / counts


_AVERAGE_MISTAKES = [
    Mistake(C.NOT_CAUSAL, "the mean over ALL positions, the future included", {"kind": "all"}),
    Mistake(C.MASK_TRANSPOSED, "the mean over positions t..T-1 (the future) instead of 0..t",
            {"kind": "future"}),
    Mistake(C.WRONG_DIVISOR, "the running sum divided by T instead of by t + 1", {"kind": "divide-by-T"}),
    Mistake(C.SUM_NOT_MEAN, "the running sum, never divided", {"kind": "sum"}),
    Mistake(C.EXCLUDES_SELF, "the mean of the positions before t, leaving out t itself",
            {"kind": "past-only"}),
    Mistake(C.WRONG_AXIS, "a running mean over the channels (dim 2) instead of over time (dim 1)",
            {"kind": "channels"}),
    Mistake(C.WRONG_AXIS, "the mean of the channels of each position (dim 2) instead of a running mean over "
            "the positions (dim 1)", {"kind": "channel-mean"}),
    Mistake(C.WRONG_AXIS, "a running mean over the batch (dim 0) instead of over the positions (dim 1)",
            {"kind": "batch"}),
    Mistake(C.COLUMNS_NORMALISED, "weights normalised by their column sums (wei.sum(0)): each column sums "
            "to 1 instead of each row (wei.sum(1, keepdim=True))", {"kind": "columns"}),
]  # fmt: skip


@AVERAGE.check
def check_causal_average(fn: Ref) -> None:
    """Check `causal_average(x)`: (B, T, C) -> (B, T, C), position t the mean of x[:, :t+1]."""
    ex = AVERAGE
    expect_callable(ex, fn, "causal_average")
    with seeded(0):
        xs = [torch.randn(2, 8, 3), torch.randn(1, 1, 4), torch.randn(3, 13, 2)]
    done: list[str] = []
    for x in xs:
        what = f"causal_average(x) for x of shape {shape_str(x)}"
        out = _run(ex, what, fn, x, works_for=", ".join(done))
        T = x.size(1)
        if isinstance(out, torch.Tensor) and tuple(out.shape[-2:]) == (T, T) and out.shape != x.shape:
            raise ex.fail(
                C.RETURNED_WEIGHTS,
                f"{what} returned shape {shape_str(out)}, the (T, T) weights themselves; apply them to x: "
                "wei @ x, shape (B, T, C).",
            )
        try:
            out = _output(ex, what, out, tuple(x.shape), dim=1)
        except CheckFailure as e:
            if e.diagnosis == C.ROW_MASKED:  # NaN at t = 0 only: 0/0, an average over no positions
                raise ex.fail(
                    C.EXCLUDES_SELF,
                    f"{what} is NaN at position 0 only: 0/0, an average over no positions. Position t "
                    "averages positions 0..t, itself included (torch.tril keeps the diagonal).",
                ) from None
            raise
        want = _average(x)
        if not close(out, want):
            found = match(out, partial(_average, x), _AVERAGE_MISTAKES, pairs=False)
            if found:
                raise matched(ex, what, found)
            raise ex.fail(
                C.WRONG_VALUES,
                f"{what}: {fraction_close(out, want):.0%} of the values are right (largest difference "
                f"{max_diff(out, want):.3g}). Position 0 must equal x[:, 0], position 1 the mean of "
                "x[:, 0] and x[:, 1], and so on.",
            )
        done.append(f"T = {x.size(1)}")
    ex.passed(f"running means right for {', '.join(done)}; causal; x left untouched.")


# ==== 2.2 masked_softmax ============================================================================

SOFTMAX = Exercise(
    "masked_softmax",
    [*_RUN_CODES, C.SOFTMAX_AXIS, C.NO_MASK, C.MASK_TRANSPOSED, C.MASK_INVERTED, C.MASK_FILL_ZERO,
     C.MASK_AFTER_SOFTMAX, C.EXTRA_SCALE, C.FUTURE_LEAK, C.NOT_NORMALISED, C.T_FROM_FIRST_AXIS, C.WRONG_VALUES],
)  # fmt: skip

_WEIGHT_MISTAKES = [
    SOFTMAX_OVER_QUERIES,
    Mistake(C.NO_MASK, "attention without the causal mask: every position also sees the future",
            {"mask": "none"}),
    Mistake(C.MASK_TRANSPOSED, "a flipped mask (torch.triu instead of torch.tril): each position sees "
            "itself and the FUTURE", {"mask": "upper"}),
    Mistake(C.ROW_MASKED, "a mask that hides the diagonal too (tril(..., diagonal=-1)): position 0 has no "
            "key left, so its row is spread over every position, the future included",
            {"mask": "strict", "fill": -1e9}),
    Mistake(C.MASK_AFTER_SOFTMAX, "the mask applied after the softmax: the future gets weight 0 but the "
            "rows no longer sum to 1", {"mask_after": "zero"}),
    FILL_ZERO,
]  # fmt: skip
_SOFTMAX_MISTAKES = [
    *_WEIGHT_MISTAKES,
    Mistake(C.SOFTMAX_AXIS, "a softmax over dim 1; use dim=-1 (the keys), right for any leading dims",
            {"softmax_dim": 1}),
]  # fmt: skip
_NONFINITE_MISTAKES = [
    Mistake(C.MASK_INVERTED, "an inverted mask (masked_fill where tril == 1 instead of == 0): it hides the "
            "past and the present and keeps the future, so the last position has no key left (NaN)",
            {"mask": "inverted"}),
]  # fmt: skip


@SOFTMAX.check
def check_masked_softmax(fn: Ref) -> None:
    """Check `masked_softmax(scores)`: (..., T, T) -> weights (..., T, T), causal, rows summing to 1."""
    ex = SOFTMAX
    expect_callable(ex, fn, "masked_softmax")
    with seeded(0):
        all_scores = [2 * torch.randn(*shape) for shape in ((2, 8, 8), (8, 8), (2, 3, 5, 5), (1, 1))]
    done: list[str] = []
    for scores in all_scores:
        what = f"masked_softmax(scores) for scores of shape {shape_str(scores)}"
        try:
            out = _run(ex, what, fn, scores, works_for=", ".join(done))
        except CheckFailure as e:
            if e.diagnosis in (C.CRASHED, C.FIXED_T) and _t_from_first_axis(fn, scores):
                raise ex.fail(
                    C.T_FROM_FIRST_AXIS,
                    f"{what} crashes, but works when the first axis has T entries too: T is read from the "
                    f"first axis (scores.size(0) or shape[0], the batch for {shape_str(scores)} scores). T is "
                    f"the size of the last axis: scores.size(-1). The error: {ex.error_only(e)}",
                    e.crash,
                ) from None
            raise
        if isinstance(out, torch.Tensor) and out.shape == scores.shape and torch.isinf(out).any():
            if not torch.isnan(out).any():
                raise ex.fail(
                    C.MASK_AFTER_SOFTMAX,
                    f"{what} holds -inf weights: the mask was applied after the softmax. Weights are "
                    "probabilities (0..1): fill the SCORES with -inf, then take the softmax.",
                )
        compute = partial(attention_weights, scores)
        nonfinite = partial(match, compute=compute, mistakes=_NONFINITE_MISTAKES, pairs=False)
        out = _output(ex, what, out, tuple(scores.shape), -2, nonfinite)
        want = attention_weights(scores)
        if not close(out, want):
            found = match(out, compute, _SOFTMAX_MISTAKES)
            if found:
                raise matched(ex, what, found)
            scale = fit_scale(out, partial(_scaled_weights, scores))
            if scale is not None:
                raise ex.fail(
                    C.EXTRA_SCALE,
                    f"{what} matches the right weights of the scores multiplied by {scale:.3g}. "
                    "masked_softmax should only mask and normalise: the scores come in already scaled.",
                )
            raise _weights_failure(ex, what, out, want)
        done.append(shape_str(scores))
    ex.passed(f"causal softmax weights right for scores of shapes {', '.join(done)}; scores left untouched.")


def _t_from_first_axis(fn: Ref, scores: torch.Tensor) -> bool:
    """Whether masked_softmax is right on scores whose first axis is as long as the last: T read from it."""
    T = scores.size(-1)
    if scores.dim() < 3 or scores.size(0) == T:
        return False
    with seeded(5):
        square = 2 * torch.randn(T, *scores.shape[1:])
    out, crash = SOFTMAX.attempt("masked_softmax", fn, square)
    return crash is None and isinstance(out, torch.Tensor) and close(out, attention_weights(square))


def _scaled_weights(scores: torch.Tensor, scale: float) -> torch.Tensor:
    """The right weights of scores * scale (a learner who scales inside masked_softmax)."""
    return attention_weights(scores * scale)


def _weights_failure(ex: Exercise, what: str, out: torch.Tensor, want: torch.Tensor) -> CheckFailure:
    """No known mistake matched: say which property of attention weights is broken."""
    T = out.size(-1)
    future = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    if (out.masked_select(future) != 0).any():
        return ex.fail(
            C.FUTURE_LEAK,
            f"{what} gives weight to the future: entries above the diagonal (key > query) must be exactly 0.",
        )
    sums = out.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return ex.fail(
            C.NOT_NORMALISED,
            f"{what}: the rows sum to values from {sums.min().item():.3g} to {sums.max().item():.3g}; each "
            "query's weights over the keys must sum to 1 (softmax over dim=-1, after masking).",
        )
    return ex.fail(
        C.WRONG_VALUES,
        f"{what}: causal and normalised, but only {fraction_close(out, want):.0%} of the weights are "
        f"right (largest difference {max_diff(out, want):.3g}). Use the scores as they are: mask, then softmax.",
    )


# ==== 2.3 Head and 2.4 CausalSelfAttention ==========================================================

_LAYER_CODES = (
    *_RUN_CODES, *C.CLASS, C.MISSING_SCALE, C.WRONG_SCALE,
    C.SOFTMAX_AXIS, C.NO_MASK, C.MASK_TRANSPOSED, C.MASK_INVERTED, C.MASK_FILL_ZERO, C.MASK_AFTER_SOFTMAX,
    C.QK_SWAPPED, C.WRONG_PARAMS, C.DROPOUT_IN_EVAL, C.NO_GRAD, C.MASK_PARAMETER, C.MASK_NOT_BUFFER, C.FUTURE_LEAK,
    C.RETURNED_WEIGHTS, C.SCALE_AFTER_SOFTMAX, C.WEIGHTS_TIMES_X, C.TRANSPOSE_ALL_DIMS, C.WRONG_VALUES,
)  # fmt: skip
HEAD = Exercise("head", [*_LAYER_CODES, C.HEAD_SIZE_IGNORED])
ATTENTION = Exercise(
    "attention",
    [*_LAYER_CODES, C.MERGE_ORDER, C.HEAD_SPLIT, C.ONE_HEAD, C.NO_PROJ, C.NO_DROPOUT, C.DROPOUT_RATE,
     C.DROPOUT_ON_SCORES, C.DROPOUT_WRONG_PLACE, C.HARD_CODED],
)  # fmt: skip

_LAYER_MISTAKES = [
    Mistake(C.QK_SWAPPED, "scores k @ q^T instead of q @ k^T (keys and queries swapped): row t must be "
            "query t against every key", {"swap_qk": True}),
    Mistake(C.SCALE_AFTER_SOFTMAX, "the scale applied to the weights after the softmax instead of to the "
            "scores before the softmax: the weights no longer sum to 1", {"scale_after": True}),
]  # fmt: skip
_HEAD_MISTAKES = [
    Mistake(C.MERGE_ORDER, "heads merged with y.view(B, T, C) without y.transpose(1, 2) first: positions "
            "get mixed between heads", {"merge": "view"}),
    Mistake(C.MERGE_ORDER, "heads merged in the wrong order (channel 0 of every head first, then channel "
            "1, ...)", {"merge": "interleave"}),
    Mistake(C.HEAD_SPLIT, "heads split with .view(B, n_head, T, head_size) instead of .view(B, T, n_head, "
            "head_size).transpose(1, 2): each 'head' gets slices of several positions", {"split": "view"}),
    Mistake(C.HEAD_SPLIT, "heads split and merged without the transposes (.view(B, n_head, T, hs) ... "
            ".view(B, T, C))", {"split": "view", "merge": "view"}),
    Mistake(C.HEAD_SPLIT, "heads split in the wrong order: channel c goes to head c % n_head (a view(B, T, "
            "hs, n_head)), where head h owns the consecutive channels h*hs .. (h+1)*hs - 1 (view(B, T, "
            "n_head, hs))", {"split": "interleave"}),
    Mistake(C.HEAD_SPLIT, "heads split and merged in the wrong order: channel c goes to head c % n_head (a "
            "view(B, T, hs, n_head)), where head h owns the consecutive channels h*hs .. (h+1)*hs - 1 "
            "(view(B, T, n_head, hs))", {"split": "interleave", "merge": "interleave"}),
    Mistake(C.ONE_HEAD, "ONE head as wide as the model: the scores are never split into n_head heads (one "
            "(T, T) map over all C channels, scaled by 1/sqrt(C))", {"heads": 1}),
    Mistake(C.NO_PROJ, "attention without the output projection (self.proj is never applied)",
            {"proj": False}),
]  # fmt: skip
_LAYER_NONFINITE = [
    Mistake(C.ROW_MASKED, "a mask that hides the diagonal too: position 0 has no key left (NaN)",
            {"mask": "strict"}),
    Mistake(C.SOFTMAX_AXIS, "a softmax over dim 1 (the heads axis of (B, n_head, T, T)), where every "
            "masked slice is all -inf", {"softmax_dim": 1}),
    Mistake(C.MASK_AFTER_SOFTMAX, "the mask applied after the softmax, with -inf: the -inf weights reach "
            "the output", {"mask_after": "inf"}),
    *_NONFINITE_MISTAKES,
]  # fmt: skip


@dataclass
class _LayerSpec:
    """What differs between the Head check and the CausalSelfAttention check."""

    ex: Exercise
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
    spec: _LayerSpec, what: str, x: torch.Tensor, out: torch.Tensor, search: Any, forward
) -> Any:
    """The learner's output differs from the reference: find out why."""
    ex, nh = spec.ex, spec.n_head
    proj = spec.with_proj
    note = ""
    if not search.by_name:  # say how the layers were read
        note = (
            f" (Your layers' names did not say which is the query, key, value{' or projection' * proj}, so I read "
            f"them as: {search.candidates[0].source}. Names like query/key/value{'/proj' * proj} make this "
            "diagnosis surer.)"
        )
    # Known mistakes, alone or in pairs, with the most likely reading of the weights (alone with every reading).
    for i, w in enumerate(search.candidates):
        found = match(out, partial(reference_attention, x, w, nh), spec.mistakes, pairs=i == 0)
        if found:
            return matched(ex, what, found, note if i == 0 else "")
        if search.by_name:
            break
    w = search.candidates[0]
    head_size = spec.width // nh
    right = 1 / math.sqrt(head_size)
    scale = fit_scale(out, partial(reference_attention, x, w, nh))
    if scale is not None:
        return ex.fail(
            C.WRONG_SCALE,
            f"{what}: your scores look scaled by {scale:.3g} instead of 1/sqrt(head_size) = "
            f"1/sqrt({head_size}) = {right:.3g}: {scale_words(scale, right)}.",
        )
    moved = leaks(forward, x, 1.0, seed=1)
    if moved:
        return future_leak(ex, what, moved, x.size(1), _LEAK_ADVICE)
    want = _correct_output(spec, x, w)
    if close(out[:, 0], want[:, 0]):
        where = (
            "Position 0, which can only look at itself, is right, so your projections are used correctly; "
            "the weights on earlier positions are off: check the scale (1/sqrt(head_size)), the mask and "
            "the softmax (dim=-1)."
        )
    else:
        where = (
            "Even position 0 is wrong, and it can only look at itself (its output is the value of x[:, 0]"
            f"{', projected' * proj}): check the value projection, how the heads are split and merged"
            f"{' and the output projection' * proj}."
        )
    return ex.fail(
        C.WRONG_VALUES,
        f"{what}: only {fraction_close(out, want):.0%} of the values match the reference with your weights (largest "
        f"difference {max_diff(out, want):.3g}), and it matches none of the usual mistakes. {where}{note}",
    )


_LEAK_ADVICE = (
    " A position may only use itself and the positions before it: mask the scores of later keys with -inf "
    "before the softmax (over dim=-1)."
)


def _check_gradients(
    ex: Exercise, module: Ref, x: torch.Tensor, what: str, config: GPTConfig, width: int
) -> int:
    """Backpropagate a random cotangent: every parameter and x get a gradient (a mask stored as a parameter
    gets none). Returns the number of parameter tensors."""
    with seeded(2):
        g = torch.randn(*x.shape[:2], width)
    bs = config.block_size

    def masks(missing: list[str]) -> None:
        params = parameters(module)
        found = [n for n in missing if params[n].dim() >= 2 and tuple(params[n].shape[-2:]) == (bs, bs)]
        if found:
            raise ex.fail(
                C.MASK_PARAMETER,
                f"{', '.join(found)}: a mask stored as an nn.Parameter. A mask is not learned (and gets no "
                "gradient). Store it with self.register_buffer('mask', ...).",
            )

    return gradients(
        ex, what, module, x, backward=Backward(wrt=(0,), cotangent=g), input_name="x", explain=masks
    )


def _wrong_params(spec: _LayerSpec, name: str, search: Any, extra: str = "") -> CheckFailure:
    found = "\n".join(f"  - {p.describe()}" for p in search.found) or "  (no nn.Linear layers)"
    expected = expected_layouts(spec.config.n_embd, spec.width, spec.n_head, spec.with_proj)
    layouts = "\n".join(f"  - {s}" for s in expected)
    return spec.ex.fail(
        C.WRONG_PARAMS,
        f"I could not find the projections I expected in your {name}.\nExpected one of:\n{layouts}\n"
        f"Found:\n{found}{extra}",
    )


def _returned_weights(spec: _LayerSpec, what: str, x: torch.Tensor, raw: Any, search: Any) -> None:
    """A layer that returns its attention weights (B, [n_head,] T, T) instead of its output."""
    T = x.size(1)
    shape = (x.size(0), T, T) if spec.n_head == 1 and not spec.with_proj else (x.size(0), spec.n_head, T, T)
    # (T == width: the output's shape too, so no telling)
    if not isinstance(raw, torch.Tensor) or tuple(raw.shape) != shape or T == spec.width:
        return
    for w in search.candidates[:1]:
        if close(raw, reference_attention(x, w, spec.n_head, output="weights"), loose=True):
            raise spec.ex.fail(
                C.RETURNED_WEIGHTS,
                f"{what} returned shape {shape_str(raw)}: the attention weights themselves. The output is the "
                f"weights applied to the values, {'att @ v with the heads merged and projected' if spec.with_proj else 'wei @ v'}: "
                f"shape {(x.size(0), T, spec.width)}.",
            )


def _head_width(spec: _LayerSpec, what: str, x: torch.Tensor, raw: Any, search: Any) -> None:
    """A Head whose output is n_embd wide: its layers ignore head_size, or it sums x instead of the values."""
    B, T, C_ = x.shape
    if spec.with_proj or spec.width == C_ or not isinstance(raw, torch.Tensor) or raw.shape != x.shape:
        return
    if search.found and all(tuple(p.weight.shape) == (C_, C_) for p in search.found):
        raise spec.ex.fail(
            C.HEAD_SIZE_IGNORED,
            f"{what} returned shape {shape_str(raw)}; expected {(B, T, spec.width)}: your layers map n_embd to "
            f"n_embd ({C_} -> {C_}), so the head_size argument ({spec.width}) is never used. A head's key, query "
            "and value are nn.Linear(n_embd, head_size).",
        )
    for w in search.candidates[:1]:
        wei = reference_attention(x, w, 1, output="weights")  # (B, T, T)
        if close(raw, wei @ x, loose=True):
            raise spec.ex.fail(
                C.WEIGHTS_TIMES_X,
                f"{what} returned shape {shape_str(raw)}, and it equals wei @ x: the weights are applied to the "
                "input x instead of to the values. The head sums the values: wei @ self.value(x), shape "
                f"{(B, T, spec.width)}.",
            )


def _transposed_all_dims(spec: _LayerSpec, what: str, x: torch.Tensor, e: CheckFailure) -> None:
    """A crash where the batch size meets head_size: k.T (or permute) reversed every dim, not the last two."""
    hs = spec.width // spec.n_head
    found = re.search(
        r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)",
        e.crash.message if e.crash else "",
    )
    if found and x.size(0) != hs and {int(found[1]), int(found[2])} == {x.size(0), hs}:
        raise spec.ex.fail(
            C.TRANSPOSE_ALL_DIMS,
            f"{what} crashed where the batch size ({x.size(0)}) meets head_size ({hs}): k.T (or k.permute(2, 1, "
            "0)) reverses ALL the dims of (B, T, head_size). Transpose only the last two: k.transpose(-2, -1). "
            f"The error: {spec.ex.error_only(e)}",
            e.crash,
        ) from None


def _check_layer(spec: _LayerSpec, cls: Ref) -> list[str]:
    """Everything the Head and CausalSelfAttention checks share. Returns what was verified, in words."""
    ex, C_, bs = spec.ex, spec.config.n_embd, spec.config.block_size
    name = cls.info.name or "your class"
    with seeded(0):
        module = ex.build(cls, spec.config, *spec.args)
        x = 2 * torch.randn(2, bs - 1, C_)  # shorter than block_size: the mask must be sliced
        x_full, x_one = 2 * torch.randn(2, bs, C_), 2 * torch.randn(2, 1, C_)
    train(ex, module, False)

    def forward(inp: torch.Tensor, works_for: str = "") -> Any:
        return _run(ex, f"{name}.forward(x) for x of shape {shape_str(inp)}", module, inp, works_for)

    what = f"{name}.forward(x) for x of shape {shape_str(x)}"
    search = find_projections(module, C_, spec.width, spec.with_proj)
    try:
        raw = forward(x)
    except CheckFailure as e:
        if e.diagnosis != C.CRASHED:
            raise
        _transposed_all_dims(spec, what, x, e)
        if not search.candidates:  # the likely cause: layers of the wrong size
            raise _wrong_params(spec, name, search, f"\nforward also crashed: {ex.error_only(e)}") from None
        try:  # does it work at the full block size? then the mask is not sliced to T
            forward(x_full)
        except CheckFailure:
            raise e from None
        raise ex.fail(
            C.FIXED_T,
            f"{what} crashes, but x of shape {shape_str(x_full)} (T = block_size) works: slice the mask to the "
            f"input's length, e.g. self.mask[:T, :T] with T = x.size(1). The error: {ex.error_only(e)}",
            e.crash,
        ) from None
    _returned_weights(spec, what, x, raw, search)
    _head_width(spec, what, x, raw, search)
    out_shape = (x.size(0), x.size(1), spec.width)

    def nonfinite(o: torch.Tensor) -> Any:
        for w in search.candidates[:1]:
            return match(o, partial(reference_attention, x, w, spec.n_head), _LAYER_NONFINITE, False)

    out = _output(ex, what, raw, out_shape, 1, nonfinite)
    with torch.no_grad():
        again = forward(x)
    eval_advice = (
        " nn.Dropout switches itself off in eval(); F.dropout(t, p) and F.scaled_dot_product_attention(..., "
        "dropout_p=p) need p=0 (or training=False) when not self.training."
    )
    deterministic(ex, what, out, again, "x", eval_advice)
    if not search.candidates:
        raise _wrong_params(spec, name, search)
    with torch.no_grad():
        weights = next((w for w in search.candidates if close(_correct_output(spec, x, w), out)), None)
        if weights is None:
            raise _layer_mismatch(spec, what, x, out, search, lambda inp: forward(inp).detach())
        for inp in (x_full, x_one):
            other = f"{name}.forward(x) for x of shape {shape_str(inp)}"
            got = forward(inp, works_for=f"x of shape {shape_str(x)}")
            got = _output(ex, other, got, (*inp.shape[:2], spec.width), 1)
            if not close(got, _correct_output(spec, inp, weights)):
                raise ex.fail(
                    C.FIXED_T,
                    f"{other} is wrong although T = {x.size(1)} was right: does your code depend on a fixed "
                    f"length? Take T from x.size(1) and slice the mask to it.",
                )
        moved = leaks(forward, x_full, 1.0, seed=1)
        if moved:
            raise future_leak(ex, what, moved, x_full.size(1), _LEAK_ADVICE)
    n_params = _check_gradients(ex, module, x, "your layer", spec.config, spec.width)
    _mask_is_a_buffer(ex, name, module, bs)
    reference = "gptlib.CausalSelfAttention" if spec.with_proj else "the reference"
    return [
        f"matches {reference} with your weights for T = 1, {bs - 1} and {bs}",
        "causal",
        "deterministic in eval mode",
        f"gradients reach all {n_params} parameters and x",
        "x left untouched",
    ]


_HEAD_SIZE = 8


@HEAD.check
def check_head(Head: Ref) -> None:
    """Check `Head(config, head_size)`: one causal self-attention head, (B, T, C) -> (B, T, head_size)."""
    # head_size differs from n_embd (so 1/sqrt(n_embd) is a detectable mistake) and from n_embd // n_head
    # (so a Head that ignores its head_size argument gets the wrong shape).
    config = GPTConfig(
        vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=32, attn_pdrop=0.1, resid_pdrop=0.1
    )
    mistakes = scale_mistakes(config.n_embd, _HEAD_SIZE) + _WEIGHT_MISTAKES + _LAYER_MISTAKES
    spec = _LayerSpec(HEAD, config, (_HEAD_SIZE,), _HEAD_SIZE, 1, False, mistakes)
    HEAD.passed("; ".join(_check_layer(spec, Head)) + ".")


def _dropout_behaviour(cls: Ref, config: GPTConfig) -> str:
    """Train mode must drop on the attention weights (attn_pdrop) and on the output (resid_pdrop)."""
    ex = ATTENTION
    name = cls.info.name or "your class"
    for attn_p, resid_p, where, rate in (
        (0.5, 0.0, "attention weights", "attn_pdrop"),
        (0.0, 0.5, "output (after the projection)", "resid_pdrop"),
    ):
        cfg = config.replace(attn_pdrop=attn_p, resid_pdrop=resid_p)
        what = f"{name} with attn_pdrop={attn_p}, resid_pdrop={resid_p}, in train mode"
        with seeded(3):
            x = 2 * torch.randn(2, config.block_size, config.n_embd)
        seed_learner(3)
        module = ex.build(cls, cfg)
        train(ex, module, True)
        with torch.no_grad():
            seed_learner(4)  # the dropout masks of the first call are those of a stream seeded 4
            a = _run(ex, what, module, x)
            if attn_p:
                _dropout_on_scores(module, what, x, a, 4, cfg)
            a = _output(ex, what, a, tuple(x.shape), 1)
            b = _output(ex, what, _run(ex, what, module, x), tuple(x.shape), 1)
        if close(a, b):
            raise ex.fail(
                C.NO_DROPOUT,
                f"{what}: two calls on the same x gave the same output, so there is no dropout on the "
                f"{where}. Add nn.Dropout(config.{rate}) there (it only acts in train mode).",
            )
        zeros = (a == 0).double().mean().item()
        if resid_p == 0.0 and zeros > 0.2:
            raise ex.fail(
                C.DROPOUT_RATE,
                f"{what}: {zeros:.0%} of the outputs are exactly 0, yet resid_pdrop is 0: your dropout after "
                "the projection uses attn_pdrop. Use config.resid_pdrop there, config.attn_pdrop on the weights.",
            )
        if resid_p > 0.0 and not 0.35 < zeros < 0.65:
            raise ex.fail(
                C.DROPOUT_RATE,
                f"{what}: {zeros:.0%} of the outputs are zeroed, not about 50%: the dropout after the "
                "projection should use config.resid_pdrop.",
            )
    return "dropout on the weights and the output in train mode only"


def _mask_is_a_buffer(ex: Exercise, name: str, module: Ref, bs: int) -> None:
    """A mask kept as a plain tensor attribute works on the CPU, but .to(device) and state_dict skip it."""
    attrs = attribute(ex, f"{name}.__dict__", module, "__dict__")
    plain = [
        n
        for n, v in (attrs.items() if isinstance(attrs, dict) else ())
        if isinstance(v, torch.Tensor) and v.dim() >= 2 and tuple(v.shape[-2:]) == (bs, bs)
    ]
    if plain:
        raise ex.fail(
            C.MASK_NOT_BUFFER,
            f"{name} keeps its mask as a plain tensor attribute (self.{plain[0]} = ...): model.to(device) does not "
            "move it and state_dict() does not hold it, so the layer breaks on a GPU. Register it as a buffer: "
            f"self.register_buffer('{plain[0]}', ...).",
        )


def _n_head_from_config(cls: Ref, config: GPTConfig) -> None:
    """Another config.n_head must give that many heads (a layer right for 4 heads only reads a fixed number)."""
    ex, n = ATTENTION, 2
    name = cls.info.name or "your class"
    cfg = config.replace(n_head=n, attn_pdrop=0.0, resid_pdrop=0.0)
    with seeded(6):
        module = ex.build(cls, cfg)
        x = 2 * torch.randn(2, cfg.block_size, cfg.n_embd)
    train(ex, module, False)
    what = f"{name}(config with n_head = {n}).forward(x)"
    out = _output(ex, what, _run(ex, what, module, x), tuple(x.shape), 1)
    readings = find_projections(module, cfg.n_embd, cfg.n_embd, with_proj=True).candidates
    if not readings or any(close(out, reference_attention(x, w, n), loose=True) for w in readings):
        return
    fixed = any(close(out, reference_attention(x, w, config.n_head), loose=True) for w in readings)
    raise ex.fail(
        C.HARD_CODED,
        f"{what} {f'computes {config.n_head} heads' if fixed else f'is wrong, though n_head = {config.n_head} was right'}"
        ": the number of heads (or the head size) is fixed in your code. Read it from the config: "
        "self.n_head = config.n_head, head_size = C // self.n_head.",
    )


def _dropout_on_scores(module: Ref, what: str, x: torch.Tensor, out: Any, seed: int, cfg: GPTConfig) -> None:
    """Dropout on the scores, before the softmax (NaN where it drops a masked -inf: 0 * -inf), on the values
    or on the input instead of on the weights after the softmax: the output of the same drop there."""
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return
    words = (
        " Dropout belongs on the attention weights, after the softmax: self.attn_drop(F.softmax(att, dim=-1)). "
        "On the scores it changes which keys the softmax sees (and a dropped -inf becomes 0 * -inf = NaN)."
    )
    if not torch.isfinite(out).all():
        raise ATTENTION.fail(
            C.DROPOUT_ON_SCORES,
            f"{what} gives NaN, though eval mode was fine: dropout multiplied masked -inf scores by 0 "
            f"(0 * -inf = NaN), so it acts on the scores before the softmax.{words}",
        )
    instead = "instead of on the attention weights after the softmax: self.attn_drop(F.softmax(att, dim=-1))."
    search = find_projections(module, cfg.n_embd, cfg.n_embd, with_proj=True)
    places = (
        ("scores", C.DROPOUT_ON_SCORES, f"dropout applied to the scores before the softmax.{words}"),
        (
            "values",
            C.DROPOUT_WRONG_PLACE,
            f"attn_pdrop's dropout applied to the values (att @ drop(v)) {instead}",
        ),
        (
            "input",
            C.DROPOUT_WRONG_PLACE,
            f"attn_pdrop's dropout applied to the input x, before the query, key and value projections {instead}",
        ),
    )
    for w in search.candidates[:1]:
        for where, code, says in places:
            with seeded(seed):  # the same dropout mask the learner's forward drew
                ref = reference_attention(x, w, cfg.n_head, dropout=where, p=cfg.attn_pdrop)
            if close(out, ref, loose=True):
                raise ATTENTION.fail(code, f"{what} matches {says}")


@ATTENTION.check
def check_attention(CausalSelfAttention: Ref) -> None:
    """Check `CausalSelfAttention(config)`: multi-head masked self-attention with an output projection.

    Compared with gptlib.CausalSelfAttention holding the learner's weights, in eval mode; then causality,
    dropout in train mode only, gradients, and that x is left untouched."""
    config = GPTConfig(
        vocab_size=11, block_size=8, n_layer=1, n_head=4, n_embd=32, attn_pdrop=0.1, resid_pdrop=0.1
    )
    head_size = config.n_embd // config.n_head
    mistakes = scale_mistakes(config.n_embd, head_size) + _WEIGHT_MISTAKES + _LAYER_MISTAKES + _HEAD_MISTAKES
    spec = _LayerSpec(ATTENTION, config, (), config.n_embd, config.n_head, True, mistakes)
    verified = _check_layer(spec, CausalSelfAttention)
    verified.insert(3, _dropout_behaviour(CausalSelfAttention, config))
    _n_head_from_config(CausalSelfAttention, config)
    verified.insert(1, "right for n_head = 2 too")
    ATTENTION.passed("; ".join(verified) + ".")
