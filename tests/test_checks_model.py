"""Lesson 05's checks: correct losses, GPTs and parameter formulas pass; each classic mistake is diagnosed."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib import GPT as GptlibGPT
from gptlib import Block, Embeddings, LMHead
from gptlib.checks import CheckFailure, NotDoneYet
from gptlib.checks.gpt import check_count_parameters, check_cross_entropy, check_gpt

# --- cross_entropy ----------------------------------------------------------------------------


def ce_manual(logits, targets):
    z = logits - logits.max(dim=-1, keepdim=True).values
    logp = z - torch.log(torch.exp(z).sum(dim=-1, keepdim=True))
    return -logp[torch.arange(logits.size(0)), targets].mean()


def ce_logsumexp_gather(logits, targets):
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -logp.gather(1, targets.unsqueeze(1)).squeeze(1).mean()


def ce_log_softmax(logits, targets):
    return F.nll_loss(F.log_softmax(logits, dim=-1), targets)


def ce_torch(logits, targets):
    return F.cross_entropy(logits, targets)


@pytest.mark.parametrize("fn", [ce_manual, ce_logsumexp_gather, ce_log_softmax, ce_torch])
def test_correct_cross_entropies_pass(fn, capsys):
    check_cross_entropy(fn)
    assert "passed" in capsys.readouterr().out


def _rows(logits):
    return torch.arange(logits.size(0))


def ce_no_max(logits, targets):
    p = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    return -torch.log(p[_rows(logits), targets]).mean()


def ce_in_place(logits, targets):
    logits -= logits.max(dim=-1, keepdim=True).values
    return ce_manual(logits, targets)


def ce_stub(logits, targets):
    raise NotImplementedError()


CE_MISTAKES = [
    (ce_no_max, "overflow"),
    (lambda lg, t: -F.softmax(lg, -1)[_rows(lg), t].mean(), "no-log"),
    (lambda lg, t: F.log_softmax(lg, -1)[_rows(lg), t].mean(), "sign"),
    (lambda lg, t: -F.log_softmax(lg, -1)[_rows(lg), t].sum(), "sum-not-mean"),
    (lambda lg, t: -F.log_softmax(lg, -1)[_rows(lg), t], "no-mean"),
    (lambda lg, t: -F.log_softmax(lg, 0)[_rows(lg), t].mean(), "wrong-axis"),
    (lambda lg, t: -F.log_softmax(lg, -1)[:, t].mean(), "wrong-index"),
    (lambda lg, t: -lg[_rows(lg), t].mean(), "no-softmax"),
    (lambda lg, t: F.cross_entropy(lg, t).item(), "not-a-tensor"),
    (lambda lg, t: F.cross_entropy(lg.detach(), t), "no-grad"),
    (ce_in_place, "in-place"),
    (lambda lg, t: None, "returned-none"),
]


@pytest.mark.parametrize("fn, diagnosis", CE_MISTAKES, ids=[d for _, d in CE_MISTAKES])
def test_cross_entropy_mistakes_are_diagnosed(fn, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_cross_entropy(fn)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_cross_entropy_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_cross_entropy(ce_stub)


# --- gpt: correct variants --------------------------------------------------------------------


def _init_weights(module):
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class GPTSolution(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(_init_weights)

    def forward(self, idx, targets=None):
        x = self.embeddings(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


class GPTWithLMHead(nn.Module):
    """gptlib's LMHead, blocks in an nn.Sequential."""

    def __init__(self, config):
        super().__init__()
        self.embed = Embeddings(config)
        self.layers = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.lm_head = LMHead(config)
        self.apply(_init_weights)

    def forward(self, idx, targets=None):
        return self.lm_head(self.layers(self.embed(idx)), targets)


class GPTEmbeddingPositions(nn.Module):
    """Its own embeddings: token and position tables as nn.Embedding (nanoGPT's wte/wpe)."""

    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(_init_weights)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T)))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class GPTParameterPositions(GPTEmbeddingPositions):
    """minGPT's embeddings: positions as an nn.Parameter of zeros (1, T, C)."""

    def __init__(self, config):
        super().__init__(config)
        del self.wpe
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))

    def forward(self, idx, targets=None):
        x = self.drop(self.wte(idx) + self.pos_emb[:, : idx.size(1)])
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = (
            None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        )
        return logits, loss


class GPTTransposedLoss(GPTSolution):
    """The loss with the classes on dim 1 (logits (B, V, T)) and blocks in a ModuleDict: both right."""

    def __init__(self, config):
        super().__init__(config)
        self.blocks = nn.ModuleDict({f"layer{i}": block for i, block in enumerate(self.blocks)})

    def forward(self, idx, targets=None):
        x = self.embeddings(idx)
        for name in sorted(self.blocks):
            x = self.blocks[name](x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.nll_loss(F.log_softmax(logits, -1).transpose(1, 2), targets)


@pytest.mark.parametrize(
    "cls",
    [GPTSolution, GPTWithLMHead, GPTEmbeddingPositions, GPTParameterPositions, GptlibGPT, GPTTransposedLoss],
)
def test_correct_gpts_pass(cls, capsys):
    check_gpt(cls)
    assert "passed" in capsys.readouterr().out


# --- gpt: mistakes ----------------------------------------------------------------------------


def gpt_variant(body=None, init=None):
    """GPTSolution with another forward body(self, idx, targets) and/or __init__ tail init(self, config)."""

    class G(GPTSolution):
        def __init__(self, config):
            super().__init__(config)
            if init is not None:
                init(self, config)

        def forward(self, idx, targets=None):
            if body is None:
                return super().forward(idx, targets)
            return body(self, idx, targets)

    return G


class GPTNoInit(GPTSolution):
    def __init__(self, config):
        nn.Module.__init__(self)
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)


def _default_biases(self, config):
    for m in self.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.uniform_(m.bias, -0.1, 0.1)


def _head_bias(self, config):
    self.head = nn.Linear(config.n_embd, config.vocab_size)
    _init_weights(self.head)


def _no_final_ln(self, config):
    del self.ln_f
    self.ln_f = nn.Identity()


def _tied(self, config):
    self.head.weight = self.embeddings.tok_emb.weight


def _one_block_short(self, config):
    self.blocks = self.blocks[:-1]


def _huge_head(self, config):
    nn.init.normal_(self.head.weight, std=1.0)


def _no_dropout(self, config):
    for m in self.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    for block in self.blocks:
        block.attn.attn_drop.p = 0.0


def _loss(logits, targets, **kw):
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), **kw)


def _blocks_unused(self, idx, targets):
    x = self.embeddings(idx)
    for block in self.blocks:
        block(x)
    logits = self.head(self.ln_f(x))
    return logits, None if targets is None else _loss(logits, targets)


def _ln_f_unused(self, idx, targets):
    x = self.embeddings(idx)
    for block in self.blocks:
        x = block(x)
    logits = self.head(x)
    return logits, None if targets is None else _loss(logits, targets)


def _leaky(self, idx, targets):
    x = self.embeddings(idx)
    x = x + x.mean(dim=1, keepdim=True)
    for block in self.blocks:
        x = block(x)
    logits = self.head(self.ln_f(x))
    return logits, None if targets is None else _loss(logits, targets)


def _no_position(self, idx, targets):
    x = self.embeddings.drop(self.embeddings.tok_emb(idx))
    for block in self.blocks:
        x = block(x)
    logits = self.head(self.ln_f(x))
    return logits, None if targets is None else _loss(logits, targets)


def _probabilities(self, idx, targets):
    logits, loss = GPTSolution.forward(self, idx, targets)
    return F.softmax(logits, -1), loss


def _sum_loss(self, idx, targets):
    logits, _ = GPTSolution.forward(self, idx)
    return logits, None if targets is None else _loss(logits, targets, reduction="sum")


class GPTBlocksInAList(GPTSolution):
    def __init__(self, config):
        super().__init__(config)
        del self.blocks
        self.blocks = [Block(config) for _ in range(config.n_layer)]
        for block in self.blocks:
            block.apply(_init_weights)


def _loss_on_probabilities(self, idx, targets):
    logits, _ = GPTSolution.forward(self, idx)
    probs = F.softmax(logits, dim=-1)
    return logits, None if targets is None else _loss(probs, targets)


def _loss_not_flattened(self, idx, targets):
    logits, _ = GPTSolution.forward(self, idx)
    return logits, None if targets is None else F.cross_entropy(logits, targets)


def _targets_shifted(self, idx, targets):
    logits, _ = GPTSolution.forward(self, idx)
    if targets is None:
        return logits, None
    V = logits.size(-1)
    return logits, F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))


def _ln_f_first(self, idx, targets):
    x = self.ln_f(self.embeddings(idx))
    for block in self.blocks:
        x = block(x)
    logits = self.head(x)
    return logits, None if targets is None else _loss(logits, targets)


def _gpt_stub(self, idx, targets):
    raise NotImplementedError()


GPT_MISTAKES = [
    (GPTNoInit, "init"),  # PyTorch's default init: the fresh loss is near ln(V), the stds say it
    (gpt_variant(init=_default_biases), "init"),
    (gpt_variant(init=_huge_head), "initial-loss"),
    (gpt_variant(init=_head_bias), "head-bias"),
    (gpt_variant(init=_no_final_ln), "no-final-ln"),
    (gpt_variant(init=_tied), "tied-weights"),
    (gpt_variant(init=_one_block_short), "n-layer"),
    (gpt_variant(init=_no_dropout), "no-dropout"),
    (gpt_variant(_blocks_unused), "blocks-unused"),
    (gpt_variant(_ln_f_unused), "no-final-ln"),
    (gpt_variant(_no_position), "no-position"),
    (gpt_variant(_leaky), "future-leak"),
    (gpt_variant(_probabilities), "probabilities"),
    (
        gpt_variant(lambda s, idx, t: (F.log_softmax(GPTSolution.forward(s, idx)[0], -1), None)),
        "log-probabilities",
    ),
    (gpt_variant(_sum_loss), "loss-not-mean"),
    (GPTBlocksInAList, "blocks-not-registered"),
    (gpt_variant(_loss_on_probabilities), "loss-on-probabilities"),
    (gpt_variant(_loss_not_flattened), "loss-not-flattened"),
    (gpt_variant(_targets_shifted), "targets-shifted"),
    (gpt_variant(_ln_f_first), "ln-f-first"),
    (gpt_variant(lambda s, idx, t: GPTSolution.forward(s, idx, t)[0]), "returns-tensor"),
    (
        gpt_variant(lambda s, idx, t: (GPTSolution.forward(s, idx)[0], torch.tensor(0.0))),
        "loss-without-targets",
    ),
    (gpt_variant(lambda s, idx, t: (GPTSolution.forward(s, idx)[0].flatten(0, 1), None)), "flattened-logits"),
    (gpt_variant(lambda s, idx, t: (s.embeddings(idx), None)), "no-head"),
    (gpt_variant(lambda s, idx, t: None), "returned-none"),
]


@pytest.mark.parametrize("cls, diagnosis", GPT_MISTAKES, ids=[d for _, d in GPT_MISTAKES])
def test_gpt_mistakes_are_diagnosed(cls, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_gpt(cls)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_gpt_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_gpt(gpt_variant(_gpt_stub))


def test_gpt_parameter_mistakes_list_expected_and_found_shapes():
    with pytest.raises(CheckFailure) as excinfo:
        check_gpt(gpt_variant(init=_head_bias))
    text = str(excinfo.value)
    assert "Expected (gptlib.GPT):" in text and "Found (yours):" in text and "head.bias: (65,)" in text


def test_initial_loss_message_names_the_init():
    with pytest.raises(CheckFailure) as excinfo:
        check_gpt(gpt_variant(init=_huge_head))
    assert "ln(65) = 4.17" in str(excinfo.value) and "0.02" in str(excinfo.value)


def test_gpt_check_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_gpt(GPTSolution)
    assert torch.equal(torch.rand(3), expected)


# --- count_parameters -------------------------------------------------------------------------


def count_by_parts(V, T, L, C):
    attention = 4 * C * C + 4 * C
    mlp = 8 * C * C + 5 * C
    return V * C + T * C + L * (attention + mlp + 4 * C) + 2 * C + V * C


def count_expanded(vocab_size, block_size, n_layer, n_embd):
    C = n_embd
    return 2 * vocab_size * C + block_size * C + n_layer * (12 * C**2 + 13 * C) + 2 * C


def count_float(V, T, L, C):
    return float(count_by_parts(V, T, L, C))


@pytest.mark.parametrize("fn", [count_by_parts, count_expanded, count_float])
def test_correct_counts_pass(fn, capsys):
    check_count_parameters(fn)
    assert "passed" in capsys.readouterr().out


def count_stub(V, T, L, C):
    raise NotImplementedError()


COUNT_MISTAKES = [
    (lambda V, T, L, C: count_by_parts(V, T, L, C) - V * C, "head-missing"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) + V, "head-bias"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) - T * C, "no-position"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) - 2 * C, "no-final-ln"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) - 4 * C * L, "layernorm-count"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) - 5 * C * L, "biases"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) - (6 * C * C + 3 * C) * L, "mlp-count"),
    (lambda V, T, L, C: count_by_parts(V, T, L - 1, C), "layer-count"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) - T * C + V, "head-bias"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) + 7, "wrong-values"),
    (lambda V, T, L, C: None, "not-a-number"),
    (lambda V, T, L, C: count_by_parts(V, T, L, C) + 0.5, "not-a-number"),
]


@pytest.mark.parametrize("fn, diagnosis", COUNT_MISTAKES, ids=[d for _, d in COUNT_MISTAKES])
def test_count_mistakes_are_diagnosed(fn, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_count_parameters(fn)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_count_names_two_mistakes_at_once():
    with pytest.raises(CheckFailure) as excinfo:
        check_count_parameters(lambda V, T, L, C: count_by_parts(V, T, L, C) - T * C + V)
    assert "two things at once" in str(excinfo.value) and "position table" in str(excinfo.value)


def test_count_message_says_which_part_is_off():
    with pytest.raises(CheckFailure) as excinfo:
        check_count_parameters(lambda V, T, L, C: count_by_parts(V, T, L, C) + 3 * C * L + 1)
    text = str(excinfo.value)
    assert "each extra layer" in text and "12C² + 13C" in text and "each extra position" not in text


def test_count_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_count_parameters(count_stub)


@pytest.mark.parametrize(
    "check, fn", [(check_cross_entropy, ce_manual), (check_count_parameters, count_by_parts)]
)
def test_checks_leave_the_global_rng_alone(check, fn):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check(fn)
    assert torch.equal(torch.rand(3), expected)
