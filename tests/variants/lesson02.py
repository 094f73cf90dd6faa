"""Lesson 02, masked self-attention: causal_average (2.1), masked_softmax (2.2), Head (2.3),
CausalSelfAttention (2.4)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.variants import Lesson
from tests.variants import words as W

V = Lesson()

# ---------------------------------------------------------------- 2.1 causal_average


@V.correct("2.1", "masked-softmax-of-zeros")
def avg_softmax(x):
    T = x.shape[1]
    tril = torch.tril(torch.ones(T, T))
    wei = torch.zeros(T, T).masked_fill(tril == 0, float("-inf"))
    return F.softmax(wei, dim=-1) @ x


@V.correct("2.1", "cumsum")
def avg_cumsum(x):
    T = x.size(1)
    counts = torch.arange(1, T + 1, dtype=x.dtype).view(1, T, 1)
    return x.cumsum(dim=1) / counts


@V.correct("2.1", "loop")
def avg_loop(x):
    B, T, C = x.shape
    rows = [x[:, : t + 1].mean(dim=1) for t in range(T)]  # each (B, C)
    return torch.stack(rows, dim=1)


@V.correct("2.1", "einsum")
def avg_einsum(x):
    T = x.shape[-2]
    wei = torch.tril(torch.ones(T, T))
    wei /= wei.sum(1, keepdim=True)  # our own tensor: in place is fine
    return torch.einsum("ts,bsc->btc", wei, x)


@V.mistake(
    "2.1",
    "mean-of-all",
    ["all positions", "future", "not causal"],
    "You average over every position, the future included: only positions 0..t count.",
)
def avg_all(x):
    return x.mean(dim=1, keepdim=True).expand_as(x).clone()


@V.mistake(
    "2.1",
    "divided-by-t",
    ["by t", "divides by t", "divided by t", "count", "t + 1", "its own"],
    "Every row is divided by T; row t must be divided by its own count, t + 1.",
)
def avg_by_T(x):
    T = x.size(1)
    return torch.tril(torch.ones(T, T)) @ x / T


@V.mistake(
    "2.1",
    "position-itself-left-out",
    ["itself", "position t", "leaving out", "leaves out", "excluding", "diagonal", "strictly"],
    "tril(diagonal=-1) leaves out position t itself: the average is over 0..t, t included.",
)
def avg_strict(x):
    T = x.size(1)
    wei = torch.tril(torch.ones(T, T), diagonal=-1)
    wei = wei / wei.sum(1, keepdim=True).clamp(min=1)
    return wei @ x


@V.mistake(
    "2.1",
    "upper-triangle",
    ["triu", "future", "upper"],
    "triu averages the future positions t..T-1; the past is the lower triangle, tril.",
)
def avg_triu(x):
    T = x.size(1)
    wei = torch.triu(torch.ones(T, T))
    return wei / wei.sum(1, keepdim=True) @ x


@V.mistake(
    "2.1",
    "mean-over-channels",
    ["channel"],
    "You average the channels of each position; the average runs over the positions.",
)
def avg_channels(x):
    return x.mean(dim=-1, keepdim=True).expand_as(x).clone()


@V.mistake(
    "2.1",
    "sum-not-mean",
    ["sum", "divid"],
    "tril @ x adds the past up: divide each row by its count to get the mean.",
)
def avg_sum(x):
    T = x.size(1)
    return torch.tril(torch.ones(T, T)) @ x


@V.mistake("2.1", "in-place", W.IN_PLACE, "You overwrite x with the result: return a new tensor.")
def avg_inplace(x):
    T = x.size(1)
    wei = torch.tril(torch.ones(T, T))
    wei = wei / wei.sum(1, keepdim=True)
    x.copy_(wei @ x)
    return x


@V.mistake(
    "2.1",
    "hard-coded-length",
    ["hard", "x.shape", "x.size", "any length", "other length", "t from x", "t = 1", "t = 13"],
    "The 8 x 8 triangle only fits T = 8: take T from x.",
)
def avg_T8(x):
    wei = torch.tril(torch.ones(8, 8))
    wei = wei / wei.sum(1, keepdim=True)
    return wei @ x


@V.mistake(
    "2.1",
    "over-the-batch",
    ["batch", "dim=0", "first dim", "axis 0"],
    "You average along the batch (dim 0); the positions are dim 1.",
)
def avg_batch(x):
    B = x.size(0)
    return x.cumsum(dim=0) / torch.arange(1, B + 1, dtype=x.dtype).view(B, 1, 1)


@V.mistake(
    "2.1",
    "normalised-by-columns",
    ["column"],
    "wei.sum(0) normalises the columns; each row must sum to 1: wei.sum(1, keepdim=True).",
)
def avg_columns(x):
    T = x.size(1)
    wei = torch.tril(torch.ones(T, T))
    return wei / wei.sum(0, keepdim=True) @ x


@V.mistake(
    "2.1",
    "returns-weights",
    ["weights", "(t, t)", "@ x", "multiply"],
    "You return the (T, T) weights; apply them to x: wei @ x.",
)
def avg_weights(x):
    T = x.size(1)
    wei = torch.tril(torch.ones(T, T))
    return wei / wei.sum(1, keepdim=True)


# ---------------------------------------------------------------- 2.2 masked_softmax


@V.correct("2.2", "triu-bool")
def msm_triu(scores):
    T = scores.shape[-1]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


@V.correct("2.2", "where")
def msm_where(scores):
    T = scores.size(-1)
    keep = torch.ones(T, T).tril().bool()
    return torch.softmax(torch.where(keep, scores, float("-inf")), dim=-1)


@V.correct("2.2", "additive-minus-inf")
def msm_additive(scores):
    T = scores.size(-1)
    bias = torch.full((T, T), float("-inf")).triu(1)  # 0 on and below the diagonal
    return F.softmax(scores + bias, dim=-1)


@V.correct("2.2", "softmax-by-hand")
def msm_manual(scores):
    T = scores.size(-1)
    s = scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf"))
    e = torch.exp(s - s.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


@V.correct("2.2", "minus-1e9")
def msm_big_negative(scores):
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, -1e9), dim=-1)


@V.correct("2.2", "renormalise-after-softmax")
def msm_renorm(scores):
    T = scores.size(-1)
    w = F.softmax(scores, dim=-1) * torch.tril(torch.ones(T, T))
    return w / w.sum(dim=-1, keepdim=True)


def _tril(T):
    return torch.tril(torch.ones(T, T))


@V.mistake(
    "2.2",
    "filled-with-zero",
    W.FILL_ZERO,
    "Filling the future with 0 still gives it weight (exp(0) = 1): fill it with -inf.",
)
def msm_zero(scores):
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(_tril(T) == 0, 0.0), dim=-1)


@V.mistake(
    "2.2",
    "mask-inverted",
    W.MASK_INVERTED,
    "tril == 1 masks the past and keeps the future: fill where tril == 0.",
)
def msm_inverted(scores):
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(_tril(T) == 1, float("-inf")), dim=-1)


@V.mistake(
    "2.2",
    "mask-after-softmax",
    W.MASK_AFTER_SOFTMAX,
    "Masking after the softmax leaves rows that do not sum to 1: mask the scores first.",
)
def msm_after(scores):
    T = scores.size(-1)
    return F.softmax(scores, dim=-1).masked_fill(_tril(T) == 0, 0.0)


@V.mistake(
    "2.2",
    "softmax-over-queries",
    W.SOFTMAX_AXIS,
    "softmax(dim=-2) normalises each column; the weights of one query are a row: dim=-1.",
)
def msm_axis(scores):
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(_tril(T) == 0, float("-inf")), dim=-2)


@V.mistake(
    "2.2",
    "diagonal-masked",
    W.ROW_FULLY_MASKED,
    "triu(diagonal=0) masks the diagonal too: row 0 has nothing left and becomes NaN.",
)
def msm_diag(scores):
    T = scores.size(-1)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool))
    return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


@V.mistake(
    "2.2",
    "zero-times-inf",
    ["nan", "0 * -inf", "0 · -inf", "0 * inf", "multipl"],
    "(1 - tril) * -inf is 0 * -inf = NaN below the diagonal: use masked_fill.",
)
def msm_zero_inf(scores):
    T = scores.size(-1)
    return F.softmax(scores + (1 - _tril(T)) * float("-inf"), dim=-1)


@V.mistake(
    "2.2",
    "in-place-masked-fill",
    W.IN_PLACE,
    "masked_fill_ writes into the caller's scores: use masked_fill, which returns a new tensor.",
)
def msm_inplace(scores):
    T = scores.size(-1)
    scores.masked_fill_(_tril(T) == 0, float("-inf"))
    return F.softmax(scores, dim=-1)


@V.mistake(
    "2.2",
    "hard-coded-size",
    ["hard", "scores.size", "scores.shape", "any t", "t from", "other size", "t = 1", "(1, 1)"],
    "The 8 x 8 mask only fits T = 8: take T from scores.",
)
def msm_T8(scores):
    return F.softmax(scores.masked_fill(_tril(8) == 0, float("-inf")), dim=-1)


@V.mistake("2.2", "no-mask", W.NO_MASK, "There is no mask: the future must be filled with -inf.")
def msm_nomask(scores):
    return F.softmax(scores, dim=-1)


@V.mistake(
    "2.2",
    "size-from-first-axis",
    ["last axis", "size(-1)", "last dim", "batch", "shape[0]"],
    "scores.size(0) is the batch for (B, T, T) scores; T is the size of the last axis.",
)
def msm_first_axis(scores):
    T = scores.size(0)
    return F.softmax(scores.masked_fill(_tril(T) == 0, float("-inf")), dim=-1)


@V.mistake(
    "2.2",
    "no-softmax",
    ["softmax", "sum to 1", "sums to 1"],
    "You return the masked scores: the weights come from a softmax of them.",
)
def msm_nosoftmax(scores):
    T = scores.size(-1)
    return scores.masked_fill(_tril(T) == 0, float("-inf"))


@V.mistake(
    "2.2",
    "one-future-position",
    ["diagonal", "next", "one step", "one position", "future"],
    "tril(diagonal=1) lets each position see the next one: the diagonal offset must be 0.",
)
def msm_diag_plus(scores):
    T = scores.size(-1)
    return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T), diagonal=1) == 0, float("-inf")), dim=-1)


@V.mistake(
    "2.2",
    "sigmoid",
    ["sigmoid", "softmax", "sum to 1", "sums to 1"],
    "A sigmoid makes each weight on its own; the weights of a row must be a softmax that sums to 1.",
)
def msm_sigmoid(scores):
    T = scores.size(-1)
    return torch.sigmoid(scores).masked_fill(_tril(T) == 0, 0.0)


# ---------------------------------------------------------------- 2.3 Head


class _Head(nn.Module):
    """The right __init__; the mistakes below change forward or one line of it."""

    def __init__(self, config, head_size):
        super().__init__()
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(config.block_size, config.block_size)))

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.correct("2.3", "bool-future-buffer")
class HeadBool(nn.Module):
    def __init__(self, config, head_size):
        super().__init__()
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)
        bs = config.block_size
        self.register_buffer("future", torch.triu(torch.ones(bs, bs, dtype=torch.bool), diagonal=1))
        self.head_size = head_size

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)
        wei = q @ k.transpose(1, 2) / math.sqrt(self.head_size)
        wei = wei.masked_fill(self.future[:T, :T], float("-inf"))
        return torch.softmax(wei, dim=2) @ v


@V.correct("2.3", "einsum")
class HeadEinsum(_Head):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)
        wei = torch.einsum("btd,bsd->bts", q, k) * q.shape[-1] ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf")).softmax(-1)
        return torch.einsum("bts,bsd->btd", wei, v)


@V.correct("2.3", "sdpa")
class HeadSdpa(_Head):
    def forward(self, x):
        return F.scaled_dot_product_attention(self.query(x), self.key(x), self.value(x), is_causal=True)


@V.correct("2.3", "mask-computed-in-forward")
class HeadComputedMask(nn.Module):
    def __init__(self, config, head_size):
        super().__init__()
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        k, q, v = self.key(x), self.query(x), self.value(x)
        att = q @ k.mT * (1.0 / math.sqrt(k.size(-1)))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))
        att = att.masked_fill(~mask, float("-inf"))
        return F.softmax(att, dim=-1) @ v


@V.correct("2.3", "scale-queries-first")
class HeadScaleQ(_Head):
    def forward(self, x):
        B, T, C = x.shape
        q = self.query(x) / math.sqrt(self.query.out_features)  # scaling q first: the same scores
        wei = torch.bmm(q, self.key(x).transpose(1, 2))
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return torch.bmm(F.softmax(wei, dim=-1), self.value(x))


@V.mistake("2.3", "no-scale", W.NO_SCALE, "The scores are not scaled: multiply by head_size ** -0.5.")
class HeadNoScale(_Head):
    def forward(self, x):
        B, T, C = x.shape
        wei = self.query(x) @ self.key(x).transpose(-2, -1)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake(
    "2.3",
    "scale-by-n-embd",
    W.SCALE_BY_N_EMBD,
    "You scale by C = n_embd ** -0.5; the scale is head_size ** -0.5.",
)
class HeadScaleC(_Head):
    def forward(self, x):
        B, T, C = x.shape
        wei = self.query(x) @ self.key(x).transpose(-2, -1) * C**-0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake(
    "2.3",
    "scale-multiplied",
    W.SCALE_MULTIPLIED,
    "You multiply by sqrt(head_size); the scores are divided by it.",
)
class HeadScaleMul(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * math.sqrt(k.size(-1))
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake(
    "2.3",
    "scale-without-sqrt",
    W.SCALE_NO_SQRT,
    "You divide by head_size; the scale is its square root.",
)
class HeadScaleNoSqrt(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) / k.size(-1)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake("2.3", "filled-with-zero", W.FILL_ZERO, "The future is filled with 0, not -inf: it keeps weight.")
class HeadZeroFill(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, 0)
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake("2.3", "mask-inverted", W.MASK_INVERTED, "tril == 1 hides the past and shows the future.")
class HeadInverted(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 1, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake("2.3", "no-mask", W.NO_MASK, "The mask is never applied: the head sees the future.")
class HeadNoMask(_Head):
    def forward(self, x):
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake(
    "2.3",
    "mask-not-sliced",
    W.MASK_NOT_SLICED,
    "The (block_size, block_size) mask must be sliced to [:T, :T] for shorter inputs.",
)
class HeadFullMask(_Head):
    def forward(self, x):
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake("2.3", "softmax-over-queries", W.SOFTMAX_AXIS, "The softmax runs over the keys, dim=-1.")
class HeadAxis(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=1) @ self.value(x)


@V.mistake(
    "2.3",
    "keys-queries-swapped",
    W.KEYS_QUERIES_SWAPPED,
    "k @ q^T puts the keys on the rows: the scores are q @ k^T (row = query).",
)
class HeadSwapped(_Head):
    def forward(self, x):
        B, T, C = x.shape
        q, k = self.query(x), self.key(x)
        wei = k @ q.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake(
    "2.3",
    "returns-weights",
    ["weights", "@ v", "values", "instead of the output"],
    "You return the attention weights; the head's output is the weighted sum of the values, wei @ v.",
)
class HeadReturnsWeights(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1)


@V.mistake(
    "2.3",
    "weights-times-x",
    ["value", "@ x", "wei @ v"],
    "wei @ x sums the inputs; the head sums the values: wei @ self.value(x).",
)
class HeadTimesX(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ x


@V.mistake(
    "2.3",
    "value-from-key-layer",
    ["value"],
    "v = self.key(x): the values come from the value layer.",
)
class HeadValueFromKey(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ k


@V.mistake(
    "2.3",
    "mask-as-parameter",
    ["buffer", "parameter"],
    "nn.Parameter makes the mask trainable: register it as a buffer.",
)
class HeadMaskParam(_Head):
    def __init__(self, config, head_size):
        nn.Module.__init__(self)
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)
        self.tril = nn.Parameter(torch.tril(torch.ones(config.block_size, config.block_size)))

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake(
    "2.3",
    "mask-plain-attribute",
    ["buffer"],
    "A plain tensor attribute does not move with .to(device): store the mask with register_buffer.",
)
class HeadMaskAttr(_Head):
    def __init__(self, config, head_size):
        nn.Module.__init__(self)
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)
        self.tril = torch.tril(torch.ones(config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake(
    "2.3",
    "head-size-ignored",
    ["head_size"],
    "Your layers are n_embd wide; a head's are head_size wide: nn.Linear(n_embd, head_size).",
)
class HeadFullWidth(_Head):
    def __init__(self, config, head_size):
        super().__init__(config, config.n_embd)


@V.mistake(
    "2.3",
    "k-dot-t-on-3d",
    ["transpose", "k.t", "last two", "(-2, -1)"],
    "k.T reverses all three dims of (B, T, hs): transpose only the last two, k.transpose(-2, -1).",
)
class HeadKT(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = self.query(x) @ k.permute(2, 1, 0) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


@V.mistake("2.3", "mask-after-softmax", W.MASK_AFTER_SOFTMAX, "Mask the scores before the softmax.")
class HeadMaskAfter(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = F.softmax(self.query(x) @ k.transpose(-2, -1) * k.size(-1) ** -0.5, dim=-1)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, 0.0)
        return wei @ self.value(x)


@V.mistake(
    "2.3",
    "scale-after-softmax",
    W.SCALE_AFTER_SOFTMAX,
    "The scale goes on the scores before the softmax; after it the weights no longer sum to 1.",
)
class HeadScaleAfter(_Head):
    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        wei = (self.query(x) @ k.transpose(-2, -1)).masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1) * k.size(-1) ** -0.5
        return wei @ self.value(x)


# ---------------------------------------------------------------- 2.4 CausalSelfAttention


class _Attn(nn.Module):
    """The right __init__ (the exercise's layout); the mistakes below change forward or one line."""

    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)
        self.proj = nn.Linear(C, C)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.n_head = config.n_head
        bs = config.block_size
        self.register_buffer("mask", torch.tril(torch.ones(bs, bs)).view(1, 1, bs, bs))

    def qkv(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q = self.query(x).view(B, T, self.n_head, hs).transpose(1, 2)
        k = self.key(x).view(B, T, self.n_head, hs).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_head, hs).transpose(1, 2)
        return q, k, v


@V.correct("2.4", "reshape-permute")
class AttnReshape(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q = self.query(x).reshape(B, T, nh, hs).permute(0, 2, 1, 3)
        k = self.key(x).reshape(B, T, nh, hs).permute(0, 2, 1, 3)
        v = self.value(x).reshape(B, T, nh, hs).permute(0, 2, 1, 3)
        att = q @ k.transpose(-2, -1) / math.sqrt(hs)
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = self.attn_drop(att.softmax(dim=-1))
        y = (att @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


@V.correct("2.4", "fused-c-attn-sdpa")
class AttnFused(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.attn_pdrop

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class KarpathyHead(nn.Module):
    """The lecture's head: three bias-free layers, its own mask and dropout on the weights."""

    def __init__(self, config, head_size):
        super().__init__()
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(config.block_size, config.block_size)))
        self.dropout = nn.Dropout(config.attn_pdrop)

    def forward(self, x):
        B, T, C = x.shape
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = self.dropout(F.softmax(wei, dim=-1))
        return wei @ self.value(x)


@V.correct("2.4", "list-of-heads")
class AttnHeads(nn.Module):
    def __init__(self, config):
        super().__init__()
        head_size = config.n_embd // config.n_head
        self.heads = nn.ModuleList([KarpathyHead(config, head_size) for _ in range(config.n_head)])
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        return self.dropout(self.proj(out))


@V.correct("2.4", "einsum-other-names")
class AttnEinsum(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)
        self.out_proj = nn.Linear(C, C)
        self.weights_dropout = nn.Dropout(config.attn_pdrop)
        self.output_dropout = nn.Dropout(config.resid_pdrop)
        self.h = config.n_head

    def forward(self, x):
        B, T, C = x.shape
        d = C // self.h
        q = self.q_proj(x).view(B, T, self.h, d)
        k = self.k_proj(x).view(B, T, self.h, d)
        v = self.v_proj(x).view(B, T, self.h, d)
        att = torch.einsum("bthd,bshd->bhts", q, k) / d**0.5
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))  # computed, no buffer
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        y = torch.einsum("bhts,bshd->bthd", self.weights_dropout(att), v).reshape(B, T, C)
        return self.output_dropout(self.out_proj(y))


@V.correct("2.4", "bool-buffer-not-persistent")
class AttnBoolBuffer(_Attn):
    def __init__(self, config):
        super().__init__(config)
        bs = config.block_size
        del self.mask
        allowed = torch.ones(bs, bs, dtype=torch.bool).tril()
        self.register_buffer("allowed", allowed, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        att = att.masked_fill(~self.allowed[:T, :T], float("-inf"))
        y = self.attn_drop(F.softmax(att, dim=-1)) @ v
        return self.resid_drop(self.proj(y.transpose(1, 2).contiguous().view(B, T, C)))


@V.correct("2.4", "functional-dropout-additive-mask")
class AttnFunctional(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.key, self.query, self.value = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)
        self.proj = nn.Linear(C, C)
        self.n_head = config.n_head
        self.attn_pdrop, self.resid_pdrop = config.attn_pdrop, config.resid_pdrop
        bs = config.block_size
        self.register_buffer("bias", torch.full((bs, bs), float("-inf")).triu(1))  # 0 where allowed

    def forward(self, x):
        B, T, C = x.shape
        nh = self.n_head
        q = self.query(x).unflatten(-1, (nh, C // nh)).transpose(1, 2)
        k = self.key(x).unflatten(-1, (nh, C // nh)).transpose(1, 2)
        v = self.value(x).unflatten(-1, (nh, C // nh)).transpose(1, 2)
        att = q @ k.transpose(-2, -1) * (C // nh) ** -0.5 + self.bias[:T, :T]
        att = F.dropout(F.softmax(att, dim=-1), self.attn_pdrop, self.training)
        y = (att @ v).transpose(1, 2).flatten(2)
        return F.dropout(self.proj(y), self.resid_pdrop, self.training)


@V.correct("2.4", "chunked-fused-bmm")
class AttnChunk(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.nh = config.n_head
        self.register_buffer("mask", torch.tril(torch.ones(config.block_size, config.block_size)))

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.nh
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        # fold the heads into the batch: (B * nh, T, hs)
        q, k, v = (t.view(B, T, self.nh, hs).transpose(1, 2).reshape(B * self.nh, T, hs) for t in (q, k, v))
        att = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(hs)
        att = att.masked_fill(self.mask[:T, :T] == 0, float("-inf"))
        y = torch.bmm(self.attn_drop(att.softmax(-1)), v)  # (B * nh, T, hs)
        y = y.view(B, self.nh, T, hs).transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


def _scores(self, q, k, T):
    att = (q @ k.transpose(-2, -1)) * k.size(-1) ** -0.5
    return att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))


def _merge(y, B, T, C):
    return y.transpose(1, 2).contiguous().view(B, T, C)


@V.mistake(
    "2.4",
    "dropout-before-softmax",
    ["before the softmax", "on the scores"],
    "attn_drop goes on the weights, after the softmax; on the scores it zeroes -inf and real scores alike.",
)
class AttnDropScores(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = F.softmax(self.attn_drop(_scores(self, q, k, T)), dim=-1)
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "heads-interleaved",
    W.HEADS_INTERLEAVED,
    "view(B, T, hs, nh) gives each head every nh-th channel: split as (B, T, nh, hs).",
)
class AttnInterleaved(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q = self.query(x).view(B, T, hs, nh).permute(0, 3, 1, 2)
        k = self.key(x).view(B, T, hs, nh).permute(0, 3, 1, 2)
        v = self.value(x).view(B, T, hs, nh).permute(0, 3, 1, 2)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        y = (att @ v).permute(0, 2, 3, 1).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


@V.mistake(
    "2.4",
    "single-full-width-head",
    ["single head", "one head", "n_head", "full width", "full-width"],
    "You run one head over all C channels: split q, k, v into config.n_head heads.",
)
class AttnOneHead(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)
        att = (q @ k.transpose(-2, -1)) * C**-0.5
        att = att.masked_fill(self.mask[0, :, :T, :T] == 0, float("-inf"))
        y = self.attn_drop(F.softmax(att, dim=-1)) @ v
        return self.resid_drop(self.proj(y))


@V.mistake("2.4", "filled-with-zero", W.FILL_ZERO, "The future filled with 0 keeps weight: use -inf.")
class AttnZeroFill(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)) * k.size(-1) ** -0.5
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, 0.0)
        att = self.attn_drop(F.softmax(att, dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake("2.4", "mask-inverted", W.MASK_INVERTED, "mask == 1 filled hides the past and keeps the future.")
class AttnInverted(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)) * k.size(-1) ** -0.5
        att = att.masked_fill(self.mask[:, :, :T, :T] == 1, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "heads-merged-without-transpose",
    W.HEADS_MERGED,
    "(B, nh, T, hs) viewed straight as (B, T, C) mixes positions and heads: transpose(1, 2) first.",
)
class AttnNoTranspose(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        y = (att @ v).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


@V.mistake("2.4", "no-projection", W.NO_PROJ, "The heads' output is never projected: apply self.proj.")
class AttnNoProj(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.resid_drop(_merge(att @ v, B, T, C))


@V.mistake(
    "2.4",
    "no-residual-dropout",
    ["resid", "dropout on the output", "output dropout", "on the output"],
    "resid_drop is never applied to the output of the projection.",
)
class AttnNoResidDrop(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.proj(_merge(att @ v, B, T, C))


@V.mistake(
    "2.4",
    "no-attention-dropout",
    ["attn_drop", "attn_pdrop", "on the weights", "attention dropout", "attention weights"],
    "attn_drop is never applied to the attention weights.",
)
class AttnNoAttnDrop(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = F.softmax(_scores(self, q, k, T), dim=-1)
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "dropout-rates-swapped",
    ["swap", "attn_pdrop", "resid_pdrop", "rate"],
    "attn_drop uses resid_pdrop and resid_drop uses attn_pdrop: swap them back.",
)
class AttnRatesSwapped(_Attn):
    def __init__(self, config):
        super().__init__(config)
        self.attn_drop = nn.Dropout(config.resid_pdrop)
        self.resid_drop = nn.Dropout(config.attn_pdrop)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "dropout-in-eval",
    W.EVAL_DROPOUT,
    "F.dropout(..., training=True) drops in eval mode too: pass self.training.",
)
class AttnDropEval(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = F.dropout(F.softmax(_scores(self, q, k, T), dim=-1), self.attn_drop.p, training=True)
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake("2.4", "no-scale", W.NO_SCALE, "The scores are not scaled by hs ** -0.5.")
class AttnNoScale(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)).masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake("2.4", "scale-by-n-embd", W.SCALE_BY_N_EMBD, "The scale is head_size ** -0.5, not C ** -0.5.")
class AttnScaleC(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C)
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "scale-by-n-head",
    ["n_head", "head_size"],
    "You scale by sqrt(n_head); the scale is 1 / sqrt(head_size).",
)
class AttnScaleNh(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.n_head)
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake("2.4", "softmax-over-queries", W.SOFTMAX_AXIS, "The softmax runs over the keys, dim=-1.")
class AttnAxis(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-2))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "mask-not-sliced",
    W.MASK_NOT_SLICED,
    "The mask must be sliced to [:, :, :T, :T] for inputs shorter than block_size.",
)
class AttnFullMask(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)) * k.size(-1) ** -0.5
        att = att.masked_fill(self.mask == 0, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "keys-queries-swapped",
    W.KEYS_QUERIES_SWAPPED,
    "k @ q^T: the scores are q @ k^T, one row per query.",
)
class AttnSwapped(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, k, q, T), dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake("2.4", "value-from-key-layer", ["value"], "v comes from self.key: use self.value.")
class AttnVFromK(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, _ = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.resid_drop(self.proj(_merge(att @ k, B, T, C)))


@V.mistake(
    "2.4",
    "returns-output-and-weights",
    W.TUPLE,
    "forward returns (y, att); the exercise's layer returns y only.",
)
class AttnTuple(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C))), att


@V.mistake(
    "2.4",
    "returns-weights",
    ["weights", "instead of the output", "values"],
    "You return the attention weights (B, nh, T, T); the output is proj(att @ v).",
)
class AttnWeights(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        return self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))


@V.mistake(
    "2.4",
    "dropout-after-projection-order",
    ["after the proj", "before the proj", "after proj", "before proj", "order"],
    "resid_drop goes after the projection, not before it.",
)
class AttnDropBeforeProj(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.proj(self.resid_drop(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "residual-inside",
    ["residual", "x +", "adds x", "adds the input"],
    "The attention layer adds its input back (x + ...); the residual belongs in the block, not here.",
)
class AttnResidual(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return x + self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake("2.4", "in-place-on-x", W.IN_PLACE, "x += ... changes the caller's tensor (and adds a residual).")
class AttnInPlace(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        x += self.resid_drop(self.proj(_merge(att @ v, B, T, C)))
        return x


@V.mistake(
    "2.4",
    "hard-coded-n-head",
    ["n_head", "config"],
    "n_head = 4 is fixed: read config.n_head.",
)
class AttnFourHeads(_Attn):
    def __init__(self, config):
        super().__init__(config)
        self.n_head = 4

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.correct("2.4", "qkv-without-bias")
class AttnNoBiasQKV(_Attn):
    def __init__(self, config):
        super().__init__(config)
        C = config.n_embd
        self.query = nn.Linear(C, C, bias=False)  # like the lecture's heads: no bias needed
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "sdpa-without-dropout",
    ["attn_drop", "attn_pdrop", "dropout_p", "on the weights", "attention dropout", "attention weights"],
    "scaled_dot_product_attention without dropout_p never drops the weights in training.",
)
class AttnSdpaNoDrop(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.resid_drop(self.proj(_merge(y, B, T, C)))


@V.mistake(
    "2.4",
    "sdpa-dropout-in-eval",
    W.EVAL_DROPOUT,
    "dropout_p=attn_pdrop in eval mode too: pass 0.0 unless self.training.",
)
class AttnSdpaEvalDrop(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p, is_causal=True)
        return self.resid_drop(self.proj(_merge(y, B, T, C)))


@V.mistake(
    "2.4",
    "sdpa-not-causal",
    W.NO_MASK,
    "scaled_dot_product_attention without is_causal=True lets every position see the future.",
)
class AttnSdpaNotCausal(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        p = self.attn_drop.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.resid_drop(self.proj(_merge(y, B, T, C)))


@V.mistake(
    "2.4",
    "view-without-contiguous",
    ["contiguous", "reshape"],
    "view after transpose needs .contiguous() (or use reshape).",
)
class AttnNoContiguous(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        y = (att @ v).transpose(1, 2).view(B, T, C)
        return self.resid_drop(self.proj(y))


@V.mistake(
    "2.4",
    "dropout-on-values",
    ["on the values", "value", "on the weights", "after the softmax"],
    "attn_drop goes on the attention weights, not on the values.",
)
class AttnDropValues(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = F.softmax(_scores(self, q, k, T), dim=-1)
        return self.resid_drop(self.proj(_merge(att @ self.attn_drop(v), B, T, C)))


@V.mistake(
    "2.4",
    "dropout-on-input",
    ["input", "on x"],
    "Dropout on the input x: the layer's dropouts go on the weights and on the output.",
)
class AttnDropInput(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.attn_drop(x))
        att = F.softmax(_scores(self, q, k, T), dim=-1)
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "diagonal-masked",
    W.ROW_FULLY_MASKED,
    "The mask hides the diagonal too: position 0 sees nothing and its row is NaN.",
)
class AttnDiagMasked(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)) * k.size(-1) ** -0.5
        strict = torch.tril(torch.ones(T, T), diagonal=-1)
        att = self.attn_drop(F.softmax(att.masked_fill(strict == 0, float("-inf")), dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "scale-after-softmax",
    W.SCALE_AFTER_SOFTMAX,
    "The scale goes on the scores before the softmax.",
)
class AttnScaleAfter(_Attn):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = (q @ k.transpose(-2, -1)).masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1) * k.size(-1) ** -0.5)
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))


@V.mistake(
    "2.4",
    "mask-as-parameter",
    ["buffer", "parameter"],
    "The mask is an nn.Parameter: it would be trained. Register it as a buffer.",
)
class AttnMaskParam(_Attn):
    def __init__(self, config):
        super().__init__(config)
        bs = config.block_size
        del self.mask
        self.mask = nn.Parameter(torch.tril(torch.ones(bs, bs)).view(1, 1, bs, bs))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        att = self.attn_drop(F.softmax(_scores(self, q, k, T), dim=-1))
        return self.resid_drop(self.proj(_merge(att @ v, B, T, C)))
