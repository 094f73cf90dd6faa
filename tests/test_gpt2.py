"""GPT-2 interop: a Hugging Face GPT-2 converted to gptlib computes the same logits, tokens and attention.

Everything runs offline: the Hugging Face models are small, randomly initialised
GPT2LMHeadModels, and the "Hub" is a cache folder written in tmp_path.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from gptlib.config import GPTConfig
from gptlib.gpt2 import (
    GPT2Tokenizer,
    HubUnavailableError,
    config_from_hf,
    from_hf_gpt2,
    from_pretrained,
    gpt2_tokenizer,
    to_hf_gpt2,
)
from gptlib.model import GPT

V, T, C = 101, 24, 32  # vocabulary, context (n_positions), channels of the small test GPT-2


def make_hf(seed: int = 0, **config: object) -> GPT2LMHeadModel:
    """A 2-layer GPT-2 with every weight random (biases and LayerNorms too, so a mis-mapped one shows)."""
    torch.manual_seed(seed)
    kwargs = dict(
        n_layer=2, n_head=2, n_embd=C, vocab_size=V, n_positions=T, bos_token_id=None, eos_token_id=None
    )
    kwargs.update(config)
    hf = GPT2LMHeadModel(GPT2Config(**kwargs)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.normal_(1.0, 0.2)
            else:
                p.normal_(0.0, 0.5)
    return hf


def hf_logits(hf: GPT2LMHeadModel, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf(idx).logits


def gpt_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx)[0]


@pytest.fixture
def idx() -> torch.Tensor:
    return torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------------ HF -> gptlib


def test_logits_match_from_model(idx: torch.Tensor) -> None:
    hf = make_hf()
    model = from_hf_gpt2(hf)
    assert isinstance(model, GPT) and not model.training  # the HF model was in eval mode
    expected, got = hf_logits(hf, idx), gpt_logits(model, idx)
    assert got.shape == (3, T, V)
    assert expected.std() > 1.0  # logits far from zero, so the comparison below means something
    assert (got - expected).abs().max() < 1e-4


def test_logits_match_from_state_dicts(idx: torch.Tensor) -> None:
    hf = make_hf()
    expected = hf_logits(hf, idx)
    # GPT2LMHeadModel's state dict ('transformer.' keys, lm_head.weight) with its config object.
    a = from_hf_gpt2(hf.state_dict(), hf.config).eval()
    # GPT2Model's (no prefix, no lm_head: the head is wte) with config.json as a dict.
    b = from_hf_gpt2(hf.transformer.state_dict(), json.loads(hf.config.to_json_string())).eval()
    for model in (a, b):
        assert (gpt_logits(model, idx) - expected).abs().max() < 1e-4


def test_bare_state_dict_needs_n_head_unless_known(idx: torch.Tensor) -> None:
    hf = make_hf()
    with pytest.raises(ValueError, match="n_head"):
        from_hf_gpt2(hf.state_dict())
    model = from_hf_gpt2(hf.state_dict(), n_head=2).eval()
    assert model.config.gelu_approximate == "tanh" and model.config.block_size == T
    assert (gpt_logits(model, idx) - hf_logits(hf, idx)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="contradicts"):
        from_hf_gpt2(hf.state_dict(), hf.config, n_head=4)


def test_weights_are_split_transposed_and_the_head_untied() -> None:
    hf = make_hf()
    model = from_hf_gpt2(hf)
    h0, b0 = hf.transformer.h[0], model.blocks[0]
    w = h0.attn.c_attn.weight  # (C, 3C), columns [query | key | value]
    assert torch.equal(b0.attn.query.weight, w[:, :C].t())
    assert torch.equal(b0.attn.key.weight, w[:, C : 2 * C].t())
    assert torch.equal(b0.attn.value.weight, w[:, 2 * C :].t())
    assert torch.equal(b0.attn.value.bias, h0.attn.c_attn.bias[2 * C :])
    assert torch.equal(b0.mlp.fc.weight, h0.mlp.c_fc.weight.t())
    assert torch.equal(model.embeddings.pos_emb[0], hf.transformer.wpe.weight)
    # GPT-2 ties the head to wte; the converted model holds an equal but separate copy.
    assert torch.equal(model.head.proj.weight, model.embeddings.tok_emb.weight)
    assert model.head.proj.weight is not model.embeddings.tok_emb.weight
    assert model.head.proj.weight.data_ptr() != model.embeddings.tok_emb.weight.data_ptr()


def test_configure_optimizers_puts_each_parameter_in_one_group() -> None:
    model = from_hf_gpt2(make_hf())
    opt = model.configure_optimizers()
    ids = [id(p) for group in opt.param_groups for p in group["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    decay = {id(p) for p in opt.param_groups[0]["params"]}
    assert id(model.head.proj.weight) in decay and id(model.embeddings.tok_emb.weight) not in decay
    logits, loss = model(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long))
    loss.backward()
    before = model.head.proj.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head.proj.weight)


def test_config_fields_are_carried_over(idx: torch.Tensor) -> None:
    hf = make_hf(
        embd_pdrop=0.0, resid_pdrop=0.2, attn_pdrop=0.3, layer_norm_epsilon=1e-3, activation_function="gelu"
    )
    model = from_hf_gpt2(hf)
    cfg = model.config
    assert (cfg.embd_pdrop, cfg.resid_pdrop, cfg.attn_pdrop) == (0.0, 0.2, 0.3)
    assert cfg.layer_norm_eps == 1e-3 and model.blocks[1].ln2.eps == 1e-3
    assert cfg.gelu_approximate == "none"  # 'gelu' is the exact GELU, not GPT-2's tanh form
    assert (gpt_logits(model, idx) - hf_logits(hf, idx)).abs().max() < 1e-4
    overridden = from_hf_gpt2(hf, attn_pdrop=0.0, block_size=10)
    assert overridden.config.attn_pdrop == 0.0 and overridden.config.block_size == 10
    assert (gpt_logits(overridden, idx[:, :10]) - hf_logits(hf, idx[:, :10])).abs().max() < 1e-4


def test_reorder_and_upcast_attn_is_the_same_function_in_float32(idx: torch.Tensor) -> None:
    hf = make_hf(reorder_and_upcast_attn=True, attn_implementation="eager")
    model = from_hf_gpt2(hf)
    assert (gpt_logits(model, idx) - hf_logits(hf, idx)).abs().max() < 1e-4


def test_greedy_generation_gives_hf_tokens() -> None:
    hf = make_hf()
    model = from_hf_gpt2(hf)
    prompt = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf.generate(prompt, max_new_tokens=T - 4, do_sample=False)
    assert expected.shape == (3, T)
    for use_cache in (True, False):
        assert torch.equal(model.generate(prompt, T - 4, use_cache=use_cache), expected), use_cache


def test_attention_maps_match_hf() -> None:
    hf = make_hf(attn_implementation="eager")
    model = from_hf_gpt2(hf)
    idx = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = hf(idx, output_attentions=True).attentions
    got = model.attention_maps(idx)
    assert len(got) == len(expected) == 2
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape == (2, 2, 12, 12)
        assert (g - e).abs().max() < 1e-5


# ------------------------------------------------------------------------------------ what is refused


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scale_attn_by_inverse_layer_idx", True),
        ("add_cross_attention", True),
        ("scale_attn_weights", False),
        ("activation_function", "relu"),
        ("n_inner", 64),
        ("model_type", "openai-gpt"),
    ],
)
def test_configs_gptlib_cannot_represent_are_refused(field: str, value: object) -> None:
    config = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": C, "vocab_size": V, "n_positions": T}
    config[field] = value
    with pytest.raises(ValueError, match=field if field != "model_type" else "openai-gpt"):
        config_from_hf(config)


def test_a_refused_model_is_refused_by_from_hf_gpt2() -> None:
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        from_hf_gpt2(make_hf(scale_attn_by_inverse_layer_idx=True))


def test_bad_inputs_get_clear_errors() -> None:
    hf = make_hf()
    sd = hf.state_dict()
    missing = {k: v for k, v in sd.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ValueError, match=r"h\.1\.mlp\.c_fc\.bias"):
        from_hf_gpt2(missing, hf.config)
    wrong = dict(sd, **{"transformer.ln_f.weight": torch.ones(C + 1)})
    with pytest.raises(ValueError, match=r"ln_f\.weight.*shape"):
        from_hf_gpt2(wrong, hf.config)
    with pytest.raises(ValueError, match=r"h\.1\."):  # a 2-layer state dict into a 1-layer config
        from_hf_gpt2(sd, hf.config.to_dict() | {"n_layer": 1})
    with pytest.raises(ValueError, match="wte"):  # a gptlib state dict is not a GPT-2 one
        from_hf_gpt2(from_hf_gpt2(hf).state_dict(), n_head=2)
    with pytest.raises(ValueError, match="n_embd"):  # the weights fix the sizes
        from_hf_gpt2(hf, n_embd=64)
    with pytest.raises(ValueError, match="block_size"):
        from_hf_gpt2(hf, block_size=T + 1)
    with pytest.raises(ValueError, match="Hugging Face config"):
        from_hf_gpt2(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="state dict"):
        from_hf_gpt2([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="config= is for state dicts"):
        from_hf_gpt2(hf, hf.config)


# ------------------------------------------------------------------------------------ gptlib -> HF


def test_round_trip_gives_identical_logits(idx: torch.Tensor) -> None:
    hf = make_hf()
    model = from_hf_gpt2(hf)
    exported = to_hf_gpt2(model)
    assert isinstance(exported, GPT2LMHeadModel) and not exported.training
    assert exported.lm_head.weight is exported.transformer.wte.weight  # equal at conversion -> tied again
    assert (hf_logits(exported, idx) - hf_logits(hf, idx)).abs().max() < 1e-4
    back = from_hf_gpt2(exported)
    assert torch.equal(gpt_logits(back, idx), gpt_logits(model, idx))
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_export_of_a_gptlib_model_with_its_own_head(idx: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=4, n_embd=C)).eval()  # exact GELU
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    exported = to_hf_gpt2(model)
    assert not exported.config.tie_word_embeddings
    assert exported.config.activation_function == "gelu"
    assert torch.equal(exported.lm_head.weight, model.head.proj.weight)
    assert (hf_logits(exported, idx) - gpt_logits(model, idx)).abs().max() < 1e-4
    assert torch.equal(gpt_logits(from_hf_gpt2(exported), idx), gpt_logits(model, idx))
    with pytest.raises(ValueError, match="gptlib GPT"):
        to_hf_gpt2(exported)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ without transformers


def test_state_dict_conversion_needs_only_torch(monkeypatch: pytest.MonkeyPatch, idx: torch.Tensor) -> None:
    hf = make_hf()
    sd, config, expected = hf.state_dict(), hf.config.to_dict(), hf_logits(hf, idx)
    for name in ("transformers", "huggingface_hub", "safetensors", "safetensors.torch", "tokenizers"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    model = from_hf_gpt2(sd, config).eval()
    assert (gpt_logits(model, idx) - expected).abs().max() < 1e-4
    for call in (lambda: to_hf_gpt2(model), lambda: from_pretrained("gpt2"), gpt2_tokenizer):
        with pytest.raises(ImportError, match=r'pip install "gptlib-course\[gpt2\]"'):
            call()


# ------------------------------------------------------------------------------------ the Hub, offline


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HUB_OFFLINE=1 and an empty Hugging Face home: nothing may be downloaded."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "hf" / "hub"


def put_in_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Lay files out as huggingface_hub's cache does: refs/main names a snapshot folder holding them."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


def test_from_pretrained_offline_without_cache_fails_clearly(offline: Path) -> None:
    with pytest.raises(HubUnavailableError) as err:
        from_pretrained("gpt2")
    assert isinstance(err.value, RuntimeError)
    message = str(err.value)
    for part in ("openai-community/gpt2", "HF_HUB_OFFLINE", "internet once", str(offline), "from_hf_gpt2"):
        assert part in message
    with pytest.raises(HubUnavailableError, match="tokenizer.json"):
        gpt2_tokenizer()


def test_unreachable_hub_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as s:  # a local port that nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubUnavailableError, match="could not be reached"):
        from_pretrained("gpt2", cache_dir=tmp_path)


def test_unknown_model_name_is_refused_before_any_download() -> None:
    with pytest.raises(ValueError, match="gpt2-medium"):
        from_pretrained("gpt3")


def test_from_pretrained_reads_the_cache_offline(offline: Path, idx: torch.Tensor) -> None:
    hf = make_hf()
    weights = {k: v.contiguous() for k, v in hf.transformer.state_dict().items()}  # as the Hub stores them
    weights["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, T, T))  # the mask buffer old checkpoints carry
    path = offline.parent.parent / "model.safetensors"
    save_file(weights, str(path))
    files = {"config.json": hf.config.to_json_string().encode(), "model.safetensors": path.read_bytes()}
    put_in_hub_cache(offline, "someone/tiny-gpt2", files)
    model = from_pretrained("someone/tiny-gpt2")
    assert not model.training
    assert (gpt_logits(model, idx) - hf_logits(hf, idx)).abs().max() < 1e-4


def tiny_bpe_json() -> bytes:
    """A small byte-level BPE tokenizer.json (GPT-2's kind), trained here instead of downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["the cat sat on the mat", "the dog ate the cat's hat"] * 20, trainer)
    return tok.to_str().encode()


def test_gpt2_tokenizer_from_the_cache_offline(offline: Path) -> None:
    put_in_hub_cache(offline, "openai-community/gpt2", {"tokenizer.json": tiny_bpe_json()})
    tok = gpt2_tokenizer()
    assert isinstance(tok, GPT2Tokenizer)
    text = "the cat sat on the hat. Ünïcödé, 日本 <|endoftext|>"
    ids = tok.encode(text)
    assert len(ids) < len(text.encode("utf-8"))  # merges were applied
    assert ids[-1] == tok.eot_id == 0
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode_tensor(text)) == text
    assert all(0 <= i < tok.vocab_size for i in ids)
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="not an int"):
        tok.decode([1.5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="str"):
        tok.encode(b"bytes")  # type: ignore[arg-type]
