"""Lesson 04's checks: correct LayerNorms and Blocks pass, whatever their names and parts; each classic
mistake is diagnosed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib import MLP, CausalSelfAttention
from gptlib.checks import CheckFailure, NotDoneYet
from gptlib.checks.residual_stack import check_block, check_layer_norm

# --- layer_norm: correct variants -------------------------------------------------------------


class LNStandard(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LNManual(nn.Module):
    """gamma/beta names, the variance written out, rsqrt."""

    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(n_embd))
        self.beta = nn.Parameter(torch.zeros(n_embd))
        self.eps = eps

    def forward(self, x):
        centred = x - x.mean(dim=-1, keepdim=True)
        var = (centred**2).mean(dim=-1, keepdim=True)
        return centred * torch.rsqrt(var + self.eps) * self.gamma + self.beta


class LNBiasFirst(nn.Module):
    """Registers the bias (shift) before the gain (scale)."""

    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(n_embd))
        self.scale = nn.Parameter(torch.ones(n_embd))
        self.eps = eps

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        return self.scale * (x - mean) / (var + self.eps).sqrt() + self.shift


class LNOddNames(nn.Module):
    """Names that say nothing: the check reads the roles from the initial values."""

    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(n_embd))
        self.q = nn.Parameter(torch.ones(n_embd))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, (x.size(-1),), self.q, self.p, self.eps)


class LNBuffersEps(nn.Module):
    """The normalisation in two steps through a helper, eps kept as a buffer, gain and bias as (1, C)."""

    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, n_embd))
        self.b = nn.Parameter(torch.zeros(1, n_embd))
        self.register_buffer("eps", torch.tensor(eps))

    def normalise(self, x):
        mu = torch.mean(x, dim=-1, keepdim=True)
        sigma = torch.sqrt(torch.mean((x - mu) ** 2, dim=-1, keepdim=True) + self.eps)
        return (x - mu) / sigma

    def forward(self, x):
        return torch.addcmul(self.b.squeeze(0), self.normalise(x), self.g.squeeze(0))


@pytest.mark.parametrize("cls", [LNStandard, LNManual, LNBiasFirst, LNOddNames, LNBuffersEps])
def test_correct_layer_norms_pass(cls, capsys):
    check_layer_norm(cls)
    assert "passed" in capsys.readouterr().out


# --- layer_norm: mistakes ---------------------------------------------------------------------


def ln_variant(body):
    """A LayerNorm class (weight/bias) whose forward is body(self, x)."""

    class LN(LNStandard):
        def forward(self, x):
            return body(self, x)

    return LN


def _normed(x, eps, correction=0, dim=-1):
    mean = x.mean(dim, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim, keepdim=True, correction=correction) + eps)


class LNGainOnly(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.eps = eps

    def forward(self, x):
        return _normed(x, self.eps) * self.weight


class LNNoParams(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = torch.ones(n_embd)
        self.bias = torch.zeros(n_embd)
        self.eps = eps

    def forward(self, x):
        return _normed(x, self.eps) * self.weight + self.bias


class LNRandomInit(LNStandard):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__(n_embd, eps)
        self.weight = nn.Parameter(torch.randn(n_embd))


class LNHardEps(LNStandard):
    def forward(self, x):
        return _normed(x, 1e-5) * self.weight + self.bias


def _in_place(self, x):
    x -= x.mean(-1, keepdim=True)
    return x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps) * self.weight + self.bias


def _dim2(self, x):
    mean = x.mean(dim=2, keepdim=True)
    var = x.var(dim=2, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def _stub(self, x):
    raise NotImplementedError()


LN_MISTAKES = [
    (
        ln_variant(
            lambda s, x: (
                (x - x.mean(-1, keepdim=True))
                / (x.var(-1, keepdim=True, unbiased=False).sqrt() + s.eps)
                * s.weight
                + s.bias
            )
        ),
        "eps-outside",
    ),
    (ln_variant(lambda s, x: _normed(x, s.eps, correction=1) * s.weight + s.bias), "unbiased-var"),
    (
        ln_variant(
            lambda s, x: (
                (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + s.eps) * s.weight + s.bias
            )
        ),
        "eps-outside",
    ),
    (ln_variant(lambda s, x: _normed(x, 0.0) * s.weight + s.bias), "no-eps"),
    (ln_variant(lambda s, x: _normed(x, s.eps, dim=1) * s.weight + s.bias), "wrong-axis"),
    (ln_variant(lambda s, x: _normed(x, s.eps) + s.bias), "gain-unused"),
    (ln_variant(lambda s, x: _normed(x, s.eps) * s.weight), "bias-unused"),
    (ln_variant(lambda s, x: _normed(x, s.eps)), "gain-bias-unused"),
    (ln_variant(lambda s, x: (_normed(x, s.eps) + s.bias) * s.weight), "bias-before-gain"),
    (ln_variant(lambda s, x: _normed(x, s.eps) * s.bias + s.weight), "gain-bias-swapped"),
    (
        ln_variant(
            lambda s, x: (
                (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + s.eps) * s.weight
                + s.bias
            )
        ),
        "no-sqrt",
    ),
    (
        ln_variant(lambda s, x: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + s.eps) * s.weight + s.bias),
        "no-centering",
    ),
    (ln_variant(lambda s, x: _normed(x, 1e-8) * s.weight + s.bias), "eps-value"),
    (ln_variant(lambda s, x: None), "returned-none"),
    (ln_variant(_in_place), "in-place"),
    (ln_variant(_dim2), "fixed-rank"),
    (
        ln_variant(
            lambda s, x: (x - x.mean(-1)) / torch.sqrt(x.var(-1, unbiased=False) + s.eps) * s.weight + s.bias
        ),
        "no-keepdim",
    ),
    (LNHardEps, "eps-ignored"),
    (LNGainOnly, "missing-gain-bias"),
    (LNNoParams, "missing-gain-bias"),
    (LNRandomInit, "init"),
]


@pytest.mark.parametrize("cls, diagnosis", LN_MISTAKES, ids=[d for _, d in LN_MISTAKES])
def test_layer_norm_mistakes_are_diagnosed(cls, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_layer_norm(cls)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_layer_norm_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_layer_norm(ln_variant(_stub))


def test_layer_norm_messages_name_the_mistake():
    with pytest.raises(CheckFailure) as excinfo:
        check_layer_norm(LN_MISTAKES[0][0])
    text = str(excinfo.value)
    assert "outside the square root" in text and "Hint:" in text


def test_layer_norm_check_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_layer_norm(LNStandard)
    assert torch.equal(torch.rand(3), expected)


# --- block: correct variants ------------------------------------------------------------------


class BlockGptlibParts(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class BlockOwnNames(nn.Module):
    """Other names, and the MLP's LayerNorm registered first."""

    def __init__(self, config):
        super().__init__()
        self.norm_ff = nn.LayerNorm(config.n_embd)
        self.norm_sa = nn.LayerNorm(config.n_embd)
        self.sa = CausalSelfAttention(config)
        self.ffwd = MLP(config)

    def forward(self, x):
        h = x + self.sa(self.norm_sa(x))
        return h + self.ffwd(self.norm_ff(h))


class FusedAttention(nn.Module):
    """nanoGPT's layout: one Linear(C, 3C), the fast attention path."""

    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.n_head = config.n_head
        self.drop_p = config.attn_pdrop
        self.resid_drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.drop_p if self.training else 0.0
        )
        return self.resid_drop(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


class OwnMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class BlockOwnParts(nn.Module):
    """The learner's LayerNorm (4.1), a fused attention, an MLP of their own."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LNManual(config.n_embd)
        self.attn = FusedAttention(config)
        self.ln_2 = LNManual(config.n_embd)
        self.mlp = OwnMLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class BlockSequentialMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.ln1 = LNStandard(C)
        self.ln2 = LNStandard(C)
        self.attn = CausalSelfAttention(config)
        self.mlp = nn.Sequential(
            nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C), nn.Dropout(config.resid_pdrop)
        )

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


@pytest.mark.parametrize("cls", [BlockGptlibParts, BlockOwnNames, BlockOwnParts, BlockSequentialMLP])
def test_correct_blocks_pass(cls, capsys):
    check_block(cls)
    assert "passed" in capsys.readouterr().out


def test_gptlib_block_passes(capsys):
    from gptlib import Block

    check_block(Block)
    assert "passed" in capsys.readouterr().out


# --- block: mistakes --------------------------------------------------------------------------


def block_variant(body):
    class B(BlockGptlibParts):
        def forward(self, x):
            return body(self, x)

    return B


def _post_norm(s, x):
    x = s.ln1(x + s.attn(x))
    return s.ln2(x + s.mlp(x))


def _norm_in_residual(s, x):
    x = s.ln1(x)
    x = x + s.attn(x)
    x = s.ln2(x)
    return x + s.mlp(x)


def _mlp_first(s, x):
    x = x + s.mlp(s.ln1(x))
    return x + s.attn(s.ln2(x))


def _block_in_place(s, x):
    x += s.attn(s.ln1(x))
    x += s.mlp(s.ln2(x))
    return x


def _block_stub(s, x):
    raise NotImplementedError()


class BlockOneNorm(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln(x))
        return x + self.mlp(self.ln(x))


class BlockNoNorm(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class LeakyAttention(nn.Module):
    """minGPT's names, but no mask."""

    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.query, self.key, self.value, self.proj = (nn.Linear(C, C) for _ in range(4))
        self.n_head = config.n_head
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (
            layer(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            for layer in (self.query, self.key, self.value)
        )
        att = (q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)).softmax(-1)
        return self.drop(self.proj((att @ v).transpose(1, 2).reshape(B, T, C)))


class BlockLeaky(BlockGptlibParts):
    def __init__(self, config):
        super().__init__(config)
        self.attn = LeakyAttention(config)


class TimeNorm(LNStandard):
    """Normalises over the positions (dim 1): it mixes time steps."""

    def forward(self, x):
        return _normed(x, self.eps, dim=1) * self.weight + self.bias


class BlockTimeNorm(BlockGptlibParts):
    def __init__(self, config):
        super().__init__(config)
        self.ln1 = TimeNorm(config.n_embd)


class ReluMLP(OwnMLP):
    def forward(self, x):
        return self.dropout(self.c_proj(F.relu(self.c_fc(x))))


class BlockReluMLP(BlockGptlibParts):
    def __init__(self, config):
        super().__init__(config)
        self.mlp = ReluMLP(config)


class NoDropMLP(OwnMLP):
    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class NoDropAttention(FusedAttention):
    def __init__(self, config):
        super().__init__(config.replace(attn_pdrop=0.0, resid_pdrop=0.0))


class BlockNoDropout(BlockGptlibParts):
    def __init__(self, config):
        super().__init__(config)
        self.attn = NoDropAttention(config)
        self.mlp = NoDropMLP(config)


class BlockFunctionalDropout(BlockGptlibParts):
    def forward(self, x):
        x = x + F.dropout(self.attn(self.ln1(x)), 0.5)
        return x + self.mlp(self.ln2(x))


BLOCK_MISTAKES = [
    (block_variant(lambda s, x: s.attn(s.ln1(x)) + s.mlp(s.ln2(s.attn(s.ln1(x))))), "no-residual-attn"),
    (block_variant(lambda s, x: s.mlp(s.ln2(x + s.attn(s.ln1(x))))), "no-residual-mlp"),
    (block_variant(lambda s, x: s.mlp(s.ln2(s.attn(s.ln1(x))))), "no-residual"),
    (block_variant(_post_norm), "post-norm"),
    (block_variant(_norm_in_residual), "norm-in-residual"),
    (block_variant(lambda s, x: (lambda h: h + s.mlp(s.ln1(h)))(x + s.attn(s.ln1(x)))), "same-layernorm"),
    (block_variant(_mlp_first), "mlp-first"),
    (block_variant(lambda s, x: x + s.attn(s.ln1(x)) + s.mlp(s.ln2(x))), "parallel"),
    (block_variant(lambda s, x: x + s.attn(s.ln1(x))), "sublayer-unused"),
    (block_variant(lambda s, x: None), "returned-none"),
    (block_variant(lambda s, x: (x + s.attn(s.ln1(x)), None)), "returned-tuple"),
    (block_variant(_block_in_place), "in-place"),
    (BlockOneNorm, "same-layernorm"),
    (BlockNoNorm, "no-layernorm"),
    (BlockLeaky, "future-leak"),
    (BlockTimeNorm, "future-leak"),
    (BlockReluMLP, "mlp-differs"),
    (BlockNoDropout, "no-dropout"),
    (BlockFunctionalDropout, "dropout-in-eval"),
]


@pytest.mark.parametrize("cls, diagnosis", BLOCK_MISTAKES, ids=[d for _, d in BLOCK_MISTAKES])
def test_block_mistakes_are_diagnosed(cls, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_block(cls)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_block_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_block(block_variant(_block_stub))


def test_block_leak_names_the_culprit():
    with pytest.raises(CheckFailure) as excinfo:
        check_block(BlockTimeNorm)
    assert "`ln1`" in str(excinfo.value) and "dim=-1" in str(excinfo.value)
    with pytest.raises(CheckFailure) as excinfo:
        check_block(BlockLeaky)
    assert "`attn`" in str(excinfo.value)


def test_block_relu_is_named():
    with pytest.raises(CheckFailure) as excinfo:
        check_block(BlockReluMLP)
    assert "ReLU" in str(excinfo.value)


def test_block_check_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_block(BlockGptlibParts)
    assert torch.equal(torch.rand(3), expected)
