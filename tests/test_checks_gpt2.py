"""Lesson 09's checks: correct GPT-2 conversions pass, however they are written; each classic mistake is
diagnosed. The checks build small random GPT-2s with transformers (the dev extra), offline."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn

from gptlib import GPT, Block, GPTConfig
from gptlib.checks import CheckFailure, NotDoneYet
from gptlib.checks.gpt2 import check_convert_block, check_convert_gpt2, check_split_c_attn

ROLES = ("query", "key", "value")


def diagnosis(check: Callable[[Any], None], fn: Any) -> str:
    with pytest.raises(CheckFailure) as excinfo:
        check(fn)
    return excinfo.value.diagnosis


# --- split_c_attn ------------------------------------------------------------------------------


def split_dict(weight, bias):
    C = weight.size(0)
    return {n: (w.t(), b) for n, w, b in zip(ROLES, weight.split(C, dim=1), bias.split(C), strict=True)}


def split_slices_tuple(weight, bias):
    """Explicit slices, three pairs in a tuple, contiguous copies."""
    C = weight.shape[0]
    return tuple(
        (weight[:, i * C : (i + 1) * C].t().contiguous(), bias[i * C : (i + 1) * C].clone()) for i in range(3)
    )


def split_transpose_first(weight, bias):
    """Transpose the whole (C, 3C) matrix, then cut its rows; lists instead of tuples."""
    q, k, v = weight.t().chunk(3, dim=0)
    bq, bk, bv = torch.tensor_split(bias, 3)
    return {"value": [v, bv], "key": [k, bk], "query": [q, bq]}


def split_view(weight, bias):
    """view(C, 3, C) keeps each block's C columns together (right), unlike view(C, C, 3)."""
    C = weight.size(0)
    w = weight.view(C, 3, C)
    b = bias.view(3, C)
    return {n: (nn.Parameter(w[:, i, :].t().clone()), b[i]) for i, n in enumerate(ROLES)}


def split_reshape_unbind(weight, bias):
    """The transposed matrix reshaped to (3, C, C) and unbound; a generator of pairs."""
    C = weight.size(0)
    ws = weight.T.reshape(3, C, C).unbind(0)
    return dict(zip(ROLES, ((w, b) for w, b in zip(ws, bias.reshape(3, C), strict=True)), strict=True))


@pytest.mark.parametrize(
    "fn", [split_dict, split_slices_tuple, split_transpose_first, split_view, split_reshape_unbind]
)
def test_split_c_attn_correct_variants_pass(fn, capsys):
    check_split_c_attn(fn)
    assert "✅ split_c_attn: passed" in capsys.readouterr().out


def split_no_transpose(weight, bias):
    C = weight.size(0)
    return {n: (w, b) for n, w, b in zip(ROLES, weight.split(C, dim=1), bias.split(C), strict=True)}


def split_wrong_order(weight, bias):
    C = weight.size(0)
    return {
        n: (w.t(), b)
        for n, w, b in zip(("key", "query", "value"), weight.split(C, dim=1), bias.split(C), strict=True)
    }


def split_rows(weight, bias):
    C = weight.size(0)
    rows = weight.reshape(3, C, C)  # the flat matrix cut in three: rows, not column blocks
    return {n: (rows[i].t(), bias.split(C)[i]) for i, n in enumerate(ROLES)}


def split_dim0(weight, bias):
    return {n: (w, b) for n, w, b in zip(ROLES, weight.chunk(3, dim=0), bias.chunk(3), strict=True)}


def split_interleaved(weight, bias):
    C = weight.size(0)
    w = weight.t().reshape(C, 3, C)  # every third row of the transpose: interleaved columns
    return {n: (w[:, i], bias.split(C)[i]) for i, n in enumerate(ROLES)}


def split_bias_whole(weight, bias):
    C = weight.size(0)
    return {n: (w.t(), bias) for n, w in zip(ROLES, weight.split(C, dim=1), strict=True)}


def split_bias_order(weight, bias):
    C = weight.size(0)
    bs = bias.split(C)
    return {
        n: (w.t(), bs[(i + 1) % 3])
        for i, (n, w) in enumerate(zip(ROLES, weight.split(C, dim=1), strict=True))
    }


def split_weights_only(weight, bias):
    C = weight.size(0)
    return {n: w.t() for n, w in zip(ROLES, weight.split(C, dim=1), strict=True)}


def split_not_split(weight, bias):
    return {n: (weight.t(), bias) for n in ROLES}


def split_in_place(weight, bias):
    out = split_dict(weight, bias)
    bias.zero_()
    return out


def split_fixed_24(weight, bias):
    return {
        n: (weight[:, i * 24 : (i + 1) * 24].t(), bias[i * 24 : (i + 1) * 24]) for i, n in enumerate(ROLES)
    }


def split_none(weight, bias):
    split_dict(weight, bias)


def split_q_k_v_names(weight, bias):
    C = weight.size(0)
    return {n: (w.t(), b) for n, w, b in zip("qkv", weight.split(C, dim=1), bias.split(C), strict=True)}


def split_stub(weight, bias):
    raise NotImplementedError()


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (split_no_transpose, "no-transpose"),
        (split_wrong_order, "order"),
        (split_rows, "wrong-axis"),
        (split_dim0, "wrong-axis"),
        (split_interleaved, "interleaved"),
        (split_bias_whole, "bias-not-split"),
        (split_bias_order, "order"),
        (split_weights_only, "bias-missing"),
        (split_not_split, "not-split"),
        (split_in_place, "in-place"),
        (split_fixed_24, "fixed-size"),
        (split_none, "returned-none"),
        (split_q_k_v_names, "wrong-return"),
    ],
)
def test_split_c_attn_mistakes_are_diagnosed(fn, expected):
    assert diagnosis(check_split_c_attn, fn) == expected


def test_split_c_attn_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_split_c_attn(split_stub)


def test_split_c_attn_failure_names_the_mistake_and_its_hint():
    with pytest.raises(CheckFailure) as excinfo:
        check_split_c_attn(split_no_transpose)
    text = str(excinfo.value)
    assert "not transposed" in text and "Hint:" in text and 'show_hints("split_c_attn")' in text


# --- convert_block -----------------------------------------------------------------------------


def make_convert_block(
    *,
    gelu: str = "tanh",
    eps: float | None = None,
    n_head: int | None = None,
    order: tuple[str, str, str] = ROLES,
    qkv_t: bool = True,
    proj_t: bool = True,
    fc: str = "t",
    ln: str = "right",
    biases: bool = True,
    train: bool = False,
    touch_hf: bool = False,
    returns: str = "block",
) -> Callable[[Any, Any], Any]:
    """A convert_block, right by default; each keyword is one way a learner gets it wrong."""

    def convert_block(hf_block, hf_config):
        config = GPTConfig(
            vocab_size=hf_config.vocab_size,
            block_size=hf_config.n_positions,
            n_layer=1,
            n_head=n_head or hf_config.n_head,
            n_embd=hf_config.n_embd,
            gelu_approximate=gelu,
            layer_norm_eps=hf_config.layer_norm_epsilon if eps is None else eps,
        )
        block = Block(config)
        lns = [(block.ln1, hf_block.ln_1), (block.ln2, hf_block.ln_2)]
        if ln == "swapped":
            lns = [(block.ln1, hf_block.ln_2), (block.ln2, hf_block.ln_1)]
        C = hf_config.n_embd
        with torch.no_grad():
            if ln != "skip":
                for mine, theirs in lns:
                    mine.weight.copy_(theirs.weight)
                    mine.bias.copy_(theirs.bias)
            ws = hf_block.attn.c_attn.weight.split(C, dim=1)
            bs = hf_block.attn.c_attn.bias.split(C)
            for name, w, b in zip(order, ws, bs, strict=True):
                layer = {"query": block.attn.query, "key": block.attn.key, "value": block.attn.value}[name]
                layer.weight.copy_(w.t() if qkv_t else w)
                layer.bias.copy_(b if biases else torch.zeros_like(b))
            proj = hf_block.attn.c_proj
            block.attn.proj.weight.copy_(proj.weight.t() if proj_t else proj.weight)
            for mine, theirs in ((block.mlp.fc, hf_block.mlp.c_fc), (block.mlp.proj, hf_block.mlp.c_proj)):
                if fc == "t":
                    mine.weight.copy_(theirs.weight.t())
                elif fc == "reshape":
                    mine.weight.copy_(theirs.weight.reshape(mine.weight.shape))
                elif fc == "copy":
                    mine.weight.copy_(theirs.weight)  # no transpose: shapes clash
                elif fc == "assign":
                    mine.weight = nn.Parameter(theirs.weight.clone())  # no transpose, no error here
            for mine, theirs in ((block.attn.proj, proj), (block.mlp.fc, hf_block.mlp.c_fc),
                                 (block.mlp.proj, hf_block.mlp.c_proj)):  # fmt: skip
                mine.bias.copy_(theirs.bias if biases else torch.zeros_like(theirs.bias))
            if fc == "reshape":
                for name, w in zip(order, ws, strict=True):
                    getattr(block.attn, name).weight.copy_(w.reshape(C, C))
                block.attn.proj.weight.copy_(proj.weight.reshape(C, C))
            if touch_hf:
                hf_block.attn.c_proj.weight.t_()
        if returns == "none":
            return None
        if returns == "state":
            return block.state_dict()
        return block.train(train)

    return convert_block


class OwnBlock(nn.Module):
    """A learner's own pre-norm block with torch's layers and their own names."""

    def __init__(self, hf_block, hf_config):
        super().__init__()
        C, H = hf_config.n_embd, hf_config.n_head
        self.n_head = H
        self.norm_a = nn.LayerNorm(C, eps=hf_config.layer_norm_epsilon)
        self.norm_b = nn.LayerNorm(C, eps=hf_config.layer_norm_epsilon)
        self.qkv = nn.Linear(C, 3 * C)
        self.out = nn.Linear(C, C)
        self.up = nn.Linear(C, 4 * C)
        self.act = nn.GELU(approximate="tanh")
        self.down = nn.Linear(4 * C, C)
        with torch.no_grad():
            for mine, theirs in ((self.norm_a, hf_block.ln_1), (self.norm_b, hf_block.ln_2)):
                mine.load_state_dict(theirs.state_dict())
            for mine, theirs in ((self.qkv, hf_block.attn.c_attn), (self.out, hf_block.attn.c_proj),
                                 (self.up, hf_block.mlp.c_fc), (self.down, hf_block.mlp.c_proj)):  # fmt: skip
                mine.weight.copy_(theirs.weight.t())
                mine.bias.copy_(theirs.bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm_a(x)).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(y.transpose(1, 2).reshape(B, T, C))
        return x + self.down(self.act(self.up(self.norm_b(x))))


def convert_block_own_module(hf_block, hf_config):
    return OwnBlock(hf_block, hf_config).eval()


def convert_block_state_dict(hf_block, hf_config):
    """Builds a gptlib state dict and loads it; the mode of GPT-2's block."""
    C = hf_config.n_embd
    config = GPTConfig(
        vocab_size=1, block_size=hf_config.n_positions, n_layer=1, n_head=hf_config.n_head, n_embd=C,
        gelu_approximate="tanh", layer_norm_eps=hf_config.layer_norm_epsilon, attn_pdrop=0.0,
    )  # fmt: skip
    sd = {}
    for ln, hf_ln in (("ln1", "ln_1"), ("ln2", "ln_2")):
        for p in ("weight", "bias"):
            sd[f"{ln}.{p}"] = hf_block.state_dict()[f"{hf_ln}.{p}"]
    parts = split_dict(hf_block.attn.c_attn.weight, hf_block.attn.c_attn.bias)
    for name, (w, b) in parts.items():
        sd[f"attn.{name}.weight"], sd[f"attn.{name}.bias"] = w, b
    for mine, theirs in (("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
        sd[f"{mine}.weight"] = hf_block.state_dict()[f"{theirs}.weight"].t()
        sd[f"{mine}.bias"] = hf_block.state_dict()[f"{theirs}.bias"]
    block = Block(config)
    block.load_state_dict(sd)
    return block.train(hf_block.training)


@pytest.mark.parametrize(
    "fn",
    [make_convert_block(), convert_block_own_module, convert_block_state_dict],
    ids=["copy", "own", "sd"],
)
def test_convert_block_correct_variants_pass(fn, capsys):
    check_convert_block(fn)
    assert "✅ convert_block: passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(gelu="none"), "exact-gelu"),
        (dict(eps=1e-5), "eps"),
        (dict(n_head=4), "n-head"),
        (dict(qkv_t=False), "qkv-not-transposed"),
        (dict(order=("key", "query", "value")), "qkv-order"),
        (dict(proj_t=False), "proj-not-transposed"),
        (dict(fc="reshape"), "reshape-not-transpose"),
        (dict(fc="copy"), "shape-mismatch"),
        (dict(fc="assign"), "shape-mismatch"),
        (dict(ln="swapped"), "ln-swapped"),
        (dict(ln="skip"), "ln-not-copied"),
        (dict(biases=False), "biases-missing"),
        (dict(train=True), "train-mode"),
        (dict(touch_hf=True), "in-place"),
        (dict(returns="none"), "returned-none"),
        (dict(returns="state"), "not-a-module"),
        (dict(gelu="none", proj_t=False), "exact-gelu"),  # two mistakes at once: both named
    ],
)
def test_convert_block_mistakes_are_diagnosed(kwargs, expected):
    assert diagnosis(check_convert_block, make_convert_block(**kwargs)) == expected


def test_exact_gelu_message_gives_the_size_of_the_gap():
    with pytest.raises(CheckFailure) as excinfo:
        check_convert_block(make_convert_block(gelu="none"))
    text = str(excinfo.value)
    assert "tanh" in text and "the gap between the two GELUs" in text
    with pytest.raises(CheckFailure) as excinfo:
        check_convert_block(make_convert_block(gelu="none", proj_t=False))
    assert "two mistakes at once" in str(excinfo.value) and "c_proj" in str(excinfo.value)


def test_convert_block_stub_is_not_done_yet():
    def convert_block(hf_block, hf_config):
        raise NotImplementedError()

    with pytest.raises(NotDoneYet):
        check_convert_block(convert_block)


# --- convert_gpt2 ------------------------------------------------------------------------------

good_block = make_convert_block()


def make_convert_gpt2(
    *,
    head: str = "copy",
    wpe: str = "copy",
    ln_f: bool = True,
    blocks: str = "convert",
    train: bool = False,
    block_size: int | None = None,
    touch_hf: bool = False,
) -> Callable[[Any], Any]:
    def convert_gpt2(hf_model):
        c = hf_model.config
        config = GPTConfig(
            vocab_size=c.vocab_size, block_size=block_size or c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
            n_embd=c.n_embd, gelu_approximate="tanh", layer_norm_eps=c.layer_norm_epsilon,
        )  # fmt: skip
        model = GPT(config)
        t = hf_model.transformer
        with torch.no_grad():
            model.embeddings.tok_emb.weight.copy_(t.wte.weight)
            if wpe == "copy":
                model.embeddings.pos_emb.copy_(t.wpe.weight.unsqueeze(0))
            elif wpe == "assign":
                model.embeddings.pos_emb = nn.Parameter(t.wpe.weight.clone())  # (T, C): gptlib's is (1, T, C)
            for i, hf_block in enumerate(t.h):
                if blocks == "convert":
                    model.blocks[i] = good_block(hf_block, c)
                elif blocks == "exact-gelu":
                    model.blocks[i] = make_convert_block(gelu="none")(hf_block, c)
            if ln_f:
                model.head.ln_f.weight.copy_(t.ln_f.weight)
                model.head.ln_f.bias.copy_(t.ln_f.bias)
            if head == "copy":
                model.head.proj.weight.copy_(hf_model.lm_head.weight)
            elif head == "tie":
                model.head.proj.weight = model.embeddings.tok_emb.weight
            elif head == "transposed":
                model.head.proj.weight = nn.Parameter(t.wte.weight.t().clone())
            if touch_hf:
                t.ln_f.bias.zero_()
        return model.train(train)

    return convert_gpt2


@pytest.mark.parametrize(("kwargs", "tied"), [(dict(), "an equal copy"), (dict(head="tie"), "tied")])
def test_convert_gpt2_correct_variants_pass(kwargs, tied, capsys):
    check_convert_gpt2(make_convert_gpt2(**kwargs))
    out = capsys.readouterr().out
    assert "✅ convert_gpt2: passed" in out and tied in out and "greedy" in out


def test_a_block_in_training_mode_without_dropout_passes(capsys):
    def convert_block(hf_block, hf_config):
        block = make_convert_block()(hf_block, hf_config)
        for m in block.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        return block.train()

    check_convert_block(convert_block)
    assert "passed" in capsys.readouterr().out


def test_gptlibs_own_conversion_passes(capsys):
    from gptlib.gpt2 import from_hf_gpt2

    check_convert_gpt2(lambda hf: from_hf_gpt2(hf))
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(head="none"), "head"),
        (dict(head="transposed"), "head-transposed"),
        (dict(wpe="none"), "wpe"),
        (dict(wpe="assign"), "pos-shape"),
        (dict(ln_f=False), "ln-f"),
        (dict(blocks="exact-gelu"), "block"),
        (dict(blocks="none"), "block"),  # GPT(config)'s own random blocks
        (dict(train=True), "train-mode"),
        (dict(block_size=1024), "shape-mismatch"),
        (dict(touch_hf=True), "in-place"),
    ],
)
def test_convert_gpt2_mistakes_are_diagnosed(kwargs, expected):
    assert diagnosis(check_convert_gpt2, make_convert_gpt2(**kwargs)) == expected


def test_handing_back_hugging_faces_model_is_refused():
    assert diagnosis(check_convert_gpt2, lambda hf_model: hf_model) == "not-converted"
    assert diagnosis(check_convert_block, lambda hf_block, hf_config: hf_block) == "not-converted"


def test_convert_gpt2_with_a_wrong_config_names_it():
    def convert_gpt2(hf_model):
        model = make_convert_gpt2()(hf_model)
        model.config = model.config.replace(n_head=1)  # a model whose config says other sizes than GPT-2's
        return model

    with pytest.raises(CheckFailure, match="n_head=1") as excinfo:
        check_convert_gpt2(convert_gpt2)
    assert excinfo.value.diagnosis == "config"


# --- shared ------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", [check_split_c_attn, check_convert_block, check_convert_gpt2])
def test_without_transformers_the_check_says_so(check, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    with pytest.raises(CheckFailure, match=r'pip install "gptlib-course\[gpt2\]"') as excinfo:
        check(split_dict)
    assert excinfo.value.diagnosis == "no-transformers"


@pytest.mark.parametrize("check", [check_split_c_attn, check_convert_block, check_convert_gpt2])
def test_checks_leave_the_global_rng_and_threads_alone(check):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    fn = {check_split_c_attn: split_dict, check_convert_block: good_block}.get(check, make_convert_gpt2())
    check(fn)
    assert torch.equal(torch.rand(3), expected) and torch.get_num_threads() == threads


@pytest.mark.parametrize(
    ("exercise", "codes"),
    [
        ("split_c_attn", ["no-transpose", "order", "wrong-axis", "interleaved", "bias-not-split", "bias-missing",
                          "not-split", "in-place", "fixed-size", "returned-none", "wrong-return", "wrong-values",
                          "wrong-shape", "not-callable", "no-transformers"]),
        ("convert_block", ["exact-gelu", "eps", "n-head", "qkv-not-transposed", "qkv-order", "proj-not-transposed",
                           "reshape-not-transpose", "shape-mismatch", "ln-swapped", "ln-not-copied",
                           "biases-missing", "train-mode", "in-place", "returned-none", "not-a-module",
                           "not-converted", "wrong-values", "not-callable", "no-transformers"]),
        ("convert_gpt2", ["head", "head-transposed", "wte", "wpe", "pos-shape", "ln-f", "block", "config",
                          "train-mode", "shape-mismatch", "in-place", "not-a-module", "not-converted",
                          "wrong-values", "returned-none", "not-callable", "no-transformers"]),
    ],
)  # fmt: skip
def test_every_diagnosis_has_a_hint(exercise, codes):
    from gptlib.checks.hints import hint_for

    assert [c for c in codes if not hint_for(exercise, c)] == []


def test_checks_refuse_a_class():
    assert diagnosis(check_split_c_attn, OwnBlock) == "not-callable"
