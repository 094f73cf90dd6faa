"""Checks for lesson 07, attention maps: the weights by hand, the previous-token score, the induction score.

attention_weights_by_hand(attn, x) recomputes one layer's attention weights from
its query and key projections; the check compares them with what
GPT.attention_maps returns for the same model and input. The two scores reduce
maps (L, H, T, T) to one number per head; their checks feed synthetic heads whose
scores are known (a perfect previous-token head scores 1, a head that only looks
at itself 0) and real maps from a small GPT.

As in lesson 02's checks, a wrong answer is not left at "values differ": the
reference is computed with one known mistake switched on at a time (no scale,
softmax over the wrong axis, heads split without the transpose, the diagonal
instead of the one below it, position 0 counted, ...) and the mistake that the
learner's output matches is named, with the hint for it.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from gptlib.checks import codes as C
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    close,
    fraction_close,
    match,
    matched,
    max_diff,
    seeded,
    shape_str,
    type_name,
)
from gptlib.checks.learner import Ref, config_spec, module_spec
from gptlib.checks.probes import expect_callable, reject_none_or_tuple, run_untouched
from gptlib.checks.reference_attention import (
    FILL_ZERO,
    SOFTMAX_OVER_QUERIES,
    AttentionWeights,
    attention_weights,
    fit_scale,
    reference_attention,
    scale_mistakes,
    scale_words,
)
from gptlib.checks.verdict import CheckFailure
from gptlib.config import GPTConfig
from gptlib.model import GPT

__all__ = ["check_attention_weights_by_hand", "check_previous_token_score", "check_induction_score"]


def _as_tensor(ex: Exercise, what: str, out: Any) -> torch.Tensor:
    """The learner's result as a float64 tensor (numpy arrays accepted), or a named failure."""
    reject_none_or_tuple(ex, what, out, "return one tensor (drop the trailing comma).")
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise ex.fail(C.NOT_A_TENSOR, f"{what} returned a {type_name(out)}, not a tensor.")
    if not (out.is_floating_point() or out.dtype in (torch.int32, torch.int64)):
        raise ex.fail(C.WRONG_DTYPE, f"{what} returned dtype {out.dtype}; expected floats.")
    return out.double()


def _run(ex: Exercise, what: str, fn: Ref, *args: Any, tied: str = "") -> torch.Tensor:
    """fn(*args) as a float64 tensor, its arguments left untouched; `tied`: see probes.run_untouched."""
    advice = (
        " The caller still needs it: use out-of-place operations (masked_fill, not masked_fill_; a new tensor, "
        "not writes into the argument)."
    )
    return _as_tensor(ex, what, run_untouched(ex, what, fn, *args, tied=tied, advice=advice))


# ==== 7.1 attention weights by hand =================================================================

BY_HAND = Exercise(
    "attention_weights_by_hand",
    [C.NOT_CALLABLE, C.MISSING_SCALE, C.WRONG_SCALE, C.SOFTMAX_AXIS, C.NO_MASK, C.MASK_TRANSPOSED, C.MASK_INVERTED,
     C.MASK_FILL_ZERO, C.MASK_AFTER_SOFTMAX, C.HEAD_SPLIT, C.ONE_HEAD, C.QK_SWAPPED, C.WRONG_PROJECTION, C.NO_BIAS,
     C.WEIGHT_NOT_TRANSPOSED, C.EXTRA_DIM, C.FIXED_T, C.NAN_0_INF, C.ROW_MASKED, C.NAN, C.NO_SOFTMAX, C.NOT_NORMALISED, C.FUTURE_LEAK,
     C.IN_PLACE, C.WRONG_VALUES, C.WRONG_SHAPE, C.WRONG_DTYPE, C.NOT_A_TENSOR, C.RETURNED_NONE, C.RETURNED_TUPLE],
)  # fmt: skip


def weights_by_hand(
    attn: nn.Module,
    x: torch.Tensor,
    *,
    key: str = "key",
    bias: bool = True,
    transpose: bool = True,
    **kw: Any,
) -> torch.Tensor:
    """gptlib CausalSelfAttention `attn`'s weights (n_head, T, T) for its input x (T, C), written out.

    Right by default (equal to GPT.attention_maps); each keyword switches on one known mistake: those of
    reference_attention, key="value" (keys made with attn.value), bias=False (the layers' biases left out),
    transpose=False (x @ weight: the (out, in) weights used untransposed)."""
    lin_k = attn.value if key == "value" else attn.key
    wq, wk = (attn.query.weight, lin_k.weight) if transpose else (attn.query.weight.T, lin_k.weight.T)
    w = AttentionWeights(
        wq, attn.query.bias if bias else None, wk, lin_k.bias if bias else None,
        attn.value.weight, attn.value.bias,
    )  # fmt: skip
    with torch.no_grad():
        return reference_attention(x[None], w, attn.n_head, output="weights", **kw)[0]


_WEIGHT_MISTAKES = [
    SOFTMAX_OVER_QUERIES,
    Mistake(C.NO_MASK, "weights without the causal mask: every query also attends to later keys",
            {"mask": "none"}),
    Mistake(C.MASK_TRANSPOSED, "a flipped mask (torch.triu instead of torch.tril): each query sees itself "
            "and the FUTURE", {"mask": "upper"}),
    Mistake(C.MASK_AFTER_SOFTMAX, "the mask applied after the softmax: the future gets 0 but the rows no "
            "longer sum to 1", {"mask_after": "zero"}),
    FILL_ZERO,
    Mistake(C.HEAD_SPLIT, "heads split with q.view(n_head, T, head_size) instead of q.view(T, n_head, "
            "head_size).transpose(0, 1): each 'head' gets pieces of several positions", {"split": "view"}),
    Mistake(C.HEAD_SPLIT, "heads split with channel c going to head c % n_head; head h owns the "
            "consecutive channels h*head_size .. (h+1)*head_size - 1", {"split": "interleave"}),
    Mistake(C.QK_SWAPPED, "scores k @ q^T instead of q @ k^T: row t must be query t compared with every key",
            {"swap_qk": True}),
    Mistake(C.WRONG_PROJECTION, "keys made with attn.value instead of attn.key", {"key": "value"}),
    Mistake(C.NO_BIAS, "q and k computed as x @ weight.T without the biases: call the layers, "
            "attn.query(x) and attn.key(x)", {"bias": False}),
    Mistake(C.WEIGHT_NOT_TRANSPOSED, "q and k computed as x @ weight, the weight untransposed: nn.Linear "
            "stores its weight as (out, in) and computes x @ weight.T + bias", {"transpose": False}),
]  # fmt: skip


def _peaked_gpt(n_layer: int = 2, n_head: int = 4, n_embd: int = 32, block_size: int = 8) -> GPT:
    """A small GPT in eval mode whose attention is far from uniform (so mistakes show), with non-zero biases."""
    config = GPTConfig(
        vocab_size=13, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    model = GPT(config).eval()
    with torch.no_grad():
        model.embeddings.pos_emb.normal_(0.0, 0.5)
        for block in model.blocks:
            for lin in (block.attn.query, block.attn.key, block.attn.value):
                lin.weight.normal_(0.0, 0.25)
                lin.bias.normal_(0.0, 0.3)
    return model


def _layer_inputs(model: GPT, idx: torch.Tensor) -> list[torch.Tensor]:
    """The input of every layer's attention, ln1(x), for one prompt: a list of (T, C)."""
    inputs = []
    with torch.no_grad():
        hooks = [
            b.attn.register_forward_pre_hook(lambda m, args: inputs.append(args[0][0].clone()))
            for b in model.blocks
        ]
        model(idx)
        for h in hooks:
            h.remove()
    return inputs


def _weights_nonfinite(ex: Exercise, what: str, out: torch.Tensor) -> CheckFailure:
    bad = (~torch.isfinite(out)).any(dim=0).any(dim=-1).nonzero().flatten().tolist()  # queries with NaN/inf
    T = out.size(-1)
    if torch.isinf(out).any() and not torch.isnan(out).any():
        return ex.fail(
            C.NO_SOFTMAX,
            f"{what} holds -inf: those are masked scores, not weights. Take the softmax over the keys "
            "(dim=-1) after masking; weights are probabilities between 0 and 1.",
        )
    if len(bad) == T and T > 1:
        return ex.fail(
            C.NAN_0_INF,
            f"{what} is NaN at every query. The usual cause is a mask made with arithmetic, e.g. "
            "`scores * mask + (1 - mask) * float('-inf')`: where the mask is 1 that computes 0 * -inf = NaN. "
            "Use scores.masked_fill(mask == 0, float('-inf')).",
        )
    if bad == [0]:
        return ex.fail(
            C.ROW_MASKED,
            f"{what} is NaN for query 0 only: its whole row of scores is masked, and a softmax over nothing "
            "but -inf is 0/0. Keep the diagonal: torch.tril(torch.ones(T, T)) with the default diagonal=0.",
        )
    if bad == [T - 1]:
        return ex.fail(
            C.MASK_INVERTED,
            f"{what} is NaN for the last query only: its whole row of scores is masked, so the mask hides the "
            "past and the present instead of the future (masked_fill where tril == 1, not == 0).",
        )
    return ex.fail(
        C.NAN,
        f"{what} has NaN or inf at queries {bad} (of 0..{T - 1}): fill the "
        "scores with -inf before the softmax, and take the softmax over dim=-1.",
    )


def _weights_shape(ex: Exercise, what: str, out: torch.Tensor, n_head: int, T: int) -> None:
    want = (n_head, T, T)
    if tuple(out.shape) == want:
        return
    if tuple(out.shape) == (1, *want):
        raise ex.fail(
            C.EXTRA_DIM,
            f"{what} has shape {shape_str(out)}, one leading dimension too many; expected {want}. A mask taken as "
            "attn.mask[:, :, :T, :T] is (1, 1, T, T) and broadcasts one in: use attn.mask[0, 0, :T, :T] or "
            "torch.tril(torch.ones(T, T)).",
        )
    if tuple(out.shape) == (T, T):
        raise ex.fail(
            C.ONE_HEAD,
            f"{what} has shape {shape_str(out)}: one map, not one per head; expected {want} (n_head, T, T). "
            f"Split q and k into {n_head} heads of head_size = C // n_head channels each before q @ k^T.",
        )
    raise ex.fail(C.WRONG_SHAPE, f"{what} has shape {shape_str(out)}; expected {want} (n_head, T, T).")


@BY_HAND.check(grad=False)
def check_attention_weights_by_hand(fn: Ref) -> None:
    """Check `attention_weights_by_hand(attn, x)`: (T, C) -> the layer's weights (n_head, T, T).

    Compared with GPT.attention_maps of a small GPT, for both of its layers and two lengths T."""
    ex = BY_HAND
    expect_callable(ex, fn, "attention_weights_by_hand")
    with seeded(7):
        model = _peaked_gpt()
        prompts = [torch.randint(13, (1, 8)), torch.randint(13, (1, 5))]
    n_head, C_ = model.config.n_head, model.config.n_embd
    mistakes = scale_mistakes(C_, C_ // n_head) + _WEIGHT_MISTAKES
    specs = [module_spec("CausalSelfAttention", b.attn, config_spec(model.config)) for b in model.blocks]
    done: list[str] = []
    for idx in prompts:
        T = idx.size(1)
        maps = model.attention_maps(idx)  # n_layer x (1, nh, T, T)
        for layer, (block, x) in enumerate(zip(model.blocks, _layer_inputs(model, idx), strict=True)):
            what = f"attention_weights_by_hand(attn, x) for layer {layer}, x of shape {shape_str(x)}"
            worked = " and ".join(done)
            tied = worked and (
                f"{what} crashes, but {worked} worked: your code is tied to one length. "
                "Take T from x (T, C = x.shape) and make the mask for that T."
            )
            out = _run(ex, what, fn, specs[layer], x, tied=tied)
            try:
                _weights_shape(ex, what, out, n_head, T)
            except CheckFailure as e:
                if done and e.diagnosis == C.WRONG_SHAPE:
                    raise ex.fail(
                        C.FIXED_T,
                        f"{what} has shape {shape_str(out)}, but {worked} was right: take T from x "
                        "(T, C = x.shape) and make the mask for that T.",
                    ) from None
                raise
            if not torch.isfinite(out).all():
                raise _weights_nonfinite(ex, what, out)
            want = maps[layer][0]
            if close(out, want):
                continue
            if done:
                raise ex.fail(
                    C.FIXED_T,
                    f"{what} is wrong, but {worked} was right: does your code depend on a fixed length? "
                    "Take T from x.size(0) and build (or slice) the mask for that T.",
                )
            compute = partial(weights_by_hand, block.attn, x)
            found = match(out, compute, mistakes)
            if found:
                raise matched(ex, what, found)
            scale = fit_scale(out, compute)
            if scale is not None:
                right = 1 / math.sqrt(C_ // n_head)
                raise ex.fail(
                    C.WRONG_SCALE,
                    f"{what} matches scores scaled by {scale:.3g} instead of 1/sqrt(head_size) = {right:.3g}: "
                    f"{scale_words(scale, right)}.",
                )
            raise _weights_mismatch(ex, what, out, want)
        done.append(f"T = {T}")
    ex.passed(
        f"equal to GPT.attention_maps for both layers of a {n_head}-head GPT at {' and '.join(done)}; x left untouched."
    )


def _weights_mismatch(ex: Exercise, what: str, out: torch.Tensor, want: torch.Tensor) -> CheckFailure:
    T = out.size(-1)
    future = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    if (out[:, future].abs() > 1e-6).any():
        return ex.fail(
            C.FUTURE_LEAK,
            f"{what} gives weight to later keys: every entry above the diagonal (key > query) must be 0. "
            "Mask the scores with -inf there before the softmax.",
        )
    sums = out.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return ex.fail(
            C.NOT_NORMALISED,
            f"{what}: the rows sum to {sums.min().item():.3g} .. {sums.max().item():.3g}; each query's weights "
            "must sum to 1 (softmax over dim=-1, after masking).",
        )
    return ex.fail(
        C.WRONG_VALUES,
        f"{what}: causal and normalised, but only {fraction_close(out, want):.0%} of the weights match "
        f"GPT.attention_maps (largest difference {max_diff(out, want):.3g}). Check each step: q = attn.query(x), "
        "k = attn.key(x), split into heads, q @ k^T / sqrt(head_size), causal mask, softmax over the keys.",
    )


# ==== maps to score =================================================================================

_SCORE_CODES = (C.NOT_CALLABLE, C.IN_PLACE, C.NOT_AVERAGED, C.ONE_NUMBER, C.WRONG_SHAPE, C.WRONG_DTYPE,
                C.NOT_A_TENSOR, C.RETURNED_NONE, C.RETURNED_TUPLE, C.DIAGONAL_DIMS, C.WRONG_VALUES)  # fmt: skip


def _one_hot_rows(T: int, key_of: Any) -> torch.Tensor:
    """A (T, T) map in which query t puts all its weight on key key_of(t)."""
    m = torch.zeros(T, T, dtype=torch.float64)
    for t in range(T):
        m[t, key_of(t)] = 1.0
    return m


def _uniform(T: int) -> torch.Tensor:
    causal = torch.tril(torch.ones(T, T, dtype=torch.float64))
    return causal / causal.sum(-1, keepdim=True)


def _random_maps(*shape: int, sharp: float = 2.5) -> torch.Tensor:
    return attention_weights(sharp * torch.randn(*shape, dtype=torch.float64))


def _real_maps(T: int) -> torch.Tensor:
    """(L, H, T, T) maps of a small random GPT on a prompt that repeats its first half."""
    model = _peaked_gpt(block_size=T)
    half = torch.randint(13, (1, (T + 1) // 2))
    idx = torch.cat([half, half], dim=1)[:, :T]
    return torch.stack([m[0] for m in model.attention_maps(idx)]).double()


def _diagonal_score(
    maps: torch.Tensor,
    offset: int,
    first: int = 0,
    divide: str = "count",
    add_00: bool = False,
    drop_last: int = 0,
) -> torch.Tensor:
    """Mean over queries t >= first of maps[..., t, t + offset] (offset <= 0: a key before the query).

    divide="count" is the mean; "T" divides the sum by T (the other queries counted as 0); "none" is the sum.
    add_00 adds maps[..., 0, 0] to the sum (position 0 counted as its own previous token); drop_last leaves
    out the last queries."""
    T = maps.size(-1)
    d = torch.diagonal(maps, offset=offset, dim1=-2, dim2=-1)  # (..., T - |offset|): queries max(0,-offset)..
    d = d[..., max(0, first - max(0, -offset)) : d.size(-1) - drop_last]
    total = d.sum(-1) + (maps[..., 0, 0] if add_00 else 0)
    if divide == "none":
        return total
    if divide == "T":
        return total / T
    return total / max(d.size(-1) + (1 if add_00 else 0), 1)


def _score_shape(ex: Exercise, what: str, out: torch.Tensor, maps: torch.Tensor) -> None:
    L, H, T, _ = maps.shape
    if tuple(out.shape) == (L, H):
        return
    if tuple(out.shape[:2]) == (L, H) and out.dim() == 3:
        raise ex.fail(
            C.NOT_AVERAGED,
            f"{what} has shape {shape_str(out)}: one value per query position, not one per head. Average them: "
            f"expected shape ({L}, {H}) (layers, heads).",
        )
    if out.numel() == 1:
        raise ex.fail(
            C.ONE_NUMBER,
            f"{what} is a single number; expected one score per head, shape ({L}, {H}). Average over the "
            "query positions only (the last dimension after taking the diagonal), not over layers and heads.",
        )
    if tuple(out.shape) == (T, T) and T not in (L, H):
        raise ex.fail(
            C.DIAGONAL_DIMS,
            f"{what} has shape {shape_str(out)} = (T, T); expected ({L}, {H}) (layers, heads). A diagonal taken "
            "over the first two dims (layers and heads: torch.diagonal's default dims are dim1=0, dim2=1) "
            "leaves (T, T); take it over the last two axes, queries and keys: dim1=-2, dim2=-1.",
        )
    raise ex.fail(C.WRONG_SHAPE, f"{what} has shape {shape_str(out)}; expected ({L}, {H}) (layers, heads).")


def _fmt(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in t.flatten().tolist()) + "]"


# ==== 7.2 the previous-token score ==================================================================

PREVIOUS = Exercise(
    "previous_token_score",
    [*_SCORE_CODES, C.DIAGONAL, C.TRANSPOSED, C.OFF_BY_ONE, C.INCLUDES_POSITION_0, C.SUM_NOT_MEAN],
)
_PREVIOUS_MISTAKES = [
    Mistake(C.DIAGONAL, "the mean of the main diagonal maps[..., t, t]: how much each query attends to "
            "ITSELF, not to the token before it", {"offset": 0}),
    Mistake(C.TRANSPOSED, "the diagonal above the main one, maps[..., t - 1, t]: a key AFTER its query, "
            "always masked, so every score is 0. Rows are queries, columns keys: the previous token of "
            "query t is column t - 1", {"offset": 1}),
    Mistake(C.OFF_BY_ONE, "the weight on the token two places back, maps[..., t, t - 2] (diagonal offset "
            "-2 instead of -1)", {"offset": -2}),
    Mistake(C.INCLUDES_POSITION_0, "the sum over queries 1..T-1 divided by T: query 0, which has no "
            "previous token, is counted as a 0", {"offset": -1, "divide": "T"}),
    Mistake(C.INCLUDES_POSITION_0, "a mean that counts maps[..., 0, 0] as query 0's 'previous token' (it "
            "is always 1: query 0 can only see itself)", {"offset": -1, "add_00": True}),
    Mistake(C.SUM_NOT_MEAN, "the sum of the weights maps[..., t, t - 1], not their mean (divide by the T - "
            "1 queries that have a previous token)", {"offset": -1, "divide": "none"}),
]  # fmt: skip


def _previous_cases() -> list[tuple[str, torch.Tensor]]:
    T = 9
    perfect = _one_hot_rows(T, lambda t: max(t - 1, 0))
    synthetic = torch.stack(
        [torch.stack([perfect, _uniform(T), _one_hot_rows(T, lambda t: t)]), _random_maps(3, T, T)]
    )
    return [
        ("synthetic heads (a perfect previous-token head, uniform, self-attending; 3 random)", synthetic),
        ("the maps of a small GPT", _real_maps(8)),
        ("random maps over T = 5", _random_maps(1, 2, 5, 5)),
    ]


@PREVIOUS.check(grad=False)
def check_previous_token_score(fn: Ref) -> None:
    """Check `previous_token_score(maps)`: (L, H, T, T) -> (L, H), the mean of maps[l, h, t, t - 1] over t >= 1."""
    ex = PREVIOUS
    expect_callable(ex, fn, "previous_token_score")
    first_scores = None
    for name, maps in _previous_cases():
        what = f"previous_token_score(maps) on {name}, maps of shape {shape_str(maps)},"
        out = _run(ex, what, fn, maps)
        _score_shape(ex, what, out, maps)
        want = _diagonal_score(maps, -1, first=1)
        if close(out, want):
            first_scores = out[0] if first_scores is None else first_scores
            continue
        found = match(out, partial(_diagonal_score, maps), _PREVIOUS_MISTAKES, pairs=False)
        if found:
            raise matched(ex, f"{what} gives {_fmt(out)}: that", found)
        raise ex.fail(
            C.WRONG_VALUES,
            f"{what} gives {_fmt(out)}; expected {_fmt(want)}. The score of a head is the mean, over the queries "
            "t = 1 .. T-1, of maps[l, h, t, t - 1]: the weight each query puts on the token just before it.",
        )
    perfect, uniform, itself = (float(v) for v in first_scores)
    ex.passed(
        f"a perfect previous-token head scores {perfect:.2f}, a uniform one {uniform:.2f}, a self-attending one "
        f"{itself:.2f}; right on random maps and on a GPT's maps."
    )


# ==== 7.3 the induction score =======================================================================

INDUCTION = Exercise(
    "induction_score",
    [*_SCORE_CODES, C.SAME_TOKEN, C.OFF_BY_ONE, C.INCLUDES_FIRST_REPEAT, C.PREVIOUS_TOKEN, C.SUM_NOT_MEAN,
     C.TRANSPOSED, C.FIXED_SEQ_LEN],
)  # fmt: skip


def _induction(maps: torch.Tensor, seq_len: int, **mistake: Any) -> torch.Tensor:
    """Mean over the queries t of the second repeat (t >= seq_len) of maps[..., t, t - seq_len + 1]; a
    mistake's keywords of _diagonal_score replace these (first=0: the whole diagonal)."""
    return _diagonal_score(maps, **{"offset": 1 - seq_len, "first": seq_len, **mistake})


def _induction_mistakes(seq_len: int) -> list[Mistake]:
    return [
        Mistake(
            C.SAME_TOKEN,
            f"the weight on the earlier copy of the SAME token, maps[..., t, t - seq_len] (offset -{seq_len}): "
            "a duplicate-token head. An induction head looks one further, at the token that came NEXT last time",
            {"offset": -seq_len},
        ),
        Mistake(
            C.OFF_BY_ONE,
            f"the weight on maps[..., t, t - seq_len + 2] (offset -{seq_len - 2}): one position too far",
            {"offset": 2 - seq_len},
        ),
        Mistake(
            C.OFF_BY_ONE,
            "the weight on maps[..., t, t - seq_len + 2] for t = seq_len .. T - 2: one position too far (off "
            "by one), with the last query left out to stay inside the map",
            {"offset": 2 - seq_len, "drop_last": 1},
        ),
        Mistake(
            C.INCLUDES_FIRST_REPEAT,
            f"the mean of the whole diagonal at offset -{seq_len - 1}: it starts at query seq_len - 1 = "
            f"{seq_len - 1}, the last token of the FIRST repeat, which has no earlier copy. Use the queries "
            f"t = seq_len .. T - 1 only",
            {"first": 0},
        ),
        Mistake(
            C.INCLUDES_FIRST_REPEAT,
            "the sum over the second repeat divided by T: the queries of the first repeat are counted as 0. "
            "Average over the seq_len queries of the second repeat",
            {"divide": "T"},
        ),
        Mistake(
            C.PREVIOUS_TOKEN,
            "the previous-token score, maps[..., t, t - 1], not the induction score",
            {"offset": -1, "first": 0},
        ),
        Mistake(
            C.PREVIOUS_TOKEN,
            "the weight on the previous token, maps[..., t, t - 1], over the second repeat: not the induction score",
            {"offset": -1},
        ),
        Mistake(
            C.SUM_NOT_MEAN,
            "the sum over the second repeat, not the mean (divide by its seq_len queries)",
            {"divide": "none"},
        ),
        Mistake(
            C.TRANSPOSED,
            "maps[..., t - seq_len + 1, t], above the diagonal (keys after their query, always 0): rows are "
            "queries, columns keys",
            {"offset": seq_len - 1},
        ),
    ]


def _induction_cases() -> list[tuple[str, int, torch.Tensor]]:
    L = 6
    T = 2 * L
    perfect = _one_hot_rows(T, lambda t: t - L + 1 if t >= L else t)
    duplicate = _one_hot_rows(T, lambda t: t - L if t >= L else t)
    previous = _one_hot_rows(T, lambda t: max(t - 1, 0))
    synthetic = torch.stack(
        [torch.stack([perfect, previous, _uniform(T)]), torch.cat([duplicate[None], _random_maps(2, T, T)])]
    )
    return [
        (
            "synthetic heads (a perfect induction head, a previous-token head, uniform; duplicate-token, 2 random)",
            L,
            synthetic,
        ),
        ("the maps of a small GPT on a repeated prompt", 4, _real_maps(8)),
        ("random maps", 5, _random_maps(1, 2, 10, 10)),
    ]


@INDUCTION.check(grad=False)
def check_induction_score(fn: Ref) -> None:
    """Check `induction_score(maps, seq_len)`: maps (L, H, 2*seq_len, 2*seq_len) -> (L, H).

    The score: the mean over the queries t = seq_len .. 2*seq_len - 1 of maps[l, h, t, t - seq_len + 1]."""
    ex = INDUCTION
    expect_callable(ex, fn, "induction_score")
    first_scores = None
    for name, seq_len, maps in _induction_cases():
        what = f"induction_score(maps, seq_len={seq_len}) on {name}, maps of shape {shape_str(maps)},"
        out = _run(ex, what, fn, maps, seq_len)
        _score_shape(ex, what, out, maps)
        want = _induction(maps, seq_len)
        if torch.isnan(out).any():
            raise ex.fail(
                C.FIXED_SEQ_LEN,
                f"{what} gives {_fmt(out)}: NaN is the mean of nothing, e.g. of an empty diagonal when the offset "
                f"is larger than T = {maps.size(-1)}. Use the argument seq_len (the offset is -(seq_len - 1)).",
            )
        if close(out, want):
            first_scores = out if first_scores is None else first_scores
            continue
        found = match(out, partial(_induction, maps, seq_len), _induction_mistakes(seq_len), pairs=False)
        if found:
            raise matched(ex, f"{what} gives {_fmt(out)}: that", found)
        T = maps.size(-1)
        for other in range(2, T):  # the right score for another seq_len: the argument is not used
            if other != seq_len and close(out, _induction(maps, other), loose=True):
                raise ex.fail(
                    C.FIXED_SEQ_LEN,
                    f"{what} gives the induction score for seq_len={other}, not for the seq_len={seq_len} it was "
                    "given: use the argument seq_len, not a number of your own.",
                )
        raise ex.fail(
            C.WRONG_VALUES,
            f"{what} gives {_fmt(out)}; expected {_fmt(want)}. For each query t in the second repeat "
            "(t = seq_len .. T-1) take maps[l, h, t, t - seq_len + 1], the token after the earlier copy of "
            "token t; the score is their mean.",
        )
    perfect, previous, uniform = (float(v) for v in first_scores[0])
    ex.passed(
        f"a perfect induction head scores {perfect:.2f}, a previous-token head {previous:.2f}, a uniform one "
        f"{uniform:.2f}, a duplicate-token head {float(first_scores[1, 0]):.2f}; right on random maps and a GPT's "
        "maps, for seq_len 6, 4 and 5."
    )
