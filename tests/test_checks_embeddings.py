"""Lesson 01's checks: correct stems, lookups and similarity matrices pass; each classic mistake is diagnosed."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.checks import CheckFailure, NotDoneYet
from gptlib.checks.embeddings import (
    check_one_hot_embedding,
    check_position_similarity,
    check_token_position_embedding,
)
from gptlib.config import GPTConfig
from gptlib.embeddings import Embeddings as GptlibEmbeddings

# --- one_hot_embedding ------------------------------------------------------------------------


def one_hot_matmul(idx, weight):
    return F.one_hot(idx, num_classes=weight.shape[0]).float() @ weight


def one_hot_einsum(idx, weight):
    oh = F.one_hot(idx, weight.size(0)).to(weight.dtype)
    return torch.einsum("btv,vc->btc", oh, weight)


def one_hot_eye(idx, weight):
    return torch.eye(weight.shape[0])[idx] @ weight


@pytest.mark.parametrize("fn", [one_hot_matmul, one_hot_einsum, one_hot_eye])
def test_correct_one_hot_pass(fn, capsys):
    threads = torch.get_num_threads()
    check_one_hot_embedding(fn)
    assert torch.get_num_threads() == threads
    assert "passed" in capsys.readouterr().out


def one_hot_long(idx, weight):
    return F.one_hot(idx, weight.shape[0]) @ weight


def one_hot_no_classes(idx, weight):
    return F.one_hot(idx).float() @ weight


def one_hot_transposed(idx, weight):
    return F.one_hot(idx, weight.shape[0]).float() @ weight.T


def one_hot_only(idx, weight):
    return F.one_hot(idx, weight.shape[0]).float()


def one_hot_detached(idx, weight):
    return F.one_hot(idx, weight.shape[0]).float() @ weight.detach()


def one_hot_shifted(idx, weight):
    return F.one_hot((idx + 1) % weight.shape[0], weight.shape[0]).float() @ weight


def one_hot_none(idx, weight):
    F.one_hot(idx, weight.shape[0]).float() @ weight


def one_hot_stub(idx, weight):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (one_hot_long, "not-float"),
        (one_hot_no_classes, "num-classes"),
        (one_hot_transposed, "transposed"),
        (one_hot_only, "returned-one-hot"),
        (one_hot_detached, "no-grad"),
        (one_hot_shifted, "wrong-values"),
        (one_hot_none, "returned-none"),
    ],
)
def test_one_hot_mistakes_are_diagnosed(fn, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_one_hot_embedding(fn)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_one_hot_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_one_hot_embedding(one_hot_stub)


# --- token_position_embedding -----------------------------------------------------------------


class ParamStem(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        B, T = idx.shape
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, :T, :])


class EmbeddingStem(nn.Module):
    """Positions as an nn.Embedding, other names, F.dropout with the training flag."""

    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.p = config.embd_pdrop

    def forward(self, idx):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)[None]
        return F.dropout(x, self.p, training=self.training)


class Param2dStem(nn.Module):
    """A (block_size, C) parameter, sliced with narrow; odd names."""

    def __init__(self, config):
        super().__init__()
        self.table = nn.Parameter(torch.randn(config.vocab_size, config.n_embd))
        self.where = nn.Parameter(torch.randn(config.block_size, config.n_embd) * 0.02)
        self.dropout = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        T = idx.shape[-1]
        return self.dropout(self.table[idx] + self.where.narrow(0, 0, T))


class PositionIdsBuffer(nn.Module):
    """Hugging Face's way: position ids in a buffer, expanded over the batch; dropout on the sum."""

    def __init__(self, config):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.register_buffer("position_ids", torch.arange(config.block_size).unsqueeze(0))
        self.dropout = nn.Dropout(config.embd_pdrop)

    def forward(self, input_ids):
        B, T = input_ids.shape
        positions = self.position_ids[:, :T].expand(B, T)
        return self.dropout(self.token_embedding(input_ids) + self.position_embedding(positions))


class OneHotStem(nn.Module):
    """Lookups written as one-hot products (exercise 1.1), positions by weight slice."""

    def __init__(self, config):
        super().__init__()
        self.tok = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        one_hot = F.one_hot(idx, self.tok.num_embeddings).to(self.tok.weight.dtype)
        return self.drop(one_hot @ self.tok.weight + self.pos.weight[: idx.size(1)])


@pytest.mark.parametrize(
    "cls", [ParamStem, EmbeddingStem, Param2dStem, GptlibEmbeddings, PositionIdsBuffer, OneHotStem]
)
def test_correct_stems_pass(cls, capsys):
    state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    check_token_position_embedding(cls)
    assert torch.get_num_threads() == threads
    assert "passed" in capsys.readouterr().out
    assert torch.equal(torch.random.get_rng_state(), state)


class StemStub(nn.Module):
    def __init__(self, config):
        super().__init__()
        raise NotImplementedError()


class ForwardStub(ParamStem):
    def forward(self, idx):
        raise NotImplementedError()


class NoPositions(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)

    def forward(self, idx):
        return self.drop(self.tok_emb(idx))


class BufferPositions(NoPositions):
    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("pos", torch.randn(1, config.block_size, config.n_embd))

    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos[:, : idx.size(1)])


class PositionsNotAdded(ParamStem):
    def forward(self, idx):
        return self.drop(self.tok_emb(idx))


class TokensNotAdded(ParamStem):
    def forward(self, idx):
        T = idx.size(1)
        return self.drop(self.pos_emb[:, :T].expand(idx.size(0), T, -1))


class Scaled(ParamStem):
    def forward(self, idx):
        T = idx.size(1)
        return self.drop(self.tok_emb(idx) * self.tok_emb.embedding_dim**0.5 + self.pos_emb[:, :T])


class Concatenated(ParamStem):
    def forward(self, idx):
        B, T = idx.shape
        return self.drop(torch.cat([self.tok_emb(idx), self.pos_emb[:, :T].expand(B, T, -1)], dim=-1))


class NotSliced(ParamStem):
    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb)


class NotSlicedEmbedding(EmbeddingStem):
    def forward(self, idx):
        pos = torch.arange(self.wpe.num_embeddings)
        return self.wte(idx) + self.wpe(pos)


class ByTokenId(EmbeddingStem):
    def forward(self, idx):
        return F.dropout(self.wte(idx) + self.wpe(idx), self.p, self.training)


class BatchAsT(ParamStem):
    def forward(self, idx):
        T = idx.size(0)
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, :T, :])


class ByTokenIdModulo(EmbeddingStem):
    """The positions looked up by token id, kept in range with %: no crash, wrong rows."""

    def forward(self, idx):
        return F.dropout(self.wte(idx) + self.wpe(idx % self.wpe.num_embeddings), self.p, self.training)


class PositionPerRow(ParamStem):
    """Row b of the batch gets position row b for all its tokens."""

    def forward(self, idx):
        B = idx.size(0)
        return self.drop(self.tok_emb(idx) + self.pos_emb[0, :B, None, :])


class PositionsFromOne(EmbeddingStem):
    def forward(self, idx):
        pos = torch.arange(1, idx.size(1) + 1)
        return F.dropout(self.wte(idx) + self.wpe(pos), self.p, self.training)


class BatchAsTEmbedding(EmbeddingStem):
    def forward(self, idx):
        return F.dropout(self.wte(idx) + self.wpe(torch.arange(idx.shape[0])), self.p, self.training)


class NoDropout(ParamStem):
    def forward(self, idx):
        return self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)]


class DropoutAlwaysOn(EmbeddingStem):
    def forward(self, idx):
        pos = torch.arange(idx.size(1))
        return F.dropout(self.wte(idx) + self.wpe(pos), self.p)


class DropTokensOnly(ParamStem):
    def forward(self, idx):
        return self.drop(self.tok_emb(idx)) + self.pos_emb[:, : idx.size(1)]


class DropPositionsOnly(ParamStem):
    def forward(self, idx):
        return self.tok_emb(idx) + self.drop(self.pos_emb[:, : idx.size(1)])


class ResidRate(ParamStem):
    def __init__(self, config):
        super().__init__(config)
        self.drop = nn.Dropout(config.resid_pdrop)


class UnscaledDropout(ParamStem):
    def forward(self, idx):
        x = self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)]
        if self.training:
            x = x * (torch.rand_like(x) >= 0.5)
        return x


class ReturnsTuple(ParamStem):
    def forward(self, idx):
        return super().forward(idx), None


class ReturnsNone(ParamStem):
    def forward(self, idx):
        super().forward(idx)


class Detached(ParamStem):
    def forward(self, idx):
        return self.drop(self.tok_emb(idx) + self.pos_emb[:, : idx.size(1)].detach())


class NoSuperInit(nn.Module):
    def __init__(self, config):
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)


class WrongWidth(ParamStem):
    def __init__(self, config):
        super().__init__(config)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd // 2))


@pytest.mark.parametrize(
    "cls, diagnosis",
    [
        (NoPositions, "positions-missing"),
        (WrongWidth, "positions-missing"),
        (BufferPositions, "positions-not-learned"),
        (PositionsNotAdded, "positions-not-added"),
        (TokensNotAdded, "tokens-not-added"),
        (Scaled, "scaled"),
        (Concatenated, "concatenated"),
        (NotSliced, "positions-not-sliced"),
        (NotSlicedEmbedding, "positions-not-sliced"),
        (ByTokenId, "positions-by-token-id"),
        (ByTokenIdModulo, "positions-by-token-id"),
        (PositionPerRow, "batch-dimension"),
        (PositionsFromOne, "positions-from-one"),
        (BatchAsT, "batch-dimension"),
        (BatchAsTEmbedding, "batch-dimension"),
        (NoDropout, "no-dropout"),
        (DropoutAlwaysOn, "dropout-in-eval"),
        (DropTokensOnly, "dropout-on-tokens-only"),
        (DropPositionsOnly, "dropout-on-positions-only"),
        (ResidRate, "dropout-rate"),
        (UnscaledDropout, "dropout-not-scaled"),
        (ReturnsTuple, "returned-tuple"),
        (ReturnsNone, "returned-none"),
        (Detached, "no-grad"),
        (NoSuperInit, "no-super-init"),
        (GptlibEmbeddings(GPTConfig(vocab_size=5, block_size=4, n_embd=8, n_head=2)), "instance-not-class"),
        (one_hot_matmul, "not-a-class"),
        (dict, "not-a-module"),
    ],
)
def test_stem_mistakes_are_diagnosed(cls, diagnosis):
    state = torch.random.get_rng_state()
    with pytest.raises(CheckFailure) as excinfo:
        check_token_position_embedding(cls)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_resid_rate_is_named():
    with pytest.raises(CheckFailure) as excinfo:
        check_token_position_embedding(ResidRate)
    assert "resid_pdrop" in str(excinfo.value)


def test_missing_positions_lists_expected_and_found():
    with pytest.raises(CheckFailure) as excinfo:
        check_token_position_embedding(WrongWidth)
    text = str(excinfo.value)
    assert "(1, 8, 32)" in text and "pos_emb (1, 8, 16)" in text


@pytest.mark.parametrize("cls", [StemStub, ForwardStub])
def test_stem_stub_is_not_done_yet(cls):
    with pytest.raises(NotDoneYet):
        check_token_position_embedding(cls)


# --- position_similarity ----------------------------------------------------------------------


def sim_normalize(pos):
    unit = F.normalize(pos, dim=-1)
    return unit @ unit.T


def sim_cosine(pos):
    return F.cosine_similarity(pos[:, None, :], pos[None, :, :], dim=-1)


def sim_manual(pos):
    n = pos.norm(dim=1)
    return (pos @ pos.T) / (n[:, None] * n[None, :])


@pytest.mark.parametrize("fn", [sim_normalize, sim_cosine, sim_manual])
def test_correct_similarities_pass(fn, capsys):
    threads = torch.get_num_threads()
    check_position_similarity(fn)
    assert torch.get_num_threads() == threads
    assert "passed" in capsys.readouterr().out


def sim_raw(pos):
    return pos @ pos.T


def sim_columns(pos):
    unit = F.normalize(pos, dim=0)
    return unit @ unit.T


def sim_cc(pos):
    unit = F.normalize(pos, dim=-1)
    return unit.T @ unit


def sim_in_place(pos):
    pos /= pos.norm(dim=-1, keepdim=True)
    return pos @ pos.T


def sim_stub(pos):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (sim_raw, "not-normalised"),
        (sim_columns, "wrong-dim"),
        (sim_cc, "wrong-orientation"),
        (sim_in_place, "in-place"),
        (lambda pos: torch.ones(pos.shape[0], pos.shape[0]), "wrong-values"),
    ],
)
def test_similarity_mistakes_are_diagnosed(fn, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_position_similarity(fn)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_similarity_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_position_similarity(sim_stub)
