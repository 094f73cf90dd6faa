"""Lesson 04, the residual stack: LayerNorm (4.1), Block (4.2)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib import MLP, CausalSelfAttention
from tests.variants import Lesson
from tests.variants import words as W

V = Lesson()

# ---------------------------------------------------------------- 4.1 LayerNorm


@V.correct("4.1", "mean-of-squares")
class LNSquares(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return self.weight * (x - mu) / torch.sqrt(var + self.eps) + self.bias


@V.correct("4.1", "rsqrt")
class LNRsqrt(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))

    def forward(self, x):
        centered = x - x.mean(dim=-1, keepdim=True)
        inv_std = torch.rsqrt(centered.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return centered * inv_std * self.weight + self.bias


@V.correct("4.1", "var-mean-correction-0")
class LNVarMean(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))
        self.eps = eps

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        return torch.addcmul(self.bias, (x - mean) / (var + self.eps).sqrt(), self.weight)


@V.correct("4.1", "std-unbiased-false")
class LNStd(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))
        self.eps = eps

    def forward(self, x):
        std = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + self.eps)
        return (x - x.mean(-1, keepdim=True)) / std * self.weight + self.bias


class _LN(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))
        self.eps = eps


@V.mistake(
    "4.1",
    "unbiased-variance",
    ["unbiased", "c - 1", "n - 1", "bessel"],
    "x.var() divides by C - 1: LayerNorm uses the biased variance (unbiased=False).",
)
class LNUnbiased(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@V.mistake(
    "4.1",
    "eps-outside-sqrt",
    ["inside", "outside"],
    "eps goes inside the square root: sqrt(var + eps), not sqrt(var) + eps.",
)
class LNEpsOutside(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / (torch.sqrt(var) + self.eps) * self.weight + self.bias


@V.mistake("4.1", "no-eps", ["eps"], "Without eps a constant row divides 0 by 0.")
class LNNoEps(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var) * self.weight + self.bias


@V.mistake("4.1", "eps-ignored", ["eps"], "You use 1e-5 instead of self.eps: the eps argument is ignored.")
class LNEpsConst(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.weight + self.bias


@V.mistake(
    "4.1",
    "no-keepdim",
    ["keepdim"],
    "mean and var without keepdim=True have shape (N,), which does not broadcast against (N, C).",
)
class LNNoKeepdim(_LN):
    def forward(self, x):
        mean = x.mean(-1)
        var = x.var(-1, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@V.mistake(
    "4.1",
    "wrong-axis",
    ["last dim", "dim=-1", "dim=0", "dim 0", "batch", "axis", "wrong dim", "first dim"],
    "The statistics are over the last dim (the channels), not dim 0.",
)
class LNDim0(_LN):
    def forward(self, x):
        mean = x.mean(0, keepdim=True)
        var = x.var(0, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@V.mistake(
    "4.1",
    "std-in-sqrt",
    ["std", "standard deviation", "variance"],
    "sqrt(std + eps) takes the root twice: use the variance inside the square root.",
)
class LNStdSqrt(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(std + self.eps) * self.weight + self.bias


@V.mistake(
    "4.1",
    "gain-bias-swapped",
    ["swap", "gain and bias", "bias and gain", "weight and bias"],
    "x_hat * bias + weight: the gain multiplies, the bias adds.",
)
class LNSwapped(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.bias + self.weight


@V.mistake(
    "4.1",
    "not-parameters",
    ["parameter", "gradient", "learn"],
    "Plain tensors are not learned: wrap the gain and the bias in nn.Parameter.",
)
class LNTensors(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = torch.ones(n_embd)
        self.bias = torch.zeros(n_embd)
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@V.mistake(
    "4.1",
    "init-swapped",
    ["init", "ones", "zeros", "start"],
    "The gain starts at ones and the bias at zeros; yours start the other way round.",
)
class LNInit(_LN):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__(n_embd, eps)
        self.weight = nn.Parameter(torch.zeros(n_embd))
        self.bias = nn.Parameter(torch.ones(n_embd))

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@V.mistake("4.1", "bias-unused", ["bias"], "The bias is made but never added.")
class LNNoBias(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight


@V.mistake(
    "4.1",
    "divided-by-variance",
    ["sqrt", "square root"],
    "You divide by the variance: divide by its square root, the standard deviation.",
)
class LNByVar(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / (var + self.eps) * self.weight + self.bias


@V.mistake("4.1", "in-place", W.IN_PLACE, "x -= mean changes the caller's tensor.")
class LNInPlace(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        x -= mean
        return x / torch.sqrt(var + self.eps) * self.weight + self.bias


@V.mistake(
    "4.1",
    "statistics-of-whole-tensor",
    ["all", "whole tensor", "per row", "each row", "each vector", "last dim"],
    "x.mean() is the mean of the whole tensor: each vector is normalised with its own mean and variance.",
)
class LNGlobal(_LN):
    def forward(self, x):
        mean = x.mean()
        var = x.var(unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@V.mistake(
    "4.1",
    "statistics-detached",
    ["detach", "gradient"],
    "Detaching the mean and variance gives x the wrong gradient.",
)
class LNDetached(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True).detach()
        var = x.var(-1, keepdim=True, unbiased=False).detach()
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@V.mistake(
    "4.1",
    "not-centred",
    ["mean", "subtract", "centre", "center"],
    "You divide by the standard deviation but never subtract the mean.",
)
class LNNoCentre(_LN):
    def forward(self, x):
        var = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + self.eps) * self.weight + self.bias


# ---------------------------------------------------------------- 4.2 Block


@V.correct("4.2", "nanogpt-names")
class BlockNano(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x):
        h = x + self.attn(self.ln_1(x))
        out = h + self.mlp(self.ln_2(h))
        return out


class MyLayerNorm(nn.Module):
    def __init__(self, n_embd, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class MyAttention(nn.Module):
    """A learner's own attention from lesson 02: fused q/k/v, scaled_dot_product_attention."""

    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.n_head = config.n_head
        self.attn_pdrop = config.attn_pdrop
        self.resid_drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        p = self.attn_pdrop if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.resid_drop(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


@V.correct("4.2", "own-parts-lecture-names")
class BlockOwn(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.sa = MyAttention(config)
        self.ffwd = nn.Sequential(
            nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C), nn.Dropout(config.resid_pdrop)
        )
        self.norm1 = MyLayerNorm(C)
        self.norm2 = MyLayerNorm(C)

    def forward(self, x):
        x = x + self.sa(self.norm1(x))
        x = x + self.ffwd(self.norm2(x))
        return x


@V.correct("4.2", "declared-mlp-first")
class BlockDeclOrder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.mlp = MLP(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln1 = nn.LayerNorm(config.n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@V.correct("4.2", "config-eps-attribute-names")
class BlockEps(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm_attn = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.self_attention = CausalSelfAttention(config)
        self.norm_mlp = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.feed_forward = MLP(config)

    def forward(self, x):
        attn_out = self.self_attention(self.norm_attn(x))
        x = x + attn_out
        mlp_out = self.feed_forward(self.norm_mlp(x))
        return x + mlp_out


class _Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@V.mistake(
    "4.2",
    "no-attention-residual",
    ["residual"],
    "x = attn(ln1(x)) drops the stream: add it back, x = x + attn(ln1(x)).",
)
class BlockNoAttnRes(_Block):
    def forward(self, x):
        x = self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@V.mistake("4.2", "no-mlp-residual", ["residual"], "x = mlp(ln2(x)) drops the stream: x = x + mlp(ln2(x)).")
class BlockNoMlpRes(_Block):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return self.mlp(self.ln2(x))


@V.mistake(
    "4.2", "no-residuals", ["residual"], "Neither sub-layer adds to the stream: both need x = x + ...."
)
class BlockNoRes(_Block):
    def forward(self, x):
        return self.mlp(self.ln2(self.attn(self.ln1(x))))


@V.mistake(
    "4.2",
    "post-norm",
    ["post-norm", "post-ln", "postnorm", "post norm", "after the sum"],
    "ln(x + f(x)) is post-norm (the 2017 Transformer); GPT normalises the input of each sub-layer.",
)
class BlockPostNorm(_Block):
    def forward(self, x):
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


@V.mistake(
    "4.2",
    "one-layernorm-twice",
    ["ln1", "twice", "same layernorm", "one layernorm", "never used", "shared", "both"],
    "ln1 is used before both sub-layers and ln2 never: each sub-layer has its own LayerNorm.",
)
class BlockLn1Twice(_Block):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln1(x))


@V.mistake(
    "4.2",
    "mlp-first",
    ["mlp first", "order", "before the attention", "attention first"],
    "The MLP runs before the attention: communicate first, then compute.",
)
class BlockMlpFirst(_Block):
    def forward(self, x):
        x = x + self.mlp(self.ln2(x))
        return x + self.attn(self.ln1(x))


@V.mistake(
    "4.2",
    "parallel",
    ["parallel", "same x", "sequential", "updated x", "both read", "one after the other"],
    "Both sub-layers read the same x (GPT-J's parallel block); the MLP must read the x the attention updated.",
)
class BlockParallel(_Block):
    def forward(self, x):
        return x + self.attn(self.ln1(x)) + self.mlp(self.ln2(x))


@V.mistake(
    "4.2",
    "residual-of-normed-x",
    [
        "ln1(x) +",
        "normalised",
        "normalized",
        "layernorm'd",
        "stream itself",
        "un-normalised",
        "the norm's output",
    ],
    "h = ln1(x); x = h + attn(h) replaces the stream by its normalised copy: add to x itself.",
)
class BlockNormedResidual(_Block):
    def forward(self, x):
        h = self.ln1(x)
        x = h + self.attn(h)
        h = self.ln2(x)
        return h + self.mlp(h)


@V.mistake(
    "4.2",
    "no-layernorm",
    ["layernorm", "layer norm", "ln1", "norm"],
    "The sub-layers read x directly: each reads a LayerNorm'd copy, attn(ln1(x)) and mlp(ln2(x)).",
)
class BlockNoLn(_Block):
    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


@V.mistake(
    "4.2",
    "mlp-reads-attention-output",
    [
        "mlp reads",
        "reads the attention",
        "not the stream",
        "attention output",
        "attention's output",
        "the sum",
    ],
    "The MLP reads the attention's output; it must read the updated stream x.",
)
class BlockMlpReadsAttn(_Block):
    def forward(self, x):
        a = self.attn(self.ln1(x))
        x = x + a
        return x + self.mlp(self.ln2(a))


@V.mistake(
    "4.2",
    "sub-layers-in-a-list",
    ["list", "register", "modulelist"],
    "Sub-modules kept in a plain Python list are not registered: their weights are not the block's.",
)
class BlockList(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.layers = [CausalSelfAttention(config), MLP(config)]

    def forward(self, x):
        attn, mlp = self.layers
        x = x + attn(self.ln1(x))
        return x + mlp(self.ln2(x))


@V.mistake("4.2", "in-place-residual", W.IN_PLACE, "x += ... changes the caller's tensor: write x = x + ....")
class BlockInPlace(_Block):
    def forward(self, x):
        x += self.attn(self.ln1(x))
        x += self.mlp(self.ln2(x))
        return x


@V.mistake(
    "4.2",
    "extra-dropout",
    ["twice", "extra", "already", "double"],
    "The attention and the MLP already end with dropout: a second one in the block drops twice.",
)
class BlockExtraDrop(_Block):
    def __init__(self, config):
        super().__init__(config)
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


@V.mistake(
    "4.2",
    "layernorm-without-affine",
    ["elementwise_affine", "affine", "gain", "layernorm parameters", "learnable"],
    "nn.LayerNorm(..., elementwise_affine=False) has no gain and bias to learn.",
)
class BlockNoAffine(_Block):
    def __init__(self, config):
        super().__init__(config)
        self.ln1 = nn.LayerNorm(config.n_embd, elementwise_affine=False)
        self.ln2 = nn.LayerNorm(config.n_embd, elementwise_affine=False)


@V.mistake("4.2", "returns-none", W.NONE, "forward computes x but never returns it.")
class BlockNoReturn(_Block):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))


@V.mistake(
    "4.2",
    "residual-halved",
    ["0.5", "half", "scale", "average"],
    "(x + f(x)) / 2 is not a residual: the stream is x + f(x), unscaled.",
)
class BlockHalf(_Block):
    def forward(self, x):
        x = (x + self.attn(self.ln1(x))) * 0.5
        return (x + self.mlp(self.ln2(x))) * 0.5


@V.mistake(
    "4.2",
    "same-attention-for-mlp",
    ["mlp", "attention twice", "twice", "never used"],
    "The attention runs twice and the MLP never: the second line is x + mlp(ln2(x)).",
)
class BlockAttnTwice(_Block):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.attn(self.ln2(x))
