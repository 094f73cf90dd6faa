"""GPTConfig: validation with messages that say what to change, presets, and dict round trips."""

import dataclasses

import pytest

from gptlib.config import PRESETS, GPTConfig
from gptlib.train import TrainConfig

SIZES = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)


def test_defaults_and_head_size():
    c = GPTConfig(vocab_size=65, block_size=32)
    assert (c.n_layer, c.n_head, c.n_embd) == (4, 4, 128)
    assert (c.embd_pdrop, c.resid_pdrop, c.attn_pdrop) == (0.1, 0.1, 0.1)
    assert c.gelu_approximate == "none" and c.layer_norm_eps == 1e-5
    assert c.head_size == 32


def test_n_embd_not_divisible_by_n_head_says_what_to_try():
    with pytest.raises(ValueError) as info:
        GPTConfig(**{**SIZES, "n_embd": 50, "n_head": 4})
    msg = str(info.value)
    assert "n_embd (50)" in msg and "n_head (4)" in msg and "n_embd=48" in msg


@pytest.mark.parametrize("field", ["vocab_size", "block_size", "n_layer", "n_head", "n_embd"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes(field, value):
    with pytest.raises(ValueError, match=rf"GPTConfig\.{field} must be positive, got {value}"):
        GPTConfig(**{**SIZES, field: value})


@pytest.mark.parametrize("field", ["vocab_size", "block_size", "n_layer", "n_head", "n_embd"])
@pytest.mark.parametrize("value", [True, 4.0, "4", None])
def test_sizes_must_be_whole_numbers(field, value):
    with pytest.raises(ValueError, match=rf"GPTConfig\.{field} must be a whole number, got {value!r}"):
        GPTConfig(**{**SIZES, field: value})


@pytest.mark.parametrize("field", ["embd_pdrop", "resid_pdrop", "attn_pdrop"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, True, "0.1"])
def test_dropout_outside_unit_interval(field, value):
    with pytest.raises(ValueError) as info:
        GPTConfig(**{**SIZES, field: value})
    msg = str(info.value)
    assert field in msg and "[0, 1)" in msg and repr(value) in msg and "0.0 for no dropout" in msg


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.999])
def test_dropout_inside_unit_interval(value):
    assert GPTConfig(**SIZES, attn_pdrop=value).attn_pdrop == value


def test_gelu_kind_and_layer_norm_eps():
    assert GPTConfig(**SIZES, gelu_approximate="tanh").gelu_approximate == "tanh"
    with pytest.raises(ValueError, match="gelu_approximate must be one of"):
        GPTConfig(**SIZES, gelu_approximate="fast")
    with pytest.raises(ValueError, match="layer_norm_eps must be positive"):
        GPTConfig(**SIZES, layer_norm_eps=0.0)


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("gpt-nano", (3, 3, 48)),
        ("gpt-micro", (4, 4, 128)),
        ("gpt-mini", (6, 6, 192)),
        ("gpt1", (12, 12, 768)),
        ("gpt2", (12, 12, 768)),
        ("gpt2-medium", (24, 16, 1024)),
        ("gpt2-large", (36, 20, 1280)),
        ("gpt2-xl", (48, 25, 1600)),
    ],
)
def test_presets(name, sizes):
    assert PRESETS[name] == sizes
    c = GPTConfig.preset(name, vocab_size=50257, block_size=1024)
    assert (c.n_layer, c.n_head, c.n_embd) == sizes
    assert (c.vocab_size, c.block_size) == (50257, 1024)


def test_every_preset_is_a_valid_config():
    for name in PRESETS:
        assert GPTConfig.preset(name, vocab_size=10, block_size=4).n_embd % PRESETS[name][1] == 0


def test_preset_overrides_are_validated():
    c = GPTConfig.preset("gpt-nano", vocab_size=10, block_size=4, n_layer=1, embd_pdrop=0.0)
    assert (c.n_layer, c.n_head, c.n_embd, c.embd_pdrop) == (1, 3, 48, 0.0)
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig.preset("gpt-nano", vocab_size=10, block_size=4, n_head=5)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        GPTConfig.preset("gpt-5", vocab_size=10, block_size=4)
    msg = str(info.value)
    assert "'gpt-5'" in msg and "gpt-nano" in msg and "gpt2-xl" in msg


def test_replace_validates_and_copies():
    c = GPTConfig(**SIZES)
    d = c.replace(n_layer=5)
    assert d.n_layer == 5 and c.n_layer == 2
    with pytest.raises(ValueError, match="n_layer must be positive"):
        c.replace(n_layer=0)


def test_dict_round_trip_and_unknown_fields():
    c = GPTConfig(**SIZES, gelu_approximate="tanh")
    assert GPTConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"unknown GPTConfig fields \['n_heads'\]"):
        GPTConfig.from_dict({**SIZES, "n_heads": 2})
    with pytest.raises(ValueError, match="must be positive"):
        GPTConfig.from_dict({**SIZES, "vocab_size": 0})


@pytest.mark.parametrize("config", [GPTConfig(**SIZES), TrainConfig()], ids=["GPTConfig", "TrainConfig"])
def test_configs_are_frozen_and_share_one_way_to_copy_and_serialise(config):
    field = dataclasses.fields(config)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, field, getattr(config, field))  # changed copies come from replace()
    assert type(config).from_dict(config.to_dict()) == config
    assert hash(config) == hash(type(config).from_dict(config.to_dict()))  # usable as a dict key
    assert type(config).replace is GPTConfig.replace and type(config).to_dict is GPTConfig.to_dict


def test_train_config_betas_from_a_list_become_a_tuple():
    assert TrainConfig(betas=[0.8, 0.9]).betas == (0.8, 0.9)
    assert TrainConfig.from_dict({"betas": [0.8, 0.9]}) == TrainConfig(betas=(0.8, 0.9))
