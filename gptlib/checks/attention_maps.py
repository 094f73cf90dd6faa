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
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from gptlib.checks._attention_reference import attention_weights
from gptlib.checks.base import (
    CheckFailure,
    call,
    error_only,
    fraction_close,
    isolated,
    max_diff,
    passed,
    reject_none_or_tuple,
    seeded,
    shape_str,
)
from gptlib.checks.hints import register_hints
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
from gptlib.model import GPT

__all__ = ["check_attention_weights_by_hand", "check_previous_token_score", "check_induction_score"]


def _as_tensor(exercise: str, what: str, out: Any) -> torch.Tensor:
    """The learner's result as a float64 tensor (numpy arrays accepted), or a named failure."""
    reject_none_or_tuple(exercise, what, out, "return one tensor (drop the trailing comma).")
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise CheckFailure(exercise, "not-a-tensor", f"{what} returned a {type(out).__name__}, not a tensor.")
    if not (out.is_floating_point() or out.dtype in (torch.int32, torch.int64)):
        raise CheckFailure(exercise, "wrong-dtype", f"{what} returned dtype {out.dtype}; expected floats.")
    return out.detach().double()


def _untouched(exercise: str, what: str, before: torch.Tensor, after: torch.Tensor) -> None:
    if not torch.equal(before, after):
        raise CheckFailure(
            exercise,
            "in-place",
            f"{what} changed its input in place. The caller still needs it: use out-of-place operations "
            "(masked_fill, not masked_fill_; a new tensor, not writes into the argument).",
        )


# ---- 7.1 attention weights by hand ---------------------------------------------------------------


def _split(t: torch.Tensor, n_head: int, how: str = "transpose") -> torch.Tensor:
    """(T, C) -> (n_head, T, head_size). Other values of `how` are the usual mistakes."""
    T, C = t.shape
    hs = C // n_head
    if how == "transpose":
        return t.view(T, n_head, hs).transpose(0, 1)
    if how == "view":  # reshaped without the transpose: each "head" gets pieces of several positions
        return t.reshape(n_head, T, hs)
    if how == "interleave":  # channel c goes to head c % n_head instead of c // head_size
        return t.view(T, hs, n_head).permute(2, 0, 1)
    raise ValueError(f"unknown split {how!r}.")


def weights_by_hand(
    attn: nn.Module,
    x: torch.Tensor,
    *,
    scale: float | None = None,
    softmax_dim: int = -1,
    mask: str = "causal",
    fill: float = float("-inf"),
    mask_after: str | None = None,
    split: str = "transpose",
    swap_qk: bool = False,
    key: str = "key",
    bias: bool = True,
) -> torch.Tensor:
    """gptlib CausalSelfAttention `attn`'s weights (n_head, T, T) for its input x (T, C), written out.

    Right by default (equal to GPT.attention_maps); each keyword switches on one known mistake."""
    lin_k = attn.value if key == "value" else attn.key
    if bias:
        q, k = attn.query(x), lin_k(x)  # (T, C)
    else:
        q, k = x @ attn.query.weight.T, x @ lin_k.weight.T
    if swap_qk:
        q, k = k, q
    q, k = _split(q, attn.n_head, split), _split(k, attn.n_head, split)  # (nh, T, hs)
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1))
    scores = (q @ k.transpose(-2, -1)) * scale  # (nh, T, T)
    return attention_weights(scores, mask=mask, softmax_dim=softmax_dim, fill=fill, mask_after=mask_after)


_WEIGHT_MISTAKES = [
    Mistake(
        "softmax-axis",
        "a softmax over dim -2 (the queries): each COLUMN sums to 1 instead of each row",
        {"softmax_dim": -2},
    ),
    Mistake(
        "no-mask", "weights without the causal mask: every query also attends to later keys", {"mask": "none"}
    ),
    Mistake(
        "mask-transposed",
        "a flipped mask (torch.triu instead of torch.tril): each query sees itself and the FUTURE",
        {"mask": "upper"},
    ),
    Mistake(
        "mask-after-softmax",
        "the mask applied after the softmax: the future gets 0 but the rows no longer sum to 1",
        {"mask_after": "zero"},
    ),
    Mistake(
        "heads-split",
        "heads split with q.view(n_head, T, head_size) instead of q.view(T, n_head, head_size).transpose(0, 1): "
        "each 'head' gets pieces of several positions",
        {"split": "view"},
    ),
    Mistake(
        "heads-split",
        "heads split with channel c going to head c % n_head; head h owns the consecutive channels "
        "h*head_size .. (h+1)*head_size - 1",
        {"split": "interleave"},
    ),
    Mistake(
        "qk-swapped",
        "scores k @ q^T instead of q @ k^T: row t must be query t compared with every key",
        {"swap_qk": True},
    ),
    Mistake("wrong-projection", "keys made with attn.value instead of attn.key", {"key": "value"}),
    Mistake(
        "no-bias",
        "q and k computed as x @ weight.T without the biases: call the layers, attn.query(x) and attn.key(x)",
        {"bias": False},
    ),
]


def _peaked_gpt(n_layer: int = 2, n_head: int = 4, n_embd: int = 32, block_size: int = 8) -> GPT:
    """A small GPT in eval mode whose attention is far from uniform (so mistakes show), with non-zero biases."""
    config = GPTConfig(
        vocab_size=13,
        block_size=block_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        embd_pdrop=0.0,
        resid_pdrop=0.0,
        attn_pdrop=0.0,
    )
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
    with torch.no_grad():
        x = model.embeddings(idx)
        inputs = []
        for block in model.blocks:
            inputs.append(block.ln1(x)[0])
            x = block(x)
    return inputs


def _weights_nonfinite(ex: str, what: str, out: torch.Tensor) -> CheckFailure:
    bad_rows = (~torch.isfinite(out)).any(dim=0).any(dim=-1)  # (T,) queries with NaN/inf
    T = out.size(-1)
    if torch.isinf(out).any() and not torch.isnan(out).any():
        return CheckFailure(
            ex,
            "no-softmax",
            f"{what} holds -inf: those are masked scores, not weights. Take the softmax over the keys "
            "(dim=-1) after masking; weights are probabilities between 0 and 1.",
        )
    if bool(bad_rows.all()) and T > 1:
        return CheckFailure(
            ex,
            "nan-0-inf",
            f"{what} is NaN at every query. The usual cause is a mask made with arithmetic, e.g. "
            "`scores * mask + (1 - mask) * float('-inf')`: where the mask is 1 that computes 0 * -inf = NaN. "
            "Use scores.masked_fill(mask == 0, float('-inf')).",
        )
    if bad_rows.nonzero().flatten().tolist() == [0]:
        return CheckFailure(
            ex,
            "row-masked",
            f"{what} is NaN for query 0 only: its whole row of scores is masked, and a softmax over nothing "
            "but -inf is 0/0. Keep the diagonal: torch.tril(torch.ones(T, T)) with the default diagonal=0.",
        )
    return CheckFailure(
        ex,
        "nan",
        f"{what} has NaN or inf at queries {bad_rows.nonzero().flatten().tolist()} (of 0..{T - 1}): fill the "
        "scores with -inf before the softmax, and take the softmax over dim=-1.",
    )


def _weights_shape(ex: str, what: str, out: torch.Tensor, n_head: int, T: int) -> None:
    want = (n_head, T, T)
    if tuple(out.shape) == want:
        return
    if tuple(out.shape) == (1, *want):
        raise CheckFailure(
            ex,
            "extra-dim",
            f"{what} has shape {shape_str(out)}, one leading dimension too many; expected {want}. A mask taken as "
            "attn.mask[:, :, :T, :T] is (1, 1, T, T) and broadcasts one in: use attn.mask[0, 0, :T, :T] or "
            "torch.tril(torch.ones(T, T)).",
        )
    if tuple(out.shape) == (T, T):
        raise CheckFailure(
            ex,
            "heads-not-split",
            f"{what} has shape {shape_str(out)}: one map, not one per head; expected {want} (n_head, T, T). "
            f"Split q and k into {n_head} heads of head_size = C // n_head channels each before q @ k^T.",
        )
    raise CheckFailure(
        ex, "wrong-shape", f"{what} has shape {shape_str(out)}; expected {want} (n_head, T, T)."
    )


@isolated
def check_attention_weights_by_hand(fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> None:
    """Check `attention_weights_by_hand(attn, x)`: (T, C) -> the layer's weights (n_head, T, T).

    Compared with GPT.attention_maps of a small GPT, for both of its layers and two lengths T."""
    ex = "attention_weights_by_hand"
    if not callable(fn):
        raise CheckFailure(ex, "not-callable", f"pass your function itself, got {type(fn).__name__}.")
    with seeded(7):
        model = _peaked_gpt()
        prompts = [torch.randint(13, (1, 8)), torch.randint(13, (1, 5))]
    n_head, C = model.config.n_head, model.config.n_embd
    mistakes = scale_mistakes(C, C // n_head) + _WEIGHT_MISTAKES
    done: list[str] = []
    for idx in prompts:
        T = idx.size(1)
        maps = model.attention_maps(idx)  # n_layer x (1, nh, T, T)
        for layer, (block, x) in enumerate(zip(model.blocks, _layer_inputs(model, idx), strict=True)):
            what = f"attention_weights_by_hand(attn, x) for layer {layer}, x of shape {shape_str(x)}"
            before = x.clone()
            try:
                with torch.no_grad():
                    raw = call(ex, what, fn, block.attn, x)
            except CheckFailure as e:
                if done and e.diagnosis == "crashed":
                    raise CheckFailure(
                        ex,
                        "fixed-T",
                        f"{what} crashes, but {' and '.join(done)} worked: your code is tied to one length. "
                        f"Take T from x (T, C = x.shape) and make the mask for that T. The error: {error_only(e, what)}",
                    ) from None
                raise
            _untouched(ex, what, before, x)
            out = _as_tensor(ex, what, raw)
            try:
                _weights_shape(ex, what, out, n_head, T)
            except CheckFailure as e:
                if done and e.diagnosis == "wrong-shape":
                    raise CheckFailure(
                        ex,
                        "fixed-T",
                        f"{what} has shape {shape_str(out)}, but {' and '.join(done)} was right: take T from x "
                        "(T, C = x.shape) and make the mask for that T.",
                    ) from None
                raise
            if not torch.isfinite(out).all():
                raise _weights_nonfinite(ex, what, out)
            want = maps[layer][0]
            if close(out, want):
                continue
            if done:
                right_before = " and ".join(done)
                raise CheckFailure(
                    ex,
                    "fixed-T",
                    f"{what} is wrong, but {right_before} was right: does your code depend on a fixed length? "
                    "Take T from x.size(0) and build (or slice) the mask for that T.",
                )

            def compute(attn: nn.Module = block.attn, inp: torch.Tensor = x, **kw: Any) -> torch.Tensor:
                return weights_by_hand(attn, inp, **kw)

            with torch.no_grad():
                found = match(out, compute, mistakes)
                if found:
                    raise matched_failure(ex, what, found)
                scale = fit_scale(out, compute)
            if scale is not None:
                right = 1 / math.sqrt(C // n_head)
                raise CheckFailure(
                    ex,
                    "wrong-scale",
                    f"{what} matches scores scaled by {scale:.3g} instead of 1/sqrt(head_size) = {right:.3g}: "
                    f"{scale_words(scale, right)}.",
                )
            raise _weights_mismatch(ex, what, out, want)
        done.append(f"T = {T}")
    passed(
        ex,
        f"equal to GPT.attention_maps for both layers of a {n_head}-head GPT at {' and '.join(done)}; "
        "x left untouched.",
    )


def _weights_mismatch(ex: str, what: str, out: torch.Tensor, want: torch.Tensor) -> CheckFailure:
    T = out.size(-1)
    future = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    if (out[:, future].abs() > 1e-6).any():
        return CheckFailure(
            ex,
            "future-leak",
            f"{what} gives weight to later keys: every entry above the diagonal (key > query) must be 0. "
            "Mask the scores with -inf there before the softmax.",
        )
    sums = out.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return CheckFailure(
            ex,
            "not-normalised",
            f"{what}: the rows sum to {sums.min().item():.3g} .. {sums.max().item():.3g}; each query's weights "
            "must sum to 1 (softmax over dim=-1, after masking).",
        )
    return CheckFailure(
        ex,
        "wrong-values",
        f"{what}: causal and normalised, but only {fraction_close(out, want):.0%} of the weights match "
        f"GPT.attention_maps (largest difference {max_diff(out, want):.3g}). Check each step: q = attn.query(x), "
        "k = attn.key(x), split into heads, q @ k^T / sqrt(head_size), causal mask, softmax over the keys.",
    )


# ---- maps to score -------------------------------------------------------------------------------


def _causal_softmax(scores: torch.Tensor) -> torch.Tensor:
    return attention_weights(scores)


def _one_hot_rows(T: int, key_of: Callable[[int], int]) -> torch.Tensor:
    """A (T, T) map in which query t puts all its weight on key key_of(t)."""
    m = torch.zeros(T, T, dtype=torch.float64)
    for t in range(T):
        m[t, key_of(t)] = 1.0
    return m


def _uniform(T: int) -> torch.Tensor:
    causal = torch.tril(torch.ones(T, T, dtype=torch.float64))
    return causal / causal.sum(-1, keepdim=True)


def _random_maps(*shape: int, sharp: float = 2.5) -> torch.Tensor:
    return _causal_softmax(sharp * torch.randn(*shape, dtype=torch.float64))


def _real_maps(T: int) -> torch.Tensor:
    """(L, H, T, T) maps of a small random GPT on a prompt that repeats its first half."""
    model = _peaked_gpt(block_size=T)
    half = torch.randint(13, (1, (T + 1) // 2))
    idx = torch.cat([half, half], dim=1)[:, :T]
    return torch.stack([m[0] for m in model.attention_maps(idx)]).double()


def _diagonal_score(
    maps: torch.Tensor, offset: int, first: int = 0, divide: str = "count", add_00: bool = False
) -> torch.Tensor:
    """Mean over queries t >= first of maps[..., t, t + offset] (offset <= 0: a key before the query).

    divide="count" is the mean; "T" divides the sum by T (the other queries counted as 0); "none" is the sum.
    add_00 adds maps[..., 0, 0] to the sum (position 0 counted as its own previous token)."""
    T = maps.size(-1)
    d = torch.diagonal(maps, offset=offset, dim1=-2, dim2=-1)  # (..., T - |offset|): queries max(0,-offset)..
    q0 = max(0, -offset)
    d = d[..., max(0, first - q0) :]
    total = d.sum(-1)
    if add_00:
        total = total + maps[..., 0, 0]
    if divide == "none":
        return total
    if divide == "T":
        return total / T
    n = d.size(-1) + (1 if add_00 else 0)
    return total / max(n, 1)


def _run_score(ex: str, what: str, fn: Callable[..., Any], maps: torch.Tensor, *args: Any) -> torch.Tensor:
    before = maps.clone()
    with torch.no_grad():
        raw = call(ex, what, fn, maps, *args)
    _untouched(ex, what, before, maps)
    return _as_tensor(ex, what, raw)


def _score_shape(ex: str, what: str, out: torch.Tensor, maps: torch.Tensor) -> None:
    L, H, T, _ = maps.shape
    if tuple(out.shape) == (L, H):
        return
    if tuple(out.shape[:2]) == (L, H) and out.dim() == 3:
        raise CheckFailure(
            ex,
            "not-averaged",
            f"{what} has shape {shape_str(out)}: one value per query position, not one per head. Average them: "
            f"expected shape ({L}, {H}) (layers, heads).",
        )
    if out.numel() == 1:
        raise CheckFailure(
            ex,
            "one-number",
            f"{what} is a single number; expected one score per head, shape ({L}, {H}). Average over the "
            "query positions only (the last dimension after taking the diagonal), not over layers and heads.",
        )
    raise CheckFailure(
        ex, "wrong-shape", f"{what} has shape {shape_str(out)}; expected ({L}, {H}) (layers, heads)."
    )


def _fmt(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in t.flatten().tolist()) + "]"


# ---- 7.2 the previous-token score ----------------------------------------------------------------

_PREVIOUS_MISTAKES = [
    Mistake(
        "diagonal",
        "the mean of the main diagonal maps[..., t, t]: how much each query attends to ITSELF, not to the "
        "token before it",
        {"offset": 0},
    ),
    Mistake(
        "transposed",
        "the diagonal above the main one, maps[..., t - 1, t]: a key AFTER its query, always masked, so every "
        "score is 0. Rows are queries, columns keys: the previous token of query t is column t - 1",
        {"offset": 1},
    ),
    Mistake(
        "off-by-one",
        "the weight on the token two places back, maps[..., t, t - 2] (diagonal offset -2 instead of -1)",
        {"offset": -2},
    ),
    Mistake(
        "includes-position-0",
        "the sum over queries 1..T-1 divided by T: query 0, which has no previous token, is counted as a 0",
        {"offset": -1, "divide": "T"},
    ),
    Mistake(
        "includes-position-0",
        "a mean that counts maps[..., 0, 0] as query 0's 'previous token' (it is always 1: query 0 can only "
        "see itself)",
        {"offset": -1, "add_00": True},
    ),
    Mistake(
        "sum-not-mean",
        "the sum of the weights maps[..., t, t - 1], not their mean (divide by the T - 1 queries that have a "
        "previous token)",
        {"offset": -1, "divide": "none"},
    ),
]


def _previous_cases() -> list[tuple[str, torch.Tensor]]:
    T = 9
    perfect = _one_hot_rows(T, lambda t: max(t - 1, 0))
    synthetic = torch.stack(
        [
            torch.stack([perfect, _uniform(T), _one_hot_rows(T, lambda t: t)]),
            _random_maps(3, T, T),
        ]
    )  # (2, 3, T, T)
    return [
        ("synthetic heads (a perfect previous-token head, uniform, self-attending; 3 random)", synthetic),
        ("the maps of a small GPT", _real_maps(8)),
        ("random maps over T = 5", _random_maps(1, 2, 5, 5)),
    ]


@isolated
def check_previous_token_score(fn: Callable[[torch.Tensor], Any]) -> None:
    """Check `previous_token_score(maps)`: (L, H, T, T) -> (L, H), the mean of maps[l, h, t, t - 1] over t >= 1."""
    ex = "previous_token_score"
    if not callable(fn):
        raise CheckFailure(ex, "not-callable", f"pass your function itself, got {type(fn).__name__}.")
    first_scores = None
    for name, maps in _previous_cases():
        what = f"previous_token_score(maps) on {name}, maps of shape {shape_str(maps)},"
        out = _run_score(ex, what, fn, maps)
        _score_shape(ex, what, out, maps)
        want = _diagonal_score(maps, -1, first=1)
        if close(out, want):
            if first_scores is None:
                first_scores = out[0]
            continue
        found = match(out, lambda m=maps, **kw: _diagonal_score(m, **kw), _PREVIOUS_MISTAKES, pairs=False)
        if found:
            raise matched_failure(ex, f"{what} gives {_fmt(out)}: that", found)
        raise CheckFailure(
            ex,
            "wrong-values",
            f"{what} gives {_fmt(out)}; expected {_fmt(want)}. The score of a head is the mean, over the queries "
            "t = 1 .. T-1, of maps[l, h, t, t - 1]: the weight each query puts on the token just before it.",
        )
    assert first_scores is not None
    perfect, uniform, itself = (float(v) for v in first_scores)
    passed(
        ex,
        f"a perfect previous-token head scores {perfect:.2f}, a uniform one {uniform:.2f}, a self-attending one "
        f"{itself:.2f}; right on random maps and on a GPT's maps.",
    )


# ---- 7.3 the induction score ---------------------------------------------------------------------


def _induction(
    maps: torch.Tensor, seq_len: int, shift: int = 1, first: str = "second", divide: str = "count"
):
    """Mean over queries t in the second repeat of maps[..., t, t - seq_len + shift] (right: shift=1).

    first="second" starts at t = seq_len; "diagonal" takes the whole diagonal (from the first query that has
    such a key)."""
    offset = -(seq_len - shift)
    start = seq_len if first == "second" else 0
    return _diagonal_score(maps, offset, first=start, divide=divide)


def _induction_mistakes(seq_len: int) -> list[Mistake]:
    return [
        Mistake(
            "same-token",
            f"the weight on the earlier copy of the SAME token, maps[..., t, t - seq_len] (offset -{seq_len}): "
            "a duplicate-token head. An induction head looks one further, at the token that came NEXT last time",
            {"shift": 0},
        ),
        Mistake(
            "off-by-one",
            f"the weight on maps[..., t, t - seq_len + 2] (offset -{seq_len - 2}): one position too far",
            {"shift": 2},
        ),
        Mistake(
            "includes-first-repeat",
            f"the mean of the whole diagonal at offset -{seq_len - 1}: it starts at query seq_len - 1 = "
            f"{seq_len - 1}, the last token of the FIRST repeat, which has no earlier copy. Use the queries "
            f"t = seq_len .. T - 1 only",
            {"first": "diagonal"},
        ),
        Mistake(
            "includes-first-repeat",
            "the sum over the second repeat divided by T: the queries of the first repeat are counted as 0. "
            "Average over the seq_len queries of the second repeat",
            {"divide": "T"},
        ),
        Mistake(
            "previous-token",
            "the previous-token score, maps[..., t, t - 1], not the induction score",
            {"shift": seq_len - 1, "first": "diagonal"},
        ),
        Mistake(
            "previous-token",
            "the weight on the previous token, maps[..., t, t - 1], over the second repeat: not the induction score",
            {"shift": seq_len - 1},
        ),
        Mistake(
            "sum-not-mean",
            "the sum over the second repeat, not the mean (divide by its seq_len queries)",
            {"divide": "none"},
        ),
        Mistake(
            "transposed",
            "maps[..., t - seq_len + 1, t], above the diagonal (keys after their query, always 0): rows are "
            "queries, columns keys",
            {"shift": 2 * seq_len - 1},
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


@isolated
def check_induction_score(fn: Callable[[torch.Tensor, int], Any]) -> None:
    """Check `induction_score(maps, seq_len)`: maps (L, H, 2*seq_len, 2*seq_len) -> (L, H).

    The score: the mean over the queries t = seq_len .. 2*seq_len - 1 of maps[l, h, t, t - seq_len + 1]."""
    ex = "induction_score"
    if not callable(fn):
        raise CheckFailure(ex, "not-callable", f"pass your function itself, got {type(fn).__name__}.")
    first_scores = None
    for name, seq_len, maps in _induction_cases():
        what = f"induction_score(maps, seq_len={seq_len}) on {name}, maps of shape {shape_str(maps)},"
        out = _run_score(ex, what, fn, maps, seq_len)
        _score_shape(ex, what, out, maps)
        want = _induction(maps, seq_len)
        if torch.isnan(out).any():
            raise CheckFailure(
                ex,
                "fixed-seq-len",
                f"{what} gives {_fmt(out)}: NaN is the mean of nothing, e.g. of an empty diagonal when the offset "
                f"is larger than T = {maps.size(-1)}. Use the argument seq_len (the offset is -(seq_len - 1)).",
            )
        if close(out, want):
            if first_scores is None:
                first_scores = out
            continue
        found = match(
            out,
            lambda m=maps, s=seq_len, **kw: _induction(m, s, **kw),
            _induction_mistakes(seq_len),
            pairs=False,
        )
        if found:
            raise matched_failure(ex, f"{what} gives {_fmt(out)}: that", found)
        T = maps.size(-1)
        for other in range(2, T):  # the right score for another seq_len: the argument is not used
            if other != seq_len and close(out, _induction(maps, other), loose=True):
                raise CheckFailure(
                    ex,
                    "fixed-seq-len",
                    f"{what} gives the induction score for seq_len={other}, not for the seq_len={seq_len} it was "
                    "given: use the argument seq_len, not a number of your own.",
                )
        raise CheckFailure(
            ex,
            "wrong-values",
            f"{what} gives {_fmt(out)}; expected {_fmt(want)}. For each query t in the second repeat "
            "(t = seq_len .. T-1) take maps[l, h, t, t - seq_len + 1], the token after the earlier copy of "
            "token t; the score is their mean.",
        )
    assert first_scores is not None
    perfect, previous, uniform = (float(v) for v in first_scores[0])
    duplicate = float(first_scores[1, 0])
    passed(
        ex,
        f"a perfect induction head scores {perfect:.2f}, a previous-token head {previous:.2f}, a uniform one "
        f"{uniform:.2f}, a duplicate-token head {duplicate:.2f}; right on random maps and a GPT's maps, "
        "for seq_len 6, 4 and 5.",
    )


# ---- hints ---------------------------------------------------------------------------------------

register_hints(
    "attention_weights_by_hand",
    levels=[
        "Four steps, as in lesson 02: project x to queries and keys, split them into heads, compare every query "
        "with every key (scaled), then mask and softmax. x is ONE sequence, (T, C), so there is no batch "
        "dimension: the head axis comes first in the result.",
        "q = attn.query(x) and k = attn.key(x) are (T, C). Head h owns channels h*hs .. (h+1)*hs - 1 "
        "(hs = C // attn.n_head): q.view(T, n_head, hs).transpose(0, 1) gives (n_head, T, hs). Scores: "
        "q @ k.transpose(-2, -1) / sqrt(hs) is (n_head, T, T). Fill the cells where key > query with "
        "-inf, then softmax over the last dimension (the keys).",
        "T, C = x.shape\n"
        "hs = C // attn.n_head\n"
        "q = attn.query(x).view(T, attn.n_head, hs).transpose(0, 1)   # (nh, T, hs)\n"
        "k = attn.key(x).view(T, attn.n_head, hs).transpose(0, 1)     # (nh, T, hs)\n"
        "scores = q @ k.transpose(-2, -1) / math.sqrt(hs)             # (nh, T, T)\n"
        "future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)\n"
        "return torch.softmax(scores.masked_fill(future, float('-inf')), dim=-1)",
    ],
    diagnoses={
        "missing-scale": "divide the scores by sqrt(head_size), head_size = C // n_head: without it the softmax "
        "is too peaked.",
        "wrong-scale": "the scale is 1 / sqrt(head_size) with head_size = C // n_head, the channels of ONE head "
        "(not n_embd, and with the square root).",
        "softmax-axis": "softmax(..., dim=-1): each query's row of weights over the keys sums to 1.",
        "no-mask": "hide the future before the softmax: scores.masked_fill(future, float('-inf')) with "
        "future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1).",
        "mask-transposed": "torch.tril keeps key <= query (the past); hide the upper triangle, key > query.",
        "mask-after-softmax": "mask first (with -inf), then softmax: the weights of each row then sum to 1 over "
        "the keys it may see.",
        "heads-split": "q.view(T, n_head, head_size) keeps each position's channels together and cuts them into "
        "heads; .transpose(0, 1) then puts the head axis first: (n_head, T, head_size).",
        "heads-not-split": "split q and k into heads first: q.view(T, n_head, head_size).transpose(0, 1).",
        "qk-swapped": "row t of the scores is query t against every key: q @ k.transpose(-2, -1).",
        "wrong-projection": "keys come from attn.key(x); attn.value makes the values, which the weights then mix.",
        "no-bias": "call the Linear layers (attn.query(x), attn.key(x)): they add their biases.",
        "extra-dim": "build a (T, T) mask (torch.tril(torch.ones(T, T)) or attn.mask[0, 0, :T, :T]) so the "
        "result stays (n_head, T, T).",
        "fixed-T": "take T from x (T, C = x.shape) and make the mask for that T.",
        "nan-0-inf": "use masked_fill(mask, float('-inf')), not arithmetic with -inf (0 * -inf is NaN).",
        "row-masked": "every query may look at itself: keep the diagonal when you build the mask.",
        "no-softmax": "after masking, torch.softmax(scores, dim=-1) turns the scores into weights.",
        "not-normalised": "weights come from a softmax over the keys (dim=-1) of the masked scores: each row "
        "then sums to 1.",
        "future-leak": "every weight above the diagonal (key > query) must be 0: mask with -inf before the softmax.",
        "in-place": "masked_fill (no underscore) returns a new tensor and leaves x and the scores as they were.",
    },
)

register_hints(
    "previous_token_score",
    levels=[
        "Rows are queries, columns keys. The token just before query t is key t - 1: the cells (t, t - 1) lie "
        "on the diagonal just BELOW the main one. A head's score is the mean of those cells.",
        "torch.diagonal(maps, offset=-1, dim1=-2, dim2=-1) gives, for every layer and head, the T - 1 values "
        "maps[l, h, t, t - 1] for t = 1 .. T - 1 (query 0 has no previous token, so it is not among them). "
        "Their mean over the last dimension is the (L, H) score.",
        "diag = torch.diagonal(maps, offset=-1, dim1=-2, dim2=-1)   # (L, H, T-1)\n"
        "return diag.mean(dim=-1)                                  # (L, H)",
    ],
    diagnoses={
        "diagonal": "the main diagonal (offset 0) is each query attending to itself; the previous token is "
        "one column to the left: offset=-1.",
        "transposed": "rows are queries and columns keys: query t's previous token is maps[..., t, t - 1], below "
        "the diagonal (offset=-1), never above it.",
        "off-by-one": "the previous token of query t is key t - 1: torch.diagonal(..., offset=-1).",
        "includes-position-0": "query 0 has no previous token: average over the T - 1 queries 1 .. T-1 only "
        "(the diagonal at offset -1 has exactly those).",
        "sum-not-mean": "take .mean(dim=-1) of the diagonal, not .sum(): a score between 0 and 1 compares heads.",
        "not-averaged": "reduce the last dimension with .mean(dim=-1): one number per (layer, head).",
        "one-number": "average over the query positions only (dim=-1 of the diagonal), keeping layers and heads.",
        "in-place": "read the maps; do not write into them.",
    },
)

register_hints(
    "induction_score",
    levels=[
        "In the prompt, token t of the second repeat (t >= seq_len) appeared before at t - seq_len, and the "
        "token that came next then sits at t - seq_len + 1. An induction head puts its weight there. Those "
        "cells lie on one diagonal, seq_len - 1 below the main one.",
        "torch.diagonal(maps, offset=-(seq_len - 1), dim1=-2, dim2=-1) holds maps[..., t, t - seq_len + 1] for "
        "t = seq_len - 1 .. T - 1. The first of them, t = seq_len - 1, is still in the FIRST repeat (it has no "
        "earlier copy): drop it, then average the seq_len values left.",
        "diag = torch.diagonal(maps, offset=-(seq_len - 1), dim1=-2, dim2=-1)  # (L, H, seq_len + 1)\n"
        "return diag[..., 1:].mean(dim=-1)                                    # (L, H): queries seq_len .. T-1",
    ],
    diagnoses={
        "same-token": "one step further: the token AFTER the earlier copy, key t - seq_len + 1 (offset "
        "-(seq_len - 1)). Attending to the copy itself is what a duplicate-token head does.",
        "off-by-one": "the key is t - seq_len + 1: torch.diagonal(maps, offset=-(seq_len - 1), ...).",
        "includes-first-repeat": "only the queries of the second repeat, t = seq_len .. T-1, count: drop the "
        "first value of the diagonal (diag[..., 1:]) and take the mean of the seq_len values left.",
        "previous-token": "that is offset -1; the induction score uses offset -(seq_len - 1).",
        "sum-not-mean": "take the mean over the seq_len queries of the second repeat, so that scores lie in 0..1.",
        "transposed": "rows are queries, columns keys: the key before query t is below the diagonal, so the "
        "offset is negative, -(seq_len - 1).",
        "fixed-seq-len": "use the seq_len argument: the offset is -(seq_len - 1).",
        "not-averaged": "reduce the last dimension with .mean(dim=-1): one number per (layer, head).",
        "one-number": "average over the query positions only (dim=-1 of the diagonal), keeping layers and heads.",
        "in-place": "read the maps; do not write into them.",
    },
)
