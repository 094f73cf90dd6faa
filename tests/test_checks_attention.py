"""The lesson-02 checks: every correct variant passes, every known mistake gets its diagnosis.

The variants are small classes and functions written the ways learners write them:
minGPT's separate projections, nanoGPT's fused c_attn with scaled_dot_product_attention,
einsum, Karpathy's list of heads, nn.MultiheadAttention, bias or not, any layer names.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib import CausalSelfAttention as GptlibAttention
from gptlib.checks import (
    CheckFailure,
    NotDoneYet,
    check_attention,
    check_causal_average,
    check_head,
    check_masked_softmax,
    show_hints,
)
from gptlib.checks.attention_maps import BY_HAND
from gptlib.checks.learner import backend
from gptlib.checks.probes import nonfinite_failure
from gptlib.checks.reference_attention import (
    AttentionWeights,
    find_projections,
    reference_attention,
)
from gptlib.config import GPTConfig

NEG_INF = float("-inf")


def fails_with(check, arg, diagnosis: str) -> CheckFailure:
    """Run a check that must fail with `diagnosis`, and offer the hint for it; return the failure."""
    with pytest.raises(CheckFailure) as excinfo:
        check(arg)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)
    if diagnosis != "not-done":  # "not done yet" says what to do once, with no hint repeating it
        assert "\nHint: " in str(excinfo.value), f"no hint for {diagnosis!r}: {excinfo.value}"
    return excinfo.value


# ---- 2.1 causal_average ------------------------------------------------------------------------------


def avg_loop(x):  # Karpathy's version 1
    B, T, C = x.shape
    out = torch.zeros_like(x)
    for b in range(B):
        for t in range(T):
            out[b, t] = x[b, : t + 1].mean(0)
    return out


def avg_matmul(x):  # version 2
    T = x.size(1)
    wei = torch.tril(torch.ones(T, T))
    return (wei / wei.sum(1, keepdim=True)) @ x


def avg_softmax(x):  # version 3
    T = x.size(1)
    wei = torch.zeros(T, T).masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF)
    return F.softmax(wei, dim=-1) @ x


def avg_cumsum(x):
    return x.cumsum(1) / torch.arange(1, x.size(1) + 1).view(1, -1, 1)


@pytest.mark.parametrize("fn", [avg_loop, avg_matmul, avg_softmax, avg_cumsum])
def test_causal_average_correct_variants_pass(fn, capsys):
    check_causal_average(fn)
    assert "causal_average: passed" in capsys.readouterr().out


def avg_stub(x):
    raise NotImplementedError()


def avg_full_mean(x):
    return x.mean(1, keepdim=True).expand_as(x)


def avg_triu(x):
    T = x.size(1)
    wei = torch.triu(torch.ones(T, T))
    return (wei / wei.sum(1, keepdim=True)) @ x


def avg_divide_by_T(x):
    T = x.size(1)
    return torch.tril(torch.ones(T, T)) @ x / T


def avg_sum(x):
    T = x.size(1)
    return torch.tril(torch.ones(T, T)) @ x


def avg_excludes_self_nan(x):
    T = x.size(1)
    wei = torch.tril(torch.ones(T, T), diagonal=-1)
    return (wei / wei.sum(1, keepdim=True)) @ x  # row 0: 0/0


def avg_excludes_self_zero(x):
    out = torch.zeros_like(x)
    for t in range(1, x.size(1)):
        out[:, t] = x[:, :t].mean(1)
    return out


def avg_channels(x):
    return x.cumsum(2) / torch.arange(1, x.size(2) + 1)


def avg_fixed_T(x):
    wei = torch.tril(torch.ones(8, 8))
    return (wei / wei.sum(1, keepdim=True)) @ x


def avg_in_place(x):
    x[:] = avg_cumsum(x)
    return x


def avg_numpy(x):
    return avg_cumsum(x).numpy()


def avg_float64(x):
    return avg_cumsum(x.double())


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (avg_stub, "not-done"),
        (avg_full_mean, "not-causal"),
        (avg_triu, "mask-transposed"),
        (avg_divide_by_T, "wrong-divisor"),
        (avg_sum, "sum-not-mean"),
        (avg_excludes_self_nan, "excludes-self"),
        (avg_excludes_self_zero, "excludes-self"),
        (avg_channels, "wrong-axis"),
        (avg_fixed_T, "fixed-T"),
        (avg_in_place, "in-place"),
        (avg_numpy, "not-a-tensor"),
        (avg_float64, "wrong-dtype"),
        (lambda x: None, "returned-none"),
        (lambda x: x.clone(), "wrong-values"),
    ],
)
def test_causal_average_mistakes_are_diagnosed(fn, diagnosis):
    fails_with(check_causal_average, fn, diagnosis)


def test_causal_average_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet, match="not done yet"):
        check_causal_average(avg_stub)


# ---- 2.2 masked_softmax ------------------------------------------------------------------------------


def ms_masked_fill(scores):
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF), dim=-1)


def ms_where_finite(scores):
    T = scores.size(-1)
    keep = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.where(keep, scores, torch.tensor(-1e9)).softmax(-1)


def ms_triu_bool(scores):
    T = scores.size(-1)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, NEG_INF), dim=-1)


def ms_renormalised(scores):  # softmax, zero the future, renormalise: the same weights
    T = scores.size(-1)
    w = F.softmax(scores, dim=-1) * torch.tril(torch.ones(T, T))
    return w / w.sum(-1, keepdim=True)


def ms_manual_exp(scores):
    T = scores.size(-1)
    e = scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF).exp()
    return e / e.sum(-1, keepdim=True)


def ms_where_inf(scores):
    T = scores.size(-1)
    return torch.where(torch.tril(torch.ones(T, T)).bool(), scores, float("-inf")).softmax(dim=-1)


def ms_log_softmax_exp(scores):  # exp of a log-softmax: the same weights
    T = scores.size(-1)
    return F.log_softmax(scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF), dim=-1).exp()


@pytest.mark.parametrize(
    "fn",
    [
        ms_masked_fill,
        ms_where_finite,
        ms_triu_bool,
        ms_renormalised,
        ms_manual_exp,
        ms_where_inf,
        ms_log_softmax_exp,
    ],
)
def test_masked_softmax_correct_variants_pass(fn, capsys):
    check_masked_softmax(fn)
    assert "masked_softmax: passed" in capsys.readouterr().out


def ms_zero_times_inf(scores):
    T = scores.size(-1)
    mask = torch.tril(torch.ones(T, T))
    return F.softmax(scores * mask + (1 - mask) * NEG_INF, dim=-1)


def ms_strict(fill):
    def fn(scores):
        T = scores.size(-1)
        return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T), diagonal=-1) == 0, fill), dim=-1)

    return fn


def ms_dim(dim):
    def fn(scores):
        T = scores.size(-1)
        return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF), dim=dim)

    return fn


def ms_no_mask(scores):
    return F.softmax(scores, dim=-1)


def ms_triu(scores):
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(torch.triu(torch.ones(T, T)) == 0, NEG_INF), dim=-1)


def ms_after(fill):
    def fn(scores):
        T = scores.size(-1)
        return F.softmax(scores, dim=-1).masked_fill(torch.tril(torch.ones(T, T)) == 0, fill)

    return fn


def ms_fill_zero(scores):  # the future filled with 0: exp(0) = 1 still weighs it
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, 0.0), dim=-1)


def ms_inverted(scores):  # tril == 1 filled: the past and the present hidden, the future kept
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T)) == 1, NEG_INF), dim=-1)


def ms_fixed_T(scores):
    return F.softmax(scores.masked_fill(torch.tril(torch.ones(8, 8)) == 0, NEG_INF), dim=-1)


def ms_in_place(scores):
    T = scores.size(-1)
    scores.masked_fill_(torch.tril(torch.ones(T, T)) == 0, NEG_INF)
    return F.softmax(scores, dim=-1)


def ms_one_future_key(scores):  # tril(diagonal=1): each query also sees the next key
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T), diagonal=1) == 0, NEG_INF), dim=-1)


def ms_unnormalised(scores):
    T = scores.size(-1)
    return scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, NEG_INF).exp()


def ms_scaled(scores):
    return ms_masked_fill(scores / math.sqrt(8))


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (avg_stub, "not-done"),
        (ms_zero_times_inf, "nan-0-inf"),
        (ms_strict(NEG_INF), "row-masked"),
        (ms_strict(-1e9), "row-masked"),
        (ms_dim(-2), "softmax-axis"),
        (ms_dim(1), "softmax-axis"),
        (ms_no_mask, "no-mask"),
        (ms_triu, "mask-transposed"),
        (ms_after(0.0), "mask-after-softmax"),
        (ms_after(NEG_INF), "mask-after-softmax"),
        (ms_fixed_T, "fixed-T"),
        (ms_fill_zero, "mask-fill-zero"),
        (ms_inverted, "mask-inverted"),
        (ms_in_place, "in-place"),
        (ms_scaled, "extra-scale"),
        (ms_one_future_key, "future-leak"),
        (ms_unnormalised, "not-normalised"),
        (lambda s: (ms_masked_fill(s), s), "returned-tuple"),
    ],
)
def test_masked_softmax_mistakes_are_diagnosed(fn, diagnosis):
    fails_with(check_masked_softmax, fn, diagnosis)


# ---- 2.3 Head ----------------------------------------------------------------------------------------


class KarpathyHead(nn.Module):
    def __init__(self, config, head_size):
        super().__init__()
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(config.block_size, config.block_size)))
        self.dropout = nn.Dropout(config.attn_pdrop)
        self.scale = head_size**-0.5

    def scores(self, q, k):
        return q @ k.transpose(-2, -1) * self.scale

    def weights(self, wei, T):
        wei = wei.masked_fill(self.tril[:T, :T] == 0, NEG_INF)
        return F.softmax(wei, dim=-1)

    def forward(self, x):
        B, T, C = x.shape
        k, q, v = self.key(x), self.query(x), self.value(x)
        wei = self.dropout(self.weights(self.scores(q, k), T))
        return wei @ v


class BiasSdpaHead(nn.Module):
    def __init__(self, config, head_size):
        super().__init__()
        self.q = nn.Linear(config.n_embd, head_size)
        self.k = nn.Linear(config.n_embd, head_size)
        self.v = nn.Linear(config.n_embd, head_size)

    def forward(self, x):
        return F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x), is_causal=True)


class FusedHead(nn.Module):
    def __init__(self, config, head_size):
        super().__init__()
        self.qkv = nn.Linear(config.n_embd, 3 * head_size)
        self.head_size = head_size

    def forward(self, x):
        q, k, v = self.qkv(x).split(self.head_size, dim=-1)
        T = x.size(1)
        att = torch.einsum("btd,bsd->bts", q, k) / math.sqrt(self.head_size)
        att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), NEG_INF)
        return att.softmax(-1) @ v


class BmmHead(nn.Module):
    """q scaled before the product, torch.bmm, a bool mask made in forward, dropout on the weights."""

    def __init__(self, config, head_size):
        super().__init__()
        self.to_q, self.to_k, self.to_v = (nn.Linear(config.n_embd, head_size, bias=False) for _ in range(3))
        self.drop = nn.Dropout(config.attn_pdrop)

    def forward(self, x):
        T = x.size(1)
        q = self.to_q(x) / math.sqrt(self.to_q.out_features)
        att = torch.bmm(q, self.to_k(x).transpose(1, 2))
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        return torch.bmm(self.drop(att.masked_fill(future, NEG_INF).softmax(-1)), self.to_v(x))


@pytest.mark.parametrize("cls", [KarpathyHead, BiasSdpaHead, FusedHead, BmmHead])
def test_head_correct_variants_pass(cls, capsys):
    check_head(cls)
    assert "head: passed" in capsys.readouterr().out


class HeadScaleC(KarpathyHead):  # the lecture's first version: C ** -0.5
    def scores(self, q, k):
        return q @ k.transpose(-2, -1) * self.key.in_features**-0.5


class HeadNoScale(KarpathyHead):
    def scores(self, q, k):
        return q @ k.transpose(-2, -1)


class HeadNoMask(KarpathyHead):
    def weights(self, wei, T):
        return F.softmax(wei, dim=-1)


class HeadSoftmaxDim1(KarpathyHead):
    def weights(self, wei, T):
        return F.softmax(wei.masked_fill(self.tril[:T, :T] == 0, NEG_INF), dim=1)


class HeadNoSlice(KarpathyHead):
    def weights(self, wei, T):
        return F.softmax(wei.masked_fill(self.tril == 0, NEG_INF), dim=-1)


class HeadQKSwapped(KarpathyHead):
    def scores(self, q, k):
        return k @ q.transpose(-2, -1) * self.scale


class HeadDropoutAlways(KarpathyHead):
    def forward(self, x):
        B, T, C = x.shape
        wei = self.weights(self.scores(self.query(x), self.key(x)), T)
        return F.dropout(wei, 0.1) @ self.value(x)


class HeadFullWidth(KarpathyHead):
    def __init__(self, config, head_size):
        super().__init__(config, config.n_embd)


class HeadIgnoresHeadSize(KarpathyHead):
    def __init__(self, config, head_size):
        super().__init__(config, config.n_embd // config.n_head)


class HeadReturnsWeights(KarpathyHead):
    def forward(self, x):
        B, T, C = x.shape
        return self.weights(self.scores(self.query(x), self.key(x)), T)


class HeadFillZero(KarpathyHead):
    def weights(self, wei, T):
        return F.softmax(wei.masked_fill(self.tril[:T, :T] == 0, 0.0), dim=-1)


class HeadMaskInverted(KarpathyHead):
    def weights(self, wei, T):
        return F.softmax(wei.masked_fill(self.tril[:T, :T] == 1, NEG_INF), dim=-1)


class HeadStub(nn.Module):
    def __init__(self, config, head_size):
        super().__init__()
        raise NotImplementedError()


@pytest.mark.parametrize(
    "cls, diagnosis",
    [
        (HeadStub, "not-done"),
        (HeadScaleC, "wrong-scale"),
        (HeadNoScale, "missing-scale"),
        (HeadNoMask, "no-mask"),
        (HeadSoftmaxDim1, "softmax-axis"),
        (HeadNoSlice, "fixed-T"),
        (HeadQKSwapped, "qk-swapped"),
        (HeadDropoutAlways, "dropout-in-eval"),
        (HeadFullWidth, "head-size-ignored"),
        (HeadIgnoresHeadSize, "wrong-shape"),
        (HeadReturnsWeights, "returned-weights"),
        (HeadFillZero, "mask-fill-zero"),
        (HeadMaskInverted, "mask-inverted"),
    ],
)
def test_head_mistakes_are_diagnosed(cls, diagnosis):
    fails_with(check_head, cls, diagnosis)


def test_head_scale_of_the_lecture_reports_its_factor():
    failure = fails_with(check_head, HeadScaleC, "wrong-scale")
    assert "1/sqrt(n_embd)" in str(failure)
    assert "off by a factor of 2.00, too small" in str(failure)


# ---- 2.4 CausalSelfAttention: correct variants --------------------------------------------------------


class MinGPTAttention(nn.Module):
    """Separate key/query/value/proj, a float mask buffer, explicit matmuls. Subclasses break one step."""

    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.key, self.query, self.value = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)
        self.proj = nn.Linear(C, C)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        bs = config.block_size
        self.register_buffer("mask", torch.tril(torch.ones(bs, bs)).view(1, 1, bs, bs))
        self.n_head = config.n_head

    def split(self, t, B, T, C):
        return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

    def merge(self, y, B, T, C):
        return y.transpose(1, 2).contiguous().view(B, T, C)

    def scale(self, k):
        return 1.0 / math.sqrt(k.size(-1))

    def weights(self, att, T):
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, NEG_INF)
        return F.softmax(att, dim=-1)

    def scores(self, q, k):
        return (q @ k.transpose(-2, -1)) * self.scale(k)

    def project(self, y):
        return self.resid_drop(self.proj(y))

    def forward(self, x):
        B, T, C = x.size()
        k = self.split(self.key(x), B, T, C)
        q = self.split(self.query(x), B, T, C)
        v = self.split(self.value(x), B, T, C)
        att = self.attn_drop(self.weights(self.scores(q, k), T))
        return self.project(self.merge(att @ v, B, T, C))


class NanoGPTAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.attn_pdrop

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class EinsumAttention(nn.Module):
    """q_proj/k_proj/v_proj without bias, out_proj; einsum, reshape, a bool buffer, q scaled first."""

    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.v_proj = nn.Linear(C, C, bias=False)
        self.out_proj = nn.Linear(C, C)
        self.drop_w, self.drop_out = nn.Dropout(config.attn_pdrop), nn.Dropout(config.resid_pdrop)
        bs = config.block_size
        self.register_buffer("allowed", torch.ones(bs, bs, dtype=torch.bool).tril(), persistent=False)
        self.nh = config.n_head

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.nh
        q = self.q_proj(x).reshape(B, T, self.nh, hs) * hs**-0.5
        k = self.k_proj(x).reshape(B, T, self.nh, hs)
        v = self.v_proj(x).reshape(B, T, self.nh, hs)
        att = torch.einsum("bqhd,bkhd->bhqk", q, k)
        att = att.masked_fill(~self.allowed[:T, :T], NEG_INF).softmax(dim=-1)
        y = torch.einsum("bhqk,bkhd->bqhd", self.drop_w(att), v).reshape(B, T, C)
        return self.drop_out(self.out_proj(y))


class ListHead(nn.Module):
    def __init__(self, config, head_size):
        super().__init__()
        C = config.n_embd
        self.key = nn.Linear(C, head_size, bias=False)
        self.query = nn.Linear(C, head_size, bias=False)
        self.value = nn.Linear(C, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(config.block_size, config.block_size)))
        self.dropout = nn.Dropout(config.attn_pdrop)

    def forward(self, x):
        T = x.size(1)
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, torch.finfo(wei.dtype).min)
        return self.dropout(F.softmax(wei, dim=-1)) @ self.value(x)


class HeadsListAttention(nn.Module):
    """Karpathy's MultiHeadAttention: a list of heads, concatenated, projected."""

    def __init__(self, config):
        super().__init__()
        hs = config.n_embd // config.n_head
        self.heads = nn.ModuleList([ListHead(config, hs) for _ in range(config.n_head)])
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.proj(torch.cat([h(x) for h in self.heads], dim=-1)))


class SdpaMaskBufferAttention(MinGPTAttention):
    def forward(self, x):
        B, T, C = x.size()
        q, k, v = (self.split(f(x), B, T, C) for f in (self.query, self.key, self.value))
        allowed = self.mask[:, :, :T, :T].bool()
        p = self.attn_drop.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        return self.project(y.transpose(1, 2).reshape(B, T, C))


class FusedKQVAttention(NanoGPTAttention):
    """A fused projection split in another order: k, q, v. Still a correct layer."""

    def forward(self, x):
        B, T, C = x.size()
        k, q, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


class UnnamedAttention(MinGPTAttention):
    """Layers whose names say nothing: a=key, b=query, c=value, d=proj."""

    def __init__(self, config):
        super().__init__(config)
        C = config.n_embd
        del self.key, self.query, self.value, self.proj
        self.a, self.b, self.c, self.d = (nn.Linear(C, C) for _ in range(4))

    def forward(self, x):
        B, T, C = x.size()
        k, q, v = (self.split(f(x), B, T, C) for f in (self.a, self.b, self.c))
        att = self.attn_drop(self.weights(self.scores(q, k), T))
        return self.resid_drop(self.d(self.merge(att @ v, B, T, C)))


class TorchMHAAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.mha = nn.MultiheadAttention(
            config.n_embd, config.n_head, dropout=config.attn_pdrop, batch_first=True
        )
        self.drop = nn.Dropout(config.resid_pdrop)
        bs = config.block_size
        self.register_buffer("future", torch.ones(bs, bs, dtype=torch.bool).triu(1))

    def forward(self, x):
        T = x.size(1)
        y, _ = self.mha(x, x, x, attn_mask=self.future[:T, :T], need_weights=False)
        return self.drop(y)


class UnbindAttention(NanoGPTAttention):
    """The fused projection viewed as (B, T, 3, n_head, hs) and unbound: q, k, v in one permute."""

    def forward(self, x):
        B, T, C = x.size()
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, nh, T, hs) each
        att = (q @ k.transpose(-2, -1)) * (C // self.n_head) ** -0.5
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), NEG_INF).softmax(dim=-1)
        att = F.dropout(att, self.dropout, self.training)
        return self.resid_dropout(self.c_proj((att @ v).transpose(1, 2).reshape(B, T, C)))


CORRECT_ATTENTION = [
    GptlibAttention,
    MinGPTAttention,
    NanoGPTAttention,
    EinsumAttention,
    HeadsListAttention,
    SdpaMaskBufferAttention,
    FusedKQVAttention,
    UnnamedAttention,
    TorchMHAAttention,
    UnbindAttention,
]


@pytest.mark.parametrize("cls", CORRECT_ATTENTION, ids=lambda c: c.__name__)
def test_attention_correct_variants_pass(cls, capsys):
    check_attention(cls)
    assert "attention: passed" in capsys.readouterr().out


# ---- 2.4 CausalSelfAttention: mistakes ----------------------------------------------------------------


class StubForward(MinGPTAttention):
    def forward(self, x):
        raise NotImplementedError()


class StubInit(nn.Module):
    def __init__(self, config):
        super().__init__()
        raise NotImplementedError()


class NoSuperInit(nn.Module):
    def __init__(self, config):
        self.proj = nn.Linear(config.n_embd, config.n_embd)


class ReturnsNone(MinGPTAttention):
    def forward(self, x):
        super().forward(x)


class ReturnsTuple(MinGPTAttention):
    def forward(self, x):
        return super().forward(x), None


class NoMerge(MinGPTAttention):  # returns the heads' outputs, (B, nh, T, hs)
    def merge(self, y, B, T, C):
        return y

    def project(self, y):
        return y


class ZeroTimesInf(MinGPTAttention):
    def weights(self, att, T):
        m = self.mask[:, :, :T, :T]
        return F.softmax(att * m + (1 - m) * NEG_INF, dim=-1)


class DiagonalMasked(MinGPTAttention):
    fill = NEG_INF

    def weights(self, att, T):
        strict = torch.tril(torch.ones(T, T), diagonal=-1)
        return F.softmax(att.masked_fill(strict == 0, self.fill), dim=-1)


class DiagonalMaskedFinite(DiagonalMasked):
    fill = -1e9


class NoMask(MinGPTAttention):
    def weights(self, att, T):
        return F.softmax(att, dim=-1)


class TriuMask(MinGPTAttention):
    def weights(self, att, T):
        return F.softmax(att.masked_fill(torch.triu(torch.ones(T, T)) == 0, NEG_INF), dim=-1)


class MaskAfterSoftmax(MinGPTAttention):
    fill = 0.0

    def weights(self, att, T):
        return F.softmax(att, dim=-1).masked_fill(self.mask[:, :, :T, :T] == 0, self.fill)


class MaskAfterSoftmaxInf(MaskAfterSoftmax):
    fill = NEG_INF


class NoScale(MinGPTAttention):
    def scale(self, k):
        return 1.0


class ScaleByC(MinGPTAttention):
    def scale(self, k):
        return 1.0 / (k.size(-1) * self.n_head)


class ScaleSqrtC(MinGPTAttention):  # the lecture's C ** -0.5
    def scale(self, k):
        return (k.size(-1) * self.n_head) ** -0.5


class ScaleOdd(MinGPTAttention):
    def scale(self, k):
        return 0.123


class SoftmaxQueries(MinGPTAttention):
    def weights(self, att, T):
        return F.softmax(att.masked_fill(self.mask[:, :, :T, :T] == 0, NEG_INF), dim=-2)


class SoftmaxHeads(MinGPTAttention):
    def weights(self, att, T):
        return F.softmax(att.masked_fill(self.mask[:, :, :T, :T] == 0, NEG_INF), dim=1)


class MergeWithoutTranspose(MinGPTAttention):
    def merge(self, y, B, T, C):
        return y.reshape(B, T, C)


class MergeInterleaved(MinGPTAttention):
    def merge(self, y, B, T, C):
        return y.permute(0, 2, 3, 1).reshape(B, T, C)


class SplitWithoutTranspose(MinGPTAttention):
    def split(self, t, B, T, C):
        return t.view(B, self.n_head, T, C // self.n_head)


class NoProj(MinGPTAttention):
    def project(self, y):
        return self.resid_drop(y)


class NoProjNoScale(NoProj):
    def scale(self, k):
        return 1.0


class QKSwapped(MinGPTAttention):
    def scores(self, q, k):
        return (k @ q.transpose(-2, -1)) * self.scale(k)


class DropoutInEval(MinGPTAttention):
    def weights(self, att, T):
        return F.dropout(super().weights(att, T), self.attn_drop.p)  # training=True by default


class SdpaDropoutAlways(NanoGPTAttention):
    def forward(self, x):
        self.training = True  # as if dropout_p=self.dropout were passed unconditionally
        try:
            return super().forward(x)
        finally:
            self.training = False


class NoAttnDropout(MinGPTAttention):
    def __init__(self, config):
        super().__init__(config)
        self.attn_drop = nn.Identity()


class NoResidDropout(MinGPTAttention):
    def project(self, y):
        return self.proj(y)


class SwappedDropoutRates(MinGPTAttention):
    def __init__(self, config):
        super().__init__(config)
        self.attn_drop, self.resid_drop = nn.Dropout(config.resid_pdrop), nn.Dropout(config.attn_pdrop)


class HardCodedDropout(MinGPTAttention):
    def __init__(self, config):
        super().__init__(config)
        self.resid_drop = nn.Dropout(0.1)


class DetachedKey(MinGPTAttention):
    def scores(self, q, k):
        return super().scores(q, k.detach())


class UnusedLayer(MinGPTAttention):
    def __init__(self, config):
        super().__init__(config)
        self.extra = nn.Linear(config.n_embd, config.n_embd)


class MaskAsParameter(MinGPTAttention):
    def __init__(self, config):
        super().__init__(config)
        mask = self.mask
        del self.mask
        self.mask = nn.Parameter(mask)


class InPlaceInput(MinGPTAttention):
    def forward(self, x):
        x *= 1.0
        return super().forward(x)


class HalfWidthKeys(MinGPTAttention):
    def __init__(self, config):
        super().__init__(config)
        self.key = nn.Linear(config.n_embd, config.n_embd // 2)


class MaskNotSliced(MinGPTAttention):
    def weights(self, att, T):
        return F.softmax(att.masked_fill(self.mask == 0, NEG_INF), dim=-1)


class ViewWithoutContiguous(MinGPTAttention):
    def merge(self, y, B, T, C):
        return y.transpose(1, 2).view(B, T, C)


class LeaksOneFutureKey(MinGPTAttention):
    def weights(self, att, T):
        allowed = torch.tril(torch.ones(T, T), diagonal=1)
        return F.softmax(att.masked_fill(allowed == 0, NEG_INF), dim=-1)


class ScalePerHead(MinGPTAttention):  # head 0 right, the others twice too sharp: no single scale fits
    def scores(self, q, k):
        per_head = torch.tensor([1.0, 2.0, 2.0, 2.0]).view(1, -1, 1, 1)
        return (q @ k.transpose(-2, -1)) * self.scale(k) * per_head


class SplitInterleaved(MinGPTAttention):  # channel c to head c % n_head; merged the right way
    def split(self, t, B, T, C):
        return t.view(B, T, C // self.n_head, self.n_head).permute(0, 3, 1, 2)


class SplitMergeInterleaved(SplitInterleaved):  # the same order on the way back
    def merge(self, y, B, T, C):
        return y.permute(0, 2, 3, 1).reshape(B, T, C)


class OneFullWidthHead(MinGPTAttention):  # n_head ignored: one head over all C channels
    def split(self, t, B, T, C):
        return t.unsqueeze(1)

    def merge(self, y, B, T, C):
        return y.squeeze(1)


class MaskFilledZero(MinGPTAttention):
    def weights(self, att, T):
        return F.softmax(att.masked_fill(self.mask[:, :, :T, :T] == 0, 0.0), dim=-1)


class MaskInverted(MinGPTAttention):
    def weights(self, att, T):
        return F.softmax(att.masked_fill(self.mask[:, :, :T, :T] == 1, NEG_INF), dim=-1)


class DropoutOnMaskedScores(MinGPTAttention):  # dropout after the mask: -inf * 0 = NaN in train mode
    def forward(self, x):
        B, T, C = x.size()
        q, k, v = (self.split(f(x), B, T, C) for f in (self.query, self.key, self.value))
        att = self.scores(q, k).masked_fill(self.mask[:, :, :T, :T] == 0, NEG_INF)
        att = F.softmax(self.attn_drop(att), dim=-1)
        return self.project(self.merge(att @ v, B, T, C))


class DropoutOnScores(MinGPTAttention):  # dropout before the mask: finite, but the wrong place
    def forward(self, x):
        B, T, C = x.size()
        q, k, v = (self.split(f(x), B, T, C) for f in (self.query, self.key, self.value))
        att = self.weights(self.attn_drop(self.scores(q, k)), T)
        return self.project(self.merge(att @ v, B, T, C))


class ReturnsWeights(MinGPTAttention):
    def forward(self, x):
        B, T, C = x.size()
        q, k = self.split(self.query(x), B, T, C), self.split(self.key(x), B, T, C)
        return self.weights(self.scores(q, k), T)


class ValuesFromKeys(MinGPTAttention):
    def forward(self, x):
        B, T, C = x.size()
        k = self.split(self.key(x), B, T, C)
        q = self.split(self.query(x), B, T, C)
        att = self.attn_drop(self.weights(self.scores(q, k), T))
        y = self.merge(att @ k, B, T, C) + 0 * self.value(x)  # value used only to keep its gradient
        return self.project(y)


WRONG_ATTENTION = [
    (StubForward, "not-done"),
    (StubInit, "not-done"),
    (NoSuperInit, "no-super-init"),
    (ReturnsNone, "returned-none"),
    (ReturnsTuple, "returned-tuple"),
    (NoMerge, "wrong-shape"),
    (ZeroTimesInf, "nan-0-inf"),
    (DiagonalMasked, "row-masked"),
    (DiagonalMaskedFinite, "row-masked"),
    (NoMask, "no-mask"),
    (TriuMask, "mask-transposed"),
    (MaskAfterSoftmax, "mask-after-softmax"),
    (MaskAfterSoftmaxInf, "mask-after-softmax"),
    (NoScale, "missing-scale"),
    (ScaleByC, "wrong-scale"),
    (ScaleSqrtC, "wrong-scale"),
    (ScaleOdd, "wrong-scale"),
    (SoftmaxQueries, "softmax-axis"),
    (SoftmaxHeads, "softmax-axis"),
    (MergeWithoutTranspose, "merge-order"),
    (MergeInterleaved, "merge-order"),
    (SplitWithoutTranspose, "head-split"),
    (NoProj, "no-proj"),
    (NoProjNoScale, "missing-scale"),
    (QKSwapped, "qk-swapped"),
    (DropoutInEval, "dropout-in-eval"),
    (SdpaDropoutAlways, "dropout-in-eval"),
    (NoAttnDropout, "no-dropout"),
    (NoResidDropout, "no-dropout"),
    (SwappedDropoutRates, "dropout-rate"),
    (HardCodedDropout, "dropout-rate"),
    (DetachedKey, "no-grad"),
    (UnusedLayer, "no-grad"),
    (MaskAsParameter, "mask-parameter"),
    (InPlaceInput, "in-place"),
    (HalfWidthKeys, "wrong-params"),
    (MaskNotSliced, "fixed-T"),
    (ViewWithoutContiguous, "crashed"),
    (LeaksOneFutureKey, "future-leak"),
    (ScalePerHead, "wrong-values"),
    (ValuesFromKeys, "wrong-values"),
    (SplitInterleaved, "head-split"),
    (SplitMergeInterleaved, "head-split"),
    (OneFullWidthHead, "one-head"),
    (MaskFilledZero, "mask-fill-zero"),
    (MaskInverted, "mask-inverted"),
    (DropoutOnMaskedScores, "dropout-on-scores"),
    (DropoutOnScores, "dropout-on-scores"),
    (ReturnsWeights, "returned-weights"),
]


@pytest.mark.parametrize("cls, diagnosis", WRONG_ATTENTION, ids=lambda v: getattr(v, "__name__", v))
def test_attention_mistakes_are_diagnosed(cls, diagnosis):
    fails_with(check_attention, cls, diagnosis)


@pytest.mark.parametrize(
    "cls, words",
    [
        (ScaleSqrtC, ["1/sqrt(n_embd) = 1/sqrt(32)", "off by a factor of 2.00, too small"]),
        (ScaleByC, ["1/n_embd = 1/32", "off by a factor of 11.31, too small"]),
        (ScaleOdd, ["scaled by 0.123", "off by a factor of 2.87, too small"]),
        (NoProjNoScale, ["two mistakes", "not scaled at all", "output projection"]),
        (HalfWidthKeys, ["Expected one of", "Linear(32, 32)", "Found:", "key: Linear(32, 16, bias=True)"]),
        (ViewWithoutContiguous, ["view", "line"]),
        (DetachedKey, ["key.weight", "key.bias"]),
        (SoftmaxHeads, ["dim 1", "heads"]),
        (LeaksOneFutureKey, ["future tokens leak", "positions 3..6", "earlier positions [2]"]),
        (ScalePerHead, ["Position 0, which can only look at itself, is right"]),
        (ValuesFromKeys, ["Even position 0 is wrong"]),
    ],
    ids=lambda v: getattr(v, "__name__", "words"),
)
def test_attention_messages_say_what_is_wrong(cls, words):
    message = str(pytest.raises(CheckFailure, check_attention, cls).value)
    for w in words:
        assert w in message, f"{w!r} not in: {message}"


def test_attention_check_wants_the_class_not_an_instance():
    config = GPTConfig(vocab_size=11, block_size=8, n_head=4, n_embd=32)
    fails_with(check_attention, MinGPTAttention(config), "instance-not-class")


@pytest.mark.parametrize("exercise", ["causal_average", "masked_softmax", "head", "attention"])
def test_hints_go_from_a_nudge_to_pseudocode(exercise):
    view = show_hints(exercise)
    html = view._repr_html_()
    assert html.count("<details>") == len(view.entry.levels) >= 3
    assert "pseudocode" in html


# ---- the checks themselves: deterministic, no side effects ------------------------------------------


def test_checks_leave_the_global_rng_and_thread_count_alone(capsys):
    torch.manual_seed(123)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    check_attention(MinGPTAttention)
    with pytest.raises(CheckFailure):
        check_head(HeadNoMask)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_a_failing_check_says_the_same_thing_every_time():
    first = str(pytest.raises(CheckFailure, check_attention, ScaleOdd).value)
    torch.manual_seed(99)  # the learner's RNG state must not matter
    assert str(pytest.raises(CheckFailure, check_attention, ScaleOdd).value) == first


# ---- the reference and the weight reading -----------------------------------------------------------


def weights_of(m: GptlibAttention) -> AttentionWeights:
    return AttentionWeights(
        m.query.weight, m.query.bias, m.key.weight, m.key.bias, m.value.weight, m.value.bias,
        m.proj.weight, m.proj.bias,
    )  # fmt: skip


@pytest.mark.parametrize("n_head, n_embd, T", [(1, 8, 5), (4, 32, 7), (3, 24, 8)])
def test_reference_attention_equals_gptlib(n_head, n_embd, T):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=5, block_size=8, n_head=n_head, n_embd=n_embd)
    layer = GptlibAttention(config).eval()
    x = 2 * torch.randn(2, T, n_embd)
    with torch.no_grad():
        want = layer(x)
        explicit, _ = layer(x, return_weights=True)
        got = reference_attention(x, weights_of(layer), n_head)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got, explicit)


def test_reference_single_head_is_the_lecture_head():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=5, block_size=8, n_head=4, n_embd=32)
    head = KarpathyHead(config, 8).eval()
    x = torch.randn(3, 6, 32)
    w = AttentionWeights(head.query.weight, None, head.key.weight, None, head.value.weight, None)
    with torch.no_grad():
        torch.testing.assert_close(reference_attention(x, w, 1), head(x))


@pytest.mark.parametrize(
    "cls, by_name",
    [
        (MinGPTAttention, True),
        (NanoGPTAttention, True),
        (EinsumAttention, True),
        (HeadsListAttention, True),
        (TorchMHAAttention, True),
        (UnnamedAttention, False),
    ],
)
def test_find_projections_reads_each_layout(cls, by_name):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=5, block_size=8, n_head=4, n_embd=32, attn_pdrop=0.0, resid_pdrop=0.0)
    layer = cls(config).eval()
    search = find_projections(backend().adopt(layer), 32, 32, with_proj=True)
    assert search.by_name == by_name
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        want = layer(x)
        matching = [
            w for w in search.candidates if torch.allclose(reference_attention(x, w, 4), want, atol=1e-5)
        ]
    assert matching, "no reading of the layers reproduces the layer"
    if by_name:
        assert torch.allclose(reference_attention(x, search.candidates[0], 4), want, atol=1e-5)


@pytest.mark.parametrize(
    "rows, value, weights, diagnosis",
    [
        ([0, 1, 2, 3], float("nan"), False, "nan-0-inf"),  # every query: a mask made with arithmetic
        ([0], float("nan"), False, "row-masked"),
        ([3], float("nan"), False, "mask-inverted"),
        ([0, 1, 2], float("nan"), False, "nan"),  # all but the last: the -inf reach the output
        ([1, 2], float("nan"), False, "nan"),
        ([1], float("-inf"), True, "no-softmax"),  # weights holding -inf: scores, not weights
        ([1], float("-inf"), False, "nan"),
    ],
)
def test_nonfinite_values_are_named_by_where_they_sit(rows, value, weights, diagnosis):
    out = torch.rand(2, 4, 4)  # (n_head, query, key)
    out[:, rows, 1] = value
    failure = nonfinite_failure(BY_HAND, "weights", out, -2, "query", weights=weights)
    assert failure.diagnosis == diagnosis
    assert "weights" in str(failure)
