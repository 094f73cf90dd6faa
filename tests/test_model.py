"""GPT and its parts: shapes, causality, initial loss and weights, dropout modes, optimizer split, input checks."""

import math

import pytest
import torch
import torch.nn as nn

from gptlib.block import Block
from gptlib.config import GPTConfig
from gptlib.embeddings import Embeddings
from gptlib.head import LMHead
from gptlib.mlp import MLP
from gptlib.model import BETAS, FORMER_NAMES, GPT, LEARNING_RATE, WEIGHT_DECAY, current_name, former_name
from gptlib.train import TrainConfig

B, T = 3, 5


def test_embeddings_shape_and_positions(tiny_config):
    torch.manual_seed(0)
    emb = Embeddings(tiny_config).eval()
    with torch.no_grad():
        emb.pos_emb.normal_()
    idx = torch.randint(0, tiny_config.vocab_size, (B, T))
    x = emb(idx)
    assert x.shape == (B, T, tiny_config.n_embd)
    torch.testing.assert_close(x, emb.tok_emb(idx) + emb.pos_emb[:, :T])
    # `start` shifts the position rows: tokens 2..4 seen as a continuation
    torch.testing.assert_close(emb(idx[:, 2:], start=2), x[:, 2:])


def test_mlp_shape_and_hidden_width(tiny_config):
    mlp = MLP(tiny_config)
    seen = {}
    mlp.fc.register_forward_hook(lambda m, i, o: seen.update(hidden=o.shape))
    x = torch.randn(B, T, tiny_config.n_embd)
    assert mlp(x).shape == (B, T, tiny_config.n_embd)
    assert seen["hidden"] == (B, T, 4 * tiny_config.n_embd)
    # each position on its own: permuting positions permutes the output
    perm = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(mlp(x[:, perm]), mlp(x)[:, perm])


def test_mlp_gelu_kind():
    x = torch.linspace(-3, 3, 16)
    exact = MLP(GPTConfig(vocab_size=3, block_size=2, n_layer=1, n_head=1, n_embd=4))
    tanh = MLP(GPTConfig(vocab_size=3, block_size=2, n_layer=1, n_head=1, n_embd=4, gelu_approximate="tanh"))
    assert exact.gelu.approximate == "none" and tanh.gelu.approximate == "tanh"
    assert not torch.equal(exact.gelu(x), tanh.gelu(x))


def test_block_shape_and_residual(tiny_config):
    torch.manual_seed(0)
    block = Block(tiny_config).eval()
    x = torch.randn(B, T, tiny_config.n_embd)
    assert block(x).shape == (B, T, tiny_config.n_embd)
    # with the two output projections zeroed, both branches add nothing: the block is the identity
    with torch.no_grad():
        for lin in (block.attn.proj, block.mlp.proj):
            lin.weight.zero_()
            lin.bias.zero_()
    torch.testing.assert_close(block(x), x)


def test_head_shapes_and_loss(tiny_config):
    head = LMHead(tiny_config)
    x = torch.randn(B, T, tiny_config.n_embd)
    logits, loss = head(x)
    assert logits.shape == (B, T, tiny_config.vocab_size) and loss is None
    targets = torch.randint(0, tiny_config.vocab_size, (B, T))
    logits, loss = head(x, targets)
    assert loss.shape == ()
    expected = nn.functional.cross_entropy(logits.reshape(-1, tiny_config.vocab_size), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    # -1 marks positions the loss ignores
    masked = targets.clone()
    masked[:, :2] = -1
    _, loss = head(x, masked)
    expected = nn.functional.cross_entropy(
        logits[:, 2:].reshape(-1, tiny_config.vocab_size), targets[:, 2:].reshape(-1)
    )
    torch.testing.assert_close(loss, expected)


def test_gpt_shapes(tiny_model, tiny_config):
    for t in (1, T, tiny_config.block_size):
        idx = torch.randint(0, tiny_config.vocab_size, (B, t))
        logits, loss = tiny_model(idx)
        assert logits.shape == (B, t, tiny_config.vocab_size) and loss is None
        logits, loss = tiny_model(idx, idx)
        assert loss.shape == () and torch.isfinite(loss)
    assert tiny_model.get_block_size() == tiny_config.block_size


def randomized(model: GPT) -> GPT:
    """The same model with every weight made non-trivial (pos_emb and LayerNorms too)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("j", [0, 1, 4, 7])
def test_causality(tiny_model, tiny_config, j):
    """Changing token j never changes the logits before j (and does change them at j)."""
    model = randomized(tiny_model)
    torch.manual_seed(2)
    idx = torch.randint(0, tiny_config.vocab_size, (2, tiny_config.block_size))
    changed = idx.clone()
    changed[:, j] = (idx[:, j] + 1) % tiny_config.vocab_size
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
    assert torch.equal(a[:, :j], b[:, :j])
    assert not torch.allclose(a[:, j], b[:, j])


def test_gradients_respect_causality(tiny_model, tiny_config):
    """The logit at position 3 has no gradient with respect to the embeddings of positions 4.."""
    model = randomized(tiny_model)
    idx = torch.randint(0, tiny_config.vocab_size, (1, tiny_config.block_size))
    x = model.embeddings(idx).detach().requires_grad_(True)
    h = x
    for block in model.blocks:
        h = block(h)
    logits, _ = model.head(h)
    logits[0, 3].sum().backward()
    assert (x.grad[0, 4:] == 0).all()
    assert (x.grad[0, :4].abs().sum(dim=-1) > 0).all()


def test_initial_loss_is_about_ln_vocab():
    torch.manual_seed(0)
    config = GPTConfig.preset("gpt-nano", vocab_size=65, block_size=32)
    model = GPT(config).eval()
    idx = torch.randint(0, 65, (8, 32))
    targets = torch.randint(0, 65, (8, 32))
    with torch.no_grad():
        _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(65)) < 0.1


def test_initial_weights():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=200, block_size=16, n_layer=2, n_head=4, n_embd=64))
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            assert abs(m.weight.mean().item()) < 0.002, name
            assert abs(m.weight.std().item() - 0.02) < 0.002, name
        if isinstance(m, nn.Linear):
            assert m.bias is None if name == "head.proj" else torch.equal(m.bias, torch.zeros_like(m.bias)), (
                name
            )
        if isinstance(m, nn.LayerNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(
                m.bias, torch.zeros_like(m.bias)
            )
            assert m.eps == 1e-5
    assert torch.equal(model.embeddings.pos_emb, torch.zeros(1, 16, 64))


def test_dropout_active_in_train_mode_only(tiny_config):
    torch.manual_seed(0)
    model = GPT(tiny_config.replace(embd_pdrop=0.3, resid_pdrop=0.3, attn_pdrop=0.3))
    idx = torch.randint(0, tiny_config.vocab_size, (B, T))
    model.train()
    a, _ = model(idx)
    b, _ = model(idx)
    assert not torch.allclose(a, b)  # a different dropout mask each call
    model.eval()
    c, _ = model(idx)
    d, _ = model(idx)
    assert torch.equal(c, d)
    # without dropout, train and eval mode compute the same thing
    torch.manual_seed(0)
    plain = GPT(tiny_config)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(plain.train()(idx)[0], c)


def test_configure_optimizers_split(tiny_model):
    opt = tiny_model.configure_optimizers(weight_decay=0.05, learning_rate=1e-3, betas=(0.8, 0.9))
    assert isinstance(opt, torch.optim.AdamW)
    decay_group, no_decay_group = opt.param_groups
    assert decay_group["weight_decay"] == 0.05 and no_decay_group["weight_decay"] == 0.0
    assert decay_group["lr"] == 1e-3 and decay_group["betas"] == (0.8, 0.9)
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    decay = {names[id(p)] for p in decay_group["params"]}
    no_decay = {names[id(p)] for p in no_decay_group["params"]}
    linear_weights = {f"{mn}.weight" for mn, m in tiny_model.named_modules() if isinstance(m, nn.Linear)}
    assert decay == linear_weights
    assert (
        "head.proj.weight" in decay
        and "blocks.0.attn.key.weight" in decay
        and "blocks.1.mlp.fc.weight" in decay
    )
    for n in (
        "embeddings.pos_emb",
        "embeddings.tok_emb.weight",
        "head.ln_f.weight",
        "blocks.0.ln1.weight",
        "blocks.0.attn.key.bias",
    ):
        assert n in no_decay
    assert all(n.endswith("bias") or "ln" in n or "emb" in n for n in no_decay)
    assert not decay & no_decay
    assert decay | no_decay == set(names.values())
    n_grouped = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_grouped == tiny_model.num_parameters() == sum(p.numel() for p in tiny_model.parameters())


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"weight_decay": "0.1"}, "weight_decay must be a number >= 0, got '0.1'"),
        ({"weight_decay": None}, "weight_decay"),
        ({"weight_decay": -0.1}, "weight_decay must be a number >= 0"),
        ({"learning_rate": -1e-3}, "learning_rate must be a number > 0, got -0.001"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": True}, "learning_rate"),
        ({"betas": 0.9}, r"betas must be two numbers in \[0, 1\)"),
        ({"betas": (0.9,)}, "betas"),
        ({"betas": (0.9, 0.95, 0.99)}, "betas"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"betas": (0.9, "0.95")}, "betas"),
        ({"betas": (-0.1, 0.95)}, "betas"),
    ],
)
def test_configure_optimizers_refuses_bad_settings_at_the_call(tiny_model, kwargs, words):
    with pytest.raises(ValueError, match=words):
        tiny_model.configure_optimizers(**kwargs)


def test_one_set_of_adamw_defaults(tiny_model):
    group = tiny_model.configure_optimizers().param_groups[0]
    assert (group["weight_decay"], group["lr"], group["betas"]) == (WEIGHT_DECAY, LEARNING_RATE, BETAS)
    cfg = TrainConfig()
    assert (cfg.weight_decay, cfg.learning_rate, cfg.betas) == (WEIGHT_DECAY, LEARNING_RATE, BETAS)
    assert tiny_model.configure_optimizers(betas=[0.8, 0.9]).param_groups[0]["betas"] == (0.8, 0.9)


def test_former_parameter_names_map_both_ways():
    assert current_name("stem.pos_emb") == "embeddings.pos_emb"
    assert current_name("head.head.weight") == "head.proj.weight"
    assert current_name("blocks.0.attn.key.weight") == "blocks.0.attn.key.weight"
    names = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4)).state_dict()
    for name in names:
        assert current_name(former_name(name)) == name
    assert {former_name(n) for n in names} >= {"stem.tok_emb.weight", "stem.pos_emb", "head.head.weight"}
    assert all(new.endswith(".") and old.endswith(".") for old, new in FORMER_NAMES.items())


def test_configure_optimizers_trains(tiny_model, tiny_config):
    tiny_model.train()
    opt = tiny_model.configure_optimizers(learning_rate=1e-2)
    idx = torch.randint(0, tiny_config.vocab_size, (4, tiny_config.block_size))
    _, first = tiny_model(idx, idx)
    for _ in range(20):
        _, loss = tiny_model(idx, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first.item() - 0.5


def expected_parameters(c: GPTConfig) -> int:
    """Parameters of minGPT with an untied, bias-free head.

    token table V*C + position table T*C; per block: two LayerNorms (2*2C), four CxC attention
    Linears with bias (4(C^2 + C)), MLP C->4C->C with biases (8C^2 + 5C); final LayerNorm 2C; head C*V.
    """
    V, Tb, C, L = c.vocab_size, c.block_size, c.n_embd, c.n_layer
    per_block = 4 * C + 4 * (C * C + C) + 8 * C * C + 5 * C  # = 12C^2 + 13C
    return V * C + Tb * C + L * per_block + 2 * C + C * V


@pytest.mark.parametrize(
    "config",
    [
        GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16),
        GPTConfig(vocab_size=3, block_size=1, n_layer=1, n_head=1, n_embd=1),
        GPTConfig.preset("gpt-nano", vocab_size=65, block_size=32),
    ],
)
def test_parameter_count(config):
    assert GPT(config).num_parameters() == expected_parameters(config)


def test_parameter_count_gpt2_size():
    """GPT-2 small is 124,439,808 parameters with its head tied to wte; gptlib's head is separate."""
    config = GPTConfig.preset("gpt2", vocab_size=50257, block_size=1024)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = GPT(config)
    assert model.num_parameters() == expected_parameters(config) == 124_439_808 + 50257 * 768


def error(model, *args) -> str:
    with pytest.raises(ValueError) as info:
        model(*args)
    return str(info.value)


def test_bad_inputs_to_forward(tiny_model, tiny_config):
    V, bs = tiny_config.vocab_size, tiny_config.block_size
    good = torch.randint(0, V, (2, 4))
    msg = error(tiny_model, torch.zeros(1, bs + 1, dtype=torch.long))
    assert (
        f"{bs + 1} tokens" in msg and f"block_size (longest context) is {bs}" in msg and f"[:, -{bs}:]" in msg
    )
    assert "torch.long" in error(tiny_model, good.float()) and "float32" in error(tiny_model, good.float())
    assert "dtype torch.bool" in error(tiny_model, good > 0)
    assert "dtype torch.uint8" in error(tiny_model, good.to(torch.uint8))
    assert "unsqueeze(0)" in error(tiny_model, torch.tensor([1, 2, 3]))
    assert "(B, T)" in error(tiny_model, good.view(2, 2, 2))
    assert "empty" in error(tiny_model, torch.zeros(1, 0, dtype=torch.long))
    assert "empty" in error(tiny_model, torch.zeros(0, 3, dtype=torch.long))
    assert "torch.Tensor" in error(tiny_model, [[1, 2]])
    msg = error(tiny_model, torch.tensor([[1, V]]))
    assert f"token id {V}" in msg and f"0..{V - 1}" in msg and f"vocab_size={V}" in msg
    assert "token id -1" in error(tiny_model, torch.tensor([[-1, 2]]))
    msg = error(tiny_model, good, good[:, :3])
    assert "targets" in msg and "(2, 4)" in msg and "(2, 3)" in msg
    assert "targets.long()" in error(tiny_model, good, good.float())
    assert f"target id {V}" in error(tiny_model, good, torch.full((2, 4), V))
    assert "target id -2" in error(tiny_model, good, torch.full((2, 4), -2))
    # int32 ids and -1 targets are fine
    logits, loss = tiny_model(good.int(), torch.full((2, 4), -1).index_fill(1, torch.tensor([3]), 1))
    assert logits.shape == (2, 4, V) and torch.isfinite(loss)
    with pytest.raises(ValueError, match="needs a GPTConfig"):
        GPT({"vocab_size": 3})
