"""Lesson 07, attention maps: attention_weights_by_hand (7.1), previous_token_score (7.2),
induction_score (7.3)."""

import math

import torch
import torch.nn.functional as F

from tests.variants import Lesson
from tests.variants import words as W

V = Lesson()

# ---------------------------------------------------------------- 7.1 attention_weights_by_hand


@V.correct("7.1", "einsum")
def weights_einsum(attn, x):
    T, C = x.shape
    nh = attn.n_head
    hs = C // nh
    q = attn.query(x).reshape(T, nh, hs)
    k = attn.key(x).reshape(T, nh, hs)
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hs)
    mask = torch.tril(torch.ones(T, T)) == 0
    return F.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)


@V.correct("7.1", "layer-mask-buffer")
def weights_buffer(attn, x):
    T, C = x.shape
    hs = C // attn.n_head
    q = attn.query(x).view(T, attn.n_head, hs).permute(1, 0, 2)
    k = attn.key(x).view(T, attn.n_head, hs).permute(1, 0, 2)
    att = q @ k.mT * hs**-0.5
    allowed = attn.mask[0, 0, :T, :T].bool()  # the layer's own causal mask
    return att.masked_fill(~allowed, float("-inf")).softmax(-1)


@V.correct("7.1", "loop-over-heads")
def weights_loop(attn, x):
    T, C = x.shape
    hs = C // attn.n_head
    q_all, k_all = attn.query(x), attn.key(x)
    maps = []
    for h in range(attn.n_head):
        q = q_all[:, h * hs : (h + 1) * hs]
        k = k_all[:, h * hs : (h + 1) * hs]
        s = q @ k.T / hs**0.5
        s = s + torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        maps.append(torch.softmax(s, dim=1))
    return torch.stack(maps)


@V.correct("7.1", "weights-by-hand-with-bias")
def weights_manual_linear(attn, x):
    T, C = x.shape
    nh = attn.n_head
    hs = C // nh
    q = (x @ attn.query.weight.T + attn.query.bias).view(T, nh, hs).transpose(0, 1)
    k = (x @ attn.key.weight.T + attn.key.bias).view(T, nh, hs).transpose(0, 1)
    s = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(hs)
    future = torch.arange(T)[None, :] > torch.arange(T)[:, None]
    return s.masked_fill(future, float("-inf")).softmax(dim=-1)


def _heads(t, nh):
    T, C = t.shape
    return t.view(T, nh, C // nh).transpose(0, 1)  # (nh, T, hs)


def _masked_softmax(s, fill=float("-inf")):
    T = s.size(-1)
    return F.softmax(s.masked_fill(torch.tril(torch.ones(T, T)) == 0, fill), dim=-1)


@V.mistake("7.1", "no-scale", W.NO_SCALE, "The scores are not divided by sqrt(head_size).")
def weights_no_scale(attn, x):
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    return _masked_softmax(q @ k.transpose(-2, -1))


@V.mistake("7.1", "scale-by-n-embd", W.SCALE_BY_N_EMBD, "Divide by sqrt(head_size), not sqrt(C).")
def weights_scale_c(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    return _masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(C))


@V.mistake("7.1", "softmax-over-queries", W.SOFTMAX_AXIS, "The softmax runs over the keys (dim=-1).")
def weights_axis(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    s = q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head)
    return F.softmax(s.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf")), dim=-2)


@V.mistake(
    "7.1",
    "heads-interleaved",
    W.HEADS_INTERLEAVED + ("split the wrong way", "wrong way"),
    "view(T, hs, nh) gives head h every nh-th channel; head h owns channels h*hs .. (h+1)*hs - 1.",
)
def weights_interleaved(attn, x):
    T, C = x.shape
    nh = attn.n_head
    hs = C // nh
    q = attn.query(x).view(T, hs, nh).permute(2, 0, 1)
    k = attn.key(x).view(T, hs, nh).permute(2, 0, 1)
    return _masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(hs))


@V.mistake(
    "7.1",
    "keys-queries-swapped",
    W.KEYS_QUERIES_SWAPPED,
    "k @ q^T: row t must hold query t's scores, q @ k^T.",
)
def weights_swapped(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    return _masked_softmax(k @ q.transpose(-2, -1) / math.sqrt(C // attn.n_head))


@V.mistake("7.1", "no-mask", W.NO_MASK, "The future is not masked.")
def weights_no_mask(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    return F.softmax(q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head), dim=-1)


@V.mistake("7.1", "mask-flipped", W.MASK_INVERTED, "triu masks the past: the future is above the diagonal.")
def weights_flipped(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    s = q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head)
    past = torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)
    return F.softmax(s.masked_fill(past, float("-inf")), dim=-1)


@V.mistake("7.1", "filled-with-zero", W.FILL_ZERO, "Filled with 0, the future keeps weight.")
def weights_zero(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    return _masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head), fill=0.0)


@V.mistake(
    "7.1", "keys-from-value-layer", ["value", "key"], "k = attn.value(x): the keys come from attn.key."
)
def weights_value(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.value(x), attn.n_head)
    return _masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head))


@V.mistake(
    "7.1",
    "heads-averaged",
    ["shape", "(n_head, t, t)", "per head", "average", "each head"],
    "You average the heads into one (T, T) map: return one map per head, (n_head, T, T).",
)
def weights_mean(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    return _masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head)).mean(0)


@V.mistake(
    "7.1",
    "bias-left-out",
    ["bias"],
    "x @ weight.T leaves out the Linear's bias: call attn.query(x), or add attn.query.bias.",
)
def weights_no_bias(attn, x):
    T, C = x.shape
    q = _heads(x @ attn.query.weight.T, attn.n_head)
    k = _heads(x @ attn.key.weight.T, attn.n_head)
    return _masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head))


@V.mistake(
    "7.1",
    "weight-not-transposed",
    ["transpose", ".t", "weight.t", "(out, in)"],
    "x @ weight uses the Linear's weight untransposed: nn.Linear computes x @ weight.T + bias.",
)
def weights_untransposed(attn, x):
    T, C = x.shape
    q = _heads(x @ attn.query.weight + attn.query.bias, attn.n_head)
    k = _heads(x @ attn.key.weight + attn.key.bias, attn.n_head)
    return _masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head))


@V.mistake("7.1", "diagonal-masked", W.ROW_FULLY_MASKED, "triu(diagonal=0) masks each query's own key too.")
def weights_diag(attn, x):
    T, C = x.shape
    q, k = _heads(attn.query(x), attn.n_head), _heads(attn.key(x), attn.n_head)
    s = q @ k.transpose(-2, -1) / math.sqrt(C // attn.n_head)
    return F.softmax(s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool)), float("-inf")), dim=-1)


# ---------------------------------------------------------------- 7.2 previous_token_score


@V.correct("7.2", "loop")
def prev_loop(maps):
    T = maps.shape[-1]
    total = torch.zeros(maps.shape[:2])
    for t in range(1, T):
        total += maps[:, :, t, t - 1]
    return total / (T - 1)


@V.correct("7.2", "advanced-indexing")
def prev_index(maps):
    T = maps.size(-1)
    t = torch.arange(1, T)
    return maps[..., t, t - 1].mean(dim=-1)


@V.correct("7.2", "shifted-identity")
def prev_mask(maps):
    T = maps.size(-1)
    below = torch.diag(torch.ones(T - 1), diagonal=-1)  # 1 at (t, t - 1)
    return (maps * below).sum(dim=(-2, -1)) / (T - 1)


@V.mistake(
    "7.2",
    "main-diagonal",
    ["main diagonal", "itself", "offset 0", "self", "t, t]"],
    "The main diagonal is each query looking at itself; the previous token is one below it (offset -1).",
)
def prev_main(maps):
    return torch.diagonal(maps, dim1=-2, dim2=-1).mean(-1)


@V.mistake(
    "7.2",
    "offset-2",
    ["offset 2", "offset of 2", "t - 2", "two back", "offset -2", "two positions"],
    "offset=-2 is the token two back; the previous token is offset -1.",
)
def prev_two(maps):
    return torch.diagonal(maps, offset=-2, dim1=-2, dim2=-1).mean(-1)


@V.mistake(
    "7.2",
    "position-0-counted",
    ["position 0", "query 0", "t - 1", "divides by t", "counted"],
    "You divide by T: query 0 has no previous token and does not count, so divide by T - 1.",
)
def prev_by_T(maps):
    return torch.diagonal(maps, offset=-1, dim1=-2, dim2=-1).sum(-1) / maps.size(-1)


@V.mistake(
    "7.2",
    "diagonal-above",
    ["above", "t + 1", "offset 1", "offset +1", "future", "next"],
    "offset=+1 is the next token (always 0 after the mask): the previous token is offset -1.",
)
def prev_above(maps):
    return torch.diagonal(maps, offset=1, dim1=-2, dim2=-1).mean(-1)


@V.mistake(
    "7.2",
    "heads-averaged",
    ["shape", "(l, h)", "per head", "each head"],
    "You average over the heads too: return one score per layer and head, (L, H).",
)
def prev_mean_heads(maps):
    return torch.diagonal(maps, offset=-1, dim1=-2, dim2=-1).mean(dim=(-2, -1))


@V.mistake("7.2", "sum-not-mean", ["sum", "mean"], "The score is the mean over the queries, not the sum.")
def prev_sum(maps):
    return torch.diagonal(maps, offset=-1, dim1=-2, dim2=-1).sum(-1)


@V.mistake(
    "7.2",
    "wrong-dims",
    ["dim1", "dims", "last two", "axes", "layer and head"],
    "torch.diagonal's default dims are 0 and 1 (layers and heads): pass dim1=-2, dim2=-1.",
)
def prev_dims(maps):
    return torch.diagonal(maps, offset=-1).mean(-1)


# ---------------------------------------------------------------- 7.3 induction_score


@V.correct("7.3", "loop")
def ind_loop(maps, seq_len):
    T = maps.size(-1)
    vals = [maps[:, :, t, t - seq_len + 1] for t in range(seq_len, T)]
    return torch.stack(vals, dim=-1).mean(-1)


@V.correct("7.3", "advanced-indexing")
def ind_index(maps, seq_len):
    t = torch.arange(seq_len, 2 * seq_len)
    return maps[:, :, t, t - seq_len + 1].mean(dim=-1)


@V.correct("7.3", "diagonal-then-slice")
def ind_diag(maps, seq_len):
    d = maps.diagonal(offset=1 - seq_len, dim1=2, dim2=3)  # queries seq_len - 1 .. T - 1
    return d[:, :, -seq_len:].mean(-1)


@V.mistake(
    "7.3",
    "same-token",
    ["same token", "duplicate", "earlier copy", "the one after", "t - seq_len]", "token after"],
    "maps[t, t - seq_len] is the earlier copy of the same token; the induction head looks at the token after it.",
)
def ind_same(maps, seq_len):
    t = torch.arange(seq_len, 2 * seq_len)
    return maps[:, :, t, t - seq_len].mean(-1)


@V.mistake(
    "7.3",
    "off-by-one",
    ["off by one", "off-by-one", "+ 2", "one too far"],
    "t - seq_len + 2 is one past the token after the earlier copy.",
)
def ind_plus2(maps, seq_len):
    t = torch.arange(seq_len, 2 * seq_len - 1)
    return maps[:, :, t, t - seq_len + 2].mean(-1)


@V.mistake(
    "7.3",
    "first-repeat-counted",
    ["first repeat", "seq_len - 1", "first copy", "second repeat"],
    "The diagonal starts at query seq_len - 1, still in the first repeat: drop that query.",
)
def ind_first(maps, seq_len):
    return torch.diagonal(maps, offset=-(seq_len - 1), dim1=-2, dim2=-1).mean(-1)


@V.mistake(
    "7.3",
    "own-seq-len",
    ["seq_len", "argument"],
    "seq_len = 12 is the notebook's prompt: use the seq_len argument.",
)
def ind_own(maps, seq_len):
    seq_len = 12  # the notebook's prompt
    t = torch.arange(seq_len, maps.size(-1))
    return maps[:, :, t, t - seq_len + 1].mean(-1)


@V.mistake(
    "7.3",
    "previous-token-diagonal",
    ["previous", "t - 1", "offset -1"],
    "maps[t, t - 1] is the previous-token score; induction looks seq_len - 1 back.",
)
def ind_prev(maps, seq_len):
    t = torch.arange(seq_len, 2 * seq_len)
    return maps[:, :, t, t - 1].mean(-1)


@V.mistake(
    "7.3",
    "all-queries",
    ["first repeat", "second repeat", "all queries", "every query"],
    "The mean runs over the queries of the second repeat only, t = seq_len .. T - 1.",
)
def ind_all(maps, seq_len):
    d = torch.diagonal(maps, offset=-(seq_len - 1), dim1=-2, dim2=-1)
    return d.sum(-1) / maps.size(-1)
