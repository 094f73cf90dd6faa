"""Lesson 01, the embedding stem: one_hot_embedding (1.1), Embeddings (1.2), position_similarity (1.3)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.variants import Lesson

V = Lesson()

# ---------------------------------------------------------------- 1.1 one_hot_embedding


@V.correct("1.1", "to-weight-dtype")
def one_hot_dtype(idx, weight):
    return F.one_hot(idx, weight.size(0)).to(weight.dtype) @ weight


@V.correct("1.1", "einsum")
def one_hot_einsum(idx, weight):
    oh = F.one_hot(idx, num_classes=weight.shape[0]).float()
    return torch.einsum("btv,vc->btc", oh, weight)


@V.correct("1.1", "scatter")
def one_hot_scatter(idx, weight):
    V, C = weight.shape
    oh = torch.zeros(*idx.shape, V)
    oh.scatter_(-1, idx.unsqueeze(-1), 1.0)  # a new tensor of ours: in place is fine here
    return oh @ weight


@V.correct("1.1", "eye-rows")
def one_hot_eye(idx, weight):
    eye = torch.eye(weight.shape[0], dtype=weight.dtype)
    return torch.matmul(eye[idx], weight)


@V.correct("1.1", "broadcast-and-sum")
def one_hot_broadcast(idx, weight):
    oh = F.one_hot(idx, weight.shape[0]).float()  # (B, T, V)
    return (oh.unsqueeze(-1) * weight).sum(dim=-2)  # (B, T, V, C) summed over V


@V.mistake(
    "1.1",
    "num-classes-missing",
    ["num_classes", "weight.shape[0]", "V columns", "vocabulary size", "max(idx) + 1", "largest id"],
    "F.one_hot without num_classes makes only max(idx) + 1 columns: pass num_classes=weight.shape[0].",
)
def one_hot_no_classes(idx, weight):
    return F.one_hot(idx).float() @ weight


@V.mistake(
    "1.1",
    "long-one-hot",
    ["float", "dtype", "long"],
    "F.one_hot gives a long tensor; convert it to float before multiplying by the weights.",
)
def one_hot_long(idx, weight):
    return F.one_hot(idx, weight.shape[0]) @ weight


@V.mistake(
    "1.1",
    "weight-detached",
    ["gradient", "autograd", "detach"],
    "weight.detach() cuts the table out of the graph: the gradient never reaches it.",
)
def one_hot_detached(idx, weight):
    return F.one_hot(idx, weight.shape[0]).float() @ weight.detach()


@V.mistake(
    "1.1",
    "no-grad",
    ["gradient", "autograd", "no_grad"],
    "Under torch.no_grad() the table gets no gradient: an embedding must learn.",
)
def one_hot_no_grad(idx, weight):
    with torch.no_grad():
        return F.one_hot(idx, weight.shape[0]).float() @ weight


@V.mistake(
    "1.1",
    "num-classes-from-columns",
    ["num_classes", "weight.shape[0]", "rows", "V ="],
    "num_classes must be the number of rows of weight (V), not its number of columns (C).",
)
def one_hot_columns(idx, weight):
    return F.one_hot(idx, weight.shape[1]).float() @ weight


@V.mistake(
    "1.1",
    "one-hot-returned",
    ["one-hot", "one_hot", "multiply", "@ weight", "matrix product"],
    "You return the one-hot vectors themselves: multiply them by the table.",
)
def one_hot_only(idx, weight):
    return F.one_hot(idx, weight.shape[0]).float()


@V.mistake(
    "1.1",
    "elementwise-product",
    ["@", "matrix product", "matmul", "elementwise", "element-wise"],
    "`*` multiplies elementwise: the lookup is the matrix product one_hot @ weight.",
)
def one_hot_mul(idx, weight):
    return F.one_hot(idx, weight.shape[0]).float() * weight


@V.mistake(
    "1.1",
    "weight-transposed",
    ["transpose", ".T", "weight.t"],
    "weight is already (V, C): multiply by weight, not weight.T.",
)
def one_hot_transposed(idx, weight):
    return F.one_hot(idx, weight.shape[0]).float() @ weight.T


# ---------------------------------------------------------------- 1.2 Embeddings


@V.correct("1.2", "position-embedding-table")
class EmbPosTable(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)  # (T,)
        return self.drop(self.tok_emb(idx) + self.pos_emb(pos))


@V.correct("1.2", "nanogpt-names-functional-dropout")
class EmbNano(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.p = config.embd_pdrop

    def forward(self, idx):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long).unsqueeze(0)  # (1, t)
        x = self.wte(idx) + self.wpe(pos)
        return F.dropout(x, self.p, self.training)


@V.correct("1.2", "two-d-parameter-randn")
class EmbParam2d(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.token_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_table = nn.Parameter(torch.randn(config.block_size, config.n_embd) * 0.02)
        self.dropout = nn.Dropout(p=config.embd_pdrop)

    def forward(self, idx):
        T = idx.shape[-1]
        x = self.token_table(idx) + self.position_table[:T]  # (B, T, C) + (T, C)
        return self.dropout(x)


@V.correct("1.2", "expand-and-index")
class EmbExpand(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        B, T = idx.size()
        pos = self.pos[:, :T].expand(B, T, -1)
        out = self.tok(idx)
        out = out + pos
        return self.drop(out)


class _Emb(nn.Module):
    """The right tables; the mistakes below change forward or one line of __init__."""

    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)


@V.mistake("1.2", "no-dropout", ["dropout"], "There is no dropout: apply nn.Dropout(embd_pdrop) to the sum.")
class EmbNoDropout(_Emb):
    def forward(self, idx):
        T = idx.size(1)
        return self.tok_emb(idx) + self.pos_emb[:, :T]


@V.mistake(
    "1.2",
    "dropout-in-eval",
    ["eval"],
    "F.dropout(..., training=True) drops in eval mode too: use self.training, or an nn.Dropout module.",
)
class EmbDropoutAlways(_Emb):
    def forward(self, idx):
        T = idx.size(1)
        return F.dropout(self.tok_emb(idx) + self.pos_emb[:, :T], self.drop.p, training=True)


@V.mistake(
    "1.2",
    "dropout-on-tokens-only",
    ["sum", "token embedding only", "before adding", "before the positions"],
    "Dropout goes on the sum of tokens and positions; yours drops only the token vectors.",
)
class EmbDropTok(_Emb):
    def forward(self, idx):
        T = idx.size(1)
        return self.drop(self.tok_emb(idx)) + self.pos_emb[:, :T]


@V.mistake(
    "1.2",
    "wrong-dropout-rate",
    ["embd_pdrop", "rate"],
    "The stem's dropout rate is config.embd_pdrop, not resid_pdrop.",
)
class EmbResidRate(_Emb):
    def __init__(self, config):
        super().__init__(config)
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)])


@V.mistake(
    "1.2",
    "hard-coded-dropout-rate",
    ["embd_pdrop", "rate"],
    "Dropout(0.1) ignores the config: use config.embd_pdrop.",
)
class EmbRateConst(_Emb):
    def __init__(self, config):
        super().__init__(config)
        self.drop = nn.Dropout(0.1)

    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)])


@V.mistake(
    "1.2",
    "positions-by-token-id",
    ["token id", "by id", "ids instead", "arange", "position index", "instead of the positions"],
    "You look the position table up with the token ids: positions are torch.arange(T).",
)
class EmbPosById(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.block_size = config.block_size

    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb(idx % self.block_size))


@V.mistake(
    "1.2",
    "positions-per-row",
    ["per row", "each row", "row of the batch", "arange(t)", "batch index", "same for every row"],
    "You give each row of the batch one position (arange(B)); every row uses positions 0..T-1.",
)
class EmbPosPerRow(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        B, T = idx.shape
        pos = self.pos_emb(torch.arange(B)).unsqueeze(1)  # (B, 1, C): one position per row
        return self.drop(self.tok_emb(idx) + pos)


@V.mistake(
    "1.2",
    "positions-not-sliced",
    ["first t", ":t", "slice", "shorter", "t < block_size", "t = "],
    "You add all block_size positions; a sequence of length T uses the first T: pos_emb[:, :T].",
)
class EmbNoSlice(_Emb):
    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb)


@V.mistake(
    "1.2",
    "last-t-positions",
    ["first t", "last t", "-t:", "first positions", "end of the table", ("first", "position rows")],
    "pos_emb[:, -T:] takes the last T positions: a sequence starts at position 0.",
)
class EmbLastPositions(_Emb):
    def forward(self, idx):
        T = idx.size(1)
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, -T:])


@V.mistake(
    "1.2",
    "positions-off-by-one",
    ["off by one", "start at 0", "position 0", "shifted", "first t"],
    "pos_emb[:, 1:T + 1] skips position 0: the first token stands at position 0.",
)
class EmbPosFromOne(_Emb):
    def forward(self, idx):
        T = idx.size(1)
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, 1 : T + 1])


@V.mistake(
    "1.2",
    "position-table-vocab-rows",
    ["block_size", "rows"],
    "The position table has one row per position, block_size rows, not vocab_size.",
)
class EmbPosVocabRows(_Emb):
    def __init__(self, config):
        super().__init__(config)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.vocab_size, config.n_embd))

    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)])


@V.mistake(
    "1.2",
    "concatenated",
    ["concat", "cat(", "add them", "added", "instead of adding"],
    "You concatenate the two vectors (2C wide); the stem adds them.",
)
class EmbConcat(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd // 2)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd // 2))
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        B, T = idx.shape
        pos = self.pos_emb[:, :T].expand(B, T, -1)
        return self.drop(torch.cat([self.tok_emb(idx), pos], dim=-1))


@V.mistake(
    "1.2",
    "multiplied",
    ["multipl", "product", "instead of adding", "times"],
    "You multiply the token and position vectors; they are added.",
)
class EmbMul(_Emb):
    def forward(self, idx):
        return self.drop(self.tok_emb(idx) * self.pos_emb[:, : idx.size(1)])


@V.mistake(
    "1.2",
    "position-table-not-a-parameter",
    ["nn.parameter", "not a parameter", "parameter", "learn", "gradient"],
    "A plain tensor attribute is not learned (and does not move with .to()): wrap it in nn.Parameter.",
)
class EmbPosTensor(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = torch.zeros(1, config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)])


@V.mistake(
    "1.2",
    "position-table-as-buffer",
    ["buffer", "parameter", "learn", "gradient"],
    "register_buffer makes the position table fixed: it must be a learned nn.Parameter.",
)
class EmbPosBuffer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.register_buffer("pos_emb", torch.randn(1, config.block_size, config.n_embd) * 0.02)
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)])


@V.mistake(
    "1.2",
    "positions-detached",
    ["gradient", "detach"],
    "pos_emb.detach() stops the position table from learning.",
)
class EmbPosDetached(_Emb):
    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)].detach())


@V.mistake(
    "1.2",
    "returns-tuple",
    ["tuple", "comma"],
    "A trailing comma after return makes a tuple: return the tensor itself.",
)
class EmbTuple(_Emb):
    def forward(self, idx):
        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)])
        return (x,)


@V.mistake(
    "1.2",
    "returns-none",
    ["None", "return"],
    "forward computes the sum but does not return it.",
)
class EmbNoReturn(_Emb):
    def forward(self, idx):
        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)])  # noqa: F841 - the mistake


@V.mistake(
    "1.2",
    "dropout-twice",
    ["twice", "rate", "two dropout", "more than once"],
    "Dropout applied twice drops about 1 - (1 - p)^2 of the values: apply it once, on the sum.",
)
class EmbDropTwice(_Emb):
    def forward(self, idx):
        x = self.drop(self.tok_emb(idx)) + self.pos_emb[:, : idx.size(1)]
        return self.drop(x)


# ---------------------------------------------------------------- 1.3 position_similarity


@V.correct("1.3", "normalize")
def sim_normalize(pos):
    unit = F.normalize(pos, dim=-1)
    return unit @ unit.T


@V.correct("1.3", "cosine-broadcast")
def sim_cosine(pos):
    return F.cosine_similarity(pos.unsqueeze(1), pos.unsqueeze(0), dim=-1)


@V.correct("1.3", "outer-norms")
def sim_outer(pos):
    norms = pos.norm(dim=1)  # (T,)
    return (pos @ pos.t()) / (norms[:, None] * norms[None, :])


@V.correct("1.3", "double-loop")
def sim_loops(pos):
    T = pos.shape[0]
    out = torch.empty(T, T)
    for i in range(T):
        for j in range(T):
            a, b = pos[i], pos[j]
            out[i, j] = torch.dot(a, b) / (torch.sqrt((a * a).sum()) * torch.sqrt((b * b).sum()))
    return out


@V.mistake(
    "1.3",
    "not-normalised",
    ["normalis", "normaliz", "unit length", "dot product", "lengths"],
    "pos @ pos.T is the dot product: divide each row by its length first.",
)
def sim_dot(pos):
    return pos @ pos.T


@V.mistake(
    "1.3",
    "columns-normalised",
    ["column"],
    "You normalise the columns (dim=0); each row (position) must have length 1.",
)
def sim_columns(pos):
    unit = pos / pos.norm(dim=0, keepdim=True)
    return unit @ unit.T


@V.mistake(
    "1.3",
    "channel-similarity",
    ["(c, c)", "channels", "unit.t @ unit", "transpose"],
    "unit.T @ unit compares the channels, (C, C); the positions are the rows: unit @ unit.T.",
)
def sim_channels(pos):
    unit = pos / pos.norm(dim=-1, keepdim=True)
    return unit.T @ unit


@V.mistake(
    "1.3",
    "one-side-normalised",
    ["both", "one side", "only one"],
    "Only one side is normalised: both rows in each pair must be divided by their lengths.",
)
def sim_one_side(pos):
    unit = pos / pos.norm(dim=-1, keepdim=True)
    return unit @ pos.T


@V.mistake(
    "1.3",
    "in-place",
    ["in place", "in-place", "changed", "modif"],
    "pos /= ... changes the caller's tensor: compute a new one.",
)
def sim_inplace(pos):
    pos /= pos.norm(dim=-1, keepdim=True)
    return pos @ pos.T


@V.mistake(
    "1.3",
    "squared-norm",
    ["squared", "sqrt", "square root"],
    "You divide by the squared length: the length is the square root of the sum of squares.",
)
def sim_squared(pos):
    unit = pos / (pos**2).sum(dim=-1, keepdim=True)
    return unit @ unit.T


@V.mistake(
    "1.3",
    "distance",
    ["distance", "cdist"],
    "torch.cdist gives distances, not cosine similarities.",
)
def sim_distance(pos):
    return torch.cdist(pos, pos)


@V.mistake(
    "1.3",
    "diagonal-only",
    ["(t,)", "every pair", "pairs", "(t, t)", "shape"],
    "F.cosine_similarity(pos, pos) compares each row with itself only: you need every pair, (T, T).",
)
def sim_diag(pos):
    return F.cosine_similarity(pos, pos, dim=-1)
