"""The lesson-07 checks: every correct variant passes, every known mistake gets its diagnosis.

The variants are written the ways learners write them: view + transpose or einsum or a
loop over heads, a mask from torch.tril or the layer's own buffer, torch.diagonal or
index arithmetic or a Python loop, numpy at the end.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptlib.checks import (
    CheckFailure,
    NotDoneYet,
    check_attention_weights_by_hand,
    check_induction_score,
    check_previous_token_score,
    show_hints,
)
from gptlib.checks.attention_maps import _peaked_gpt, _real_maps, weights_by_hand
from gptlib.checks.hints import hint_for

NEG_INF = float("-inf")


# Failures whose message explains everything itself; every other diagnosis has a hint of its own.
GENERIC = {"crashed", "wrong-values", "wrong-shape", "not-a-tensor", "nan"}


def fails_with(check, arg, diagnosis: str) -> CheckFailure:
    """Run a check that must fail with `diagnosis` (and, unless generic, the hint for it)."""
    with pytest.raises(CheckFailure) as excinfo:
        check(arg)
    failure = excinfo.value
    assert failure.diagnosis == diagnosis, str(failure)
    if diagnosis not in GENERIC:
        assert hint_for(failure.exercise, diagnosis), f"no hint for {failure.exercise}/{diagnosis}"
        assert "Hint: " in str(failure)
    return failure


# ---- 7.1 attention weights by hand -----------------------------------------------------------------


def _qk(attn, x):
    T, C = x.shape
    hs = C // attn.n_head
    q = attn.query(x).view(T, attn.n_head, hs).transpose(0, 1)  # (nh, T, hs)
    k = attn.key(x).view(T, attn.n_head, hs).transpose(0, 1)
    return q, k, hs


def by_hand_tril(attn, x):
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
    return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF), dim=-1)


def by_hand_buffer(attn, x):  # the layer's own mask buffer, sliced to T
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    scores = (q @ k.transpose(-2, -1)) * hs**-0.5
    return scores.masked_fill(~attn.mask[0, 0, :T, :T], NEG_INF).softmax(-1)


def by_hand_einsum(attn, x):
    T, C = x.shape
    nh = attn.n_head
    q = attn.query(x).reshape(T, nh, C // nh)
    k = attn.key(x).reshape(T, nh, C // nh)
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(C // nh)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return torch.softmax(torch.where(future, NEG_INF, scores), dim=-1)


def by_hand_loop(attn, x):  # one head at a time, from channel slices
    T, C = x.shape
    hs = C // attn.n_head
    q_all, k_all = attn.query(x), attn.key(x)
    heads = []
    for h in range(attn.n_head):
        q, k = q_all[:, h * hs : (h + 1) * hs], k_all[:, h * hs : (h + 1) * hs]
        scores = q @ k.T / math.sqrt(hs)
        scores = scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF)
        heads.append(torch.softmax(scores, dim=1))
    return torch.stack(heads)


def by_hand_model(attn, x):  # asking the layer itself
    return attn(x[None], return_weights=True)[1][0]


def by_hand_large_negative(attn, x):  # a very negative number instead of -inf, scale applied to q first
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    scores = (q / math.sqrt(hs)) @ k.transpose(-2, -1)
    keep = torch.ones(T, T).tril().bool()
    return torch.where(keep, scores, torch.full_like(scores, -1e9)).softmax(dim=-1)


def by_hand_float64(attn, x):  # computed in float64, handed back as float64 numpy
    T = x.size(0)
    q, k, hs = (t.double() if torch.is_tensor(t) else t for t in _qk(attn, x))
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
    scores[:, torch.triu(torch.ones(T, T, dtype=torch.bool), 1)] = NEG_INF
    return torch.softmax(scores, -1).detach().numpy()


@pytest.mark.parametrize(
    "fn",
    [
        by_hand_tril,
        by_hand_buffer,
        by_hand_einsum,
        by_hand_loop,
        by_hand_model,
        by_hand_large_negative,
        by_hand_float64,
    ],
)
def test_attention_weights_by_hand_correct_variants_pass(fn, capsys):
    check_attention_weights_by_hand(fn)
    assert "attention_weights_by_hand: passed" in capsys.readouterr().out


def test_reference_equals_gptlib_maps():
    torch.manual_seed(0)
    model = _peaked_gpt()
    idx = torch.randint(13, (1, 8))
    x = model.blocks[0].ln1(model.embeddings(idx))[0]
    with torch.no_grad():
        assert torch.allclose(
            weights_by_hand(model.blocks[0].attn, x), model.attention_maps(idx)[0][0], atol=1e-6
        )


def _mistake(**kw):
    def fn(attn, x):
        return weights_by_hand(attn, x, **kw)

    return fn


def no_scale(attn, x):
    T = x.size(0)
    q, k, _ = _qk(attn, x)
    return F.softmax((q @ k.transpose(-2, -1)).masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF), -1)


def scale_by_3(attn, x):  # a scale no list of slips holds: the check estimates the factor
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    s = q @ k.transpose(-2, -1) / (3 * math.sqrt(hs))
    return F.softmax(s.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF), -1)


def nan_mask(attn, x):  # 0 * -inf
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    tril = torch.tril(torch.ones(T, T))
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)
    return F.softmax(s * tril + (1 - tril) * NEG_INF, -1)


def strict_mask(attn, x):
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)
    return F.softmax(s.masked_fill(torch.tril(torch.ones(T, T), diagonal=-1) == 0, NEG_INF), -1)


def no_softmax(attn, x):
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)
    return s.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF)


def buffer_unsqueezed(attn, x):  # mask (1, 1, T, T) broadcasts a dimension in
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)
    return s.masked_fill(~attn.mask[:, :, :T, :T], NEG_INF).softmax(-1)


def one_head(attn, x):
    T, C = x.shape
    s = attn.query(x) @ attn.key(x).T / math.sqrt(C)
    return F.softmax(s.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF), -1)


def fill_zero(attn, x):  # the future filled with 0 instead of -inf
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)
    return F.softmax(s.masked_fill(torch.tril(torch.ones(T, T)) == 0, 0.0), -1)


def inverted(attn, x):  # masked where tril == 1: hides the past and the present
    T = x.size(0)
    q, k, hs = _qk(attn, x)
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)
    return F.softmax(s.masked_fill(torch.tril(torch.ones(T, T)) == 1, NEG_INF), -1)


def fixed_mask(attn, x):  # a mask made for T = 8 and never sliced
    q, k, hs = _qk(attn, x)
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)
    return F.softmax(s.masked_fill(torch.tril(torch.ones(8, 8)) == 0, NEG_INF), -1)


def in_place(attn, x):
    x.mul_(1.0001)
    return by_hand_tril(attn, x)


def stub(attn, x):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (no_scale, "missing-scale"),
        (_mistake(scale=1 / math.sqrt(32)), "wrong-scale"),
        (_mistake(scale=1 / 8), "wrong-scale"),
        (scale_by_3, "wrong-scale"),
        (_mistake(softmax_dim=-2), "softmax-axis"),
        (_mistake(mask="none"), "no-mask"),
        (_mistake(mask="upper"), "mask-transposed"),
        (_mistake(mask_after="zero"), "mask-after-softmax"),
        (_mistake(fill=0.0), "mask-fill-zero"),
        (fill_zero, "mask-fill-zero"),
        (inverted, "mask-inverted"),
        (_mistake(split="view"), "head-split"),
        (_mistake(split="interleave"), "head-split"),
        (_mistake(swap_qk=True), "qk-swapped"),
        (_mistake(key="value"), "wrong-projection"),
        (_mistake(bias=False), "no-bias"),
        (_mistake(mask="none", scale=1.0), "missing-scale"),
        (nan_mask, "nan-0-inf"),
        (strict_mask, "row-masked"),
        (no_softmax, "no-softmax"),
        (buffer_unsqueezed, "extra-dim"),
        (one_head, "one-head"),
        (fixed_mask, "fixed-T"),
        (in_place, "in-place"),
        (lambda attn, x: None, "returned-none"),
        (lambda attn, x: (by_hand_tril(attn, x),), "returned-tuple"),
        (lambda attn, x: by_hand_tril(attn, x)[None, None], "wrong-shape"),
        (lambda attn, x: torch.softmax(torch.zeros(4, x.size(0), x.size(0)), -1), "future-leak"),
        (lambda attn, x: torch.tril(torch.ones(4, x.size(0), x.size(0))), "not-normalised"),
        (lambda attn, x: by_hand_tril(attn, x).flip(0), "wrong-values"),
        (lambda attn, x: x.foo, "crashed"),
    ],
)
def test_attention_weights_by_hand_mistakes_are_diagnosed(fn, diagnosis):
    failure = fails_with(check_attention_weights_by_hand, fn, diagnosis)
    assert "show_hints" in str(failure)


def test_attention_weights_by_hand_reports_the_scale_factor():
    failure = fails_with(check_attention_weights_by_hand, no_scale, "missing-scale")
    assert "factor of 2.83" in str(failure)  # sqrt(head_size) = sqrt(8)
    failure = fails_with(check_attention_weights_by_hand, scale_by_3, "wrong-scale")
    assert "factor of 3.00" in str(failure)


def test_attention_weights_by_hand_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_attention_weights_by_hand(stub)


# ---- maps to score ----------------------------------------------------------------------------------


def prev_diagonal(maps):
    return torch.diagonal(maps, offset=-1, dim1=-2, dim2=-1).mean(-1)


def prev_index(maps):
    T = maps.size(-1)
    t = torch.arange(1, T)
    return maps[..., t, t - 1].mean(-1)


def prev_loop(maps):
    L, H, T, _ = maps.shape
    out = torch.zeros(L, H)
    for l in range(L):
        for h in range(H):
            out[l, h] = sum(maps[l, h, t, t - 1] for t in range(1, T)) / (T - 1)
    return out


def prev_numpy(maps):
    m = maps.numpy()
    return np.diagonal(m, offset=-1, axis1=-2, axis2=-1).mean(-1)


@pytest.mark.parametrize("fn", [prev_diagonal, prev_index, prev_loop, prev_numpy])
def test_previous_token_score_correct_variants_pass(fn, capsys):
    check_previous_token_score(fn)
    out = capsys.readouterr().out
    assert "previous_token_score: passed" in out and "scores 1.00" in out


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (lambda m: torch.diagonal(m, 0, -2, -1).mean(-1), "diagonal"),
        (lambda m: torch.diagonal(m, 1, -2, -1).mean(-1), "transposed"),
        (lambda m: torch.diagonal(m, -2, -2, -1).mean(-1), "off-by-one"),
        (lambda m: torch.diagonal(m, -1, -2, -1).sum(-1) / m.size(-1), "includes-position-0"),
        (lambda m: torch.roll(m, 1, dims=-1).diagonal(0, -2, -1).mean(-1), "includes-position-0"),
        (
            lambda m: (torch.diagonal(m, -1, -2, -1).sum(-1) + m[..., 0, 0]) / m.size(-1),
            "includes-position-0",
        ),
        (lambda m: torch.diagonal(m, -1, -2, -1).sum(-1), "sum-not-mean"),
        (lambda m: torch.diagonal(m, -1, -2, -1), "not-averaged"),
        (lambda m: torch.diagonal(m, -1, -2, -1).mean(), "one-number"),
        (lambda m: torch.diagonal(m, -1, -2, -1).max(-1).values, "wrong-values"),
        (lambda m: prev_diagonal(m) * 0.5 + 0.1, "wrong-values"),
        (lambda m: prev_diagonal(m.mul_(2.0)) / 2, "in-place"),
        (lambda m: None, "returned-none"),
        (lambda m: [0.5], "not-a-tensor"),
    ],
)
def test_previous_token_score_mistakes_are_diagnosed(fn, diagnosis):
    fails_with(check_previous_token_score, fn, diagnosis)


def test_previous_token_score_stub_is_not_done_yet():
    def previous_token_score(maps):
        raise NotImplementedError()

    with pytest.raises(NotDoneYet):
        check_previous_token_score(previous_token_score)


def ind_diagonal(maps, seq_len):
    return torch.diagonal(maps, offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., 1:].mean(-1)


def ind_index(maps, seq_len):
    t = torch.arange(seq_len, maps.size(-1))
    return maps[..., t, t - seq_len + 1].mean(-1)


def ind_loop(maps, seq_len):
    L, H, T, _ = maps.shape
    out = torch.zeros(L, H, dtype=torch.float64)
    for l in range(L):
        for h in range(H):
            out[l, h] = torch.stack([maps[l, h, t, t - seq_len + 1] for t in range(seq_len, T)]).mean()
    return out


def ind_half(maps, seq_len):  # T // 2 is seq_len for a prompt of two repeats
    T = maps.size(-1)
    return torch.diagonal(maps, offset=1 - T // 2, dim1=-2, dim2=-1)[..., 1:].mean(-1)


@pytest.mark.parametrize("fn", [ind_diagonal, ind_index, ind_loop, ind_half])
def test_induction_score_correct_variants_pass(fn, capsys):
    check_induction_score(fn)
    out = capsys.readouterr().out
    assert "induction_score: passed" in out and "induction head scores 1.00" in out


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (lambda m, s: torch.diagonal(m, -s, -2, -1).mean(-1), "same-token"),
        (lambda m, s: torch.diagonal(m, -(s - 2), -2, -1)[..., 2:].mean(-1), "off-by-one"),
        (lambda m, s: torch.diagonal(m, -(s - 1), -2, -1).mean(-1), "includes-first-repeat"),
        (
            lambda m, s: torch.diagonal(m, -(s - 1), -2, -1)[..., 1:].sum(-1) / m.size(-1),
            "includes-first-repeat",
        ),
        (lambda m, s: torch.diagonal(m, -1, -2, -1).mean(-1), "previous-token"),
        (lambda m, s: torch.diagonal(m, -(s - 1), -2, -1)[..., 1:].sum(-1), "sum-not-mean"),
        (lambda m, s: torch.diagonal(m, s - 1, -2, -1)[..., :1].mean(-1), "transposed"),
        (lambda m, s: torch.diagonal(m, -5, -2, -1)[..., 1:].mean(-1), "fixed-seq-len"),
        (lambda m, s: torch.diagonal(m, -15, -2, -1)[..., 1:].mean(-1), "fixed-seq-len"),
        (lambda m, s: torch.diagonal(m, -(s - 1), -2, -1)[..., 1:], "not-averaged"),
        (lambda m, s: torch.diagonal(m, -(s - 1), -2, -1)[..., 1:].mean(), "one-number"),
        (lambda m, s: torch.diagonal(m, -(s - 1), -2, -1)[..., 1:].median(-1).values, "wrong-values"),
    ],
)
def test_induction_score_mistakes_are_diagnosed(fn, diagnosis):
    fails_with(check_induction_score, fn, diagnosis)


def test_induction_score_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_induction_score(lambda maps, seq_len: (_ for _ in ()).throw(NotImplementedError()))


# ---- shared --------------------------------------------------------------------------------------


def test_real_maps_are_causal_probabilities():
    torch.manual_seed(0)
    maps = _real_maps(8)
    assert maps.shape == (2, 4, 8, 8)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 4, 8, dtype=maps.dtype), atol=1e-5)
    assert (maps.triu(1) == 0).all()
    assert maps.max() > 0.5  # peaked, so that the mistakes give different numbers


def test_checks_leave_the_rng_and_threads_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    check_previous_token_score(prev_diagonal)
    check_induction_score(ind_diagonal)
    check_attention_weights_by_hand(by_hand_tril)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("exercise", ["attention_weights_by_hand", "previous_token_score", "induction_score"])
def test_hints_are_registered(exercise):
    view = show_hints(exercise)
    assert len(view.entry.levels) >= 3
    assert "<details>" in view._repr_html_()
