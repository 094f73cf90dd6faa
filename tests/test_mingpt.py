"""gptlib.interop.from_mingpt / to_mingpt against an independent seed-style minGPT (tests/mingpt_reference.py)."""

import mingpt_reference as ref
import pytest
import torch

from gptlib.config import GPTConfig
from gptlib.interop import from_mingpt, to_mingpt
from gptlib.model import GPT

SIZES = dict(vocab_size=13, block_size=10, n_layer=3, n_head=4, n_embd=32)


def trained_looking_reference(seed: int = 0) -> ref.GPT:
    """A reference minGPT whose every weight is random and non-trivial (LayerNorms and pos_emb too)."""
    torch.manual_seed(seed)
    model = ref.GPT(ref.GPTConfig(**SIZES))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))  # so a swapped or skipped tensor changes the output
    return model.eval()


def batch(seed: int = 1, B: int = 3, T: int = SIZES["block_size"]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, SIZES["vocab_size"], (B, T), generator=g)
    targets = torch.randint(0, SIZES["vocab_size"], (B, T), generator=g)
    return idx, targets


def test_reference_keys_are_the_seed_layout():
    keys = set(ref.GPT(ref.GPTConfig(**SIZES)).state_dict())
    for k in (
        "tok_emb.weight",
        "pos_emb",
        "ln_f.weight",
        "ln_f.bias",
        "head.weight",
        "blocks.2.attn.mask",
        "blocks.0.attn.query.bias",
        "blocks.1.mlp.0.weight",
        "blocks.1.mlp.2.bias",
    ):
        assert k in keys
    assert "head.bias" not in keys


@pytest.mark.parametrize("T", [1, 4, SIZES["block_size"]])
def test_from_mingpt_reproduces_logits_and_loss(T):
    reference = trained_looking_reference()
    model = from_mingpt(reference.state_dict(), GPTConfig(**SIZES))
    assert not model.training
    idx, targets = batch(T=T)
    with torch.no_grad():
        ref_logits, ref_loss = reference(idx, targets)
        logits, loss = model(idx, targets)
    assert logits.shape == ref_logits.shape == (3, T, SIZES["vocab_size"])
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)


def test_from_mingpt_accepts_a_mingpt_style_config():
    reference = trained_looking_reference()
    config = ref.GPTConfig(**SIZES)
    config.embd_pdrop = 0.2
    model = from_mingpt(reference.state_dict(), config)
    assert isinstance(model, GPT)
    assert model.config.n_head == 4 and model.config.embd_pdrop == 0.2
    idx, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], reference(idx)[0], atol=1e-5, rtol=1e-5)


def test_from_mingpt_strips_compile_prefix_and_needs_no_mask():
    reference = trained_looking_reference()
    sd = {f"_orig_mod.{k}": v for k, v in reference.state_dict().items() if not k.endswith("attn.mask")}
    model = from_mingpt(sd, GPTConfig(**SIZES))
    idx, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], reference(idx)[0], atol=1e-5, rtol=1e-5)


def test_from_mingpt_copies_rather_than_shares():
    reference = trained_looking_reference()
    model = from_mingpt(reference.state_dict(), GPTConfig(**SIZES))
    with torch.no_grad():
        reference.tok_emb.weight.zero_()
    assert model.embeddings.tok_emb.weight.abs().sum() > 0


def test_to_mingpt_round_trip():
    reference = trained_looking_reference()
    model = from_mingpt(reference.state_dict(), GPTConfig(**SIZES))
    sd = to_mingpt(model)
    expected = reference.state_dict()
    assert list(sd) == list(expected)  # same names, in the same order, mask buffers included
    for k, v in expected.items():
        assert sd[k].shape == v.shape and sd[k].dtype == v.dtype, k
        torch.testing.assert_close(sd[k], v, atol=0, rtol=0)
    # and it loads strictly into a fresh seed-style model, which then computes the same logits
    torch.manual_seed(123)
    fresh = ref.GPT(ref.GPTConfig(**SIZES)).eval()
    fresh.load_state_dict(sd, strict=True)
    idx, _ = batch(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(fresh(idx)[0], model(idx)[0], atol=1e-5, rtol=1e-5)
    # gptlib -> minGPT -> gptlib gives back the identical weights
    again = from_mingpt(sd, model.config)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


def test_greedy_generation_matches_mingpt_sample():
    reference = trained_looking_reference()
    model = from_mingpt(reference.state_dict(), GPTConfig(**SIZES))
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    steps = 2 * SIZES["block_size"]  # past block_size, so the context window slides
    expected = ref.sample(reference, prompt, steps)
    assert torch.equal(model.generate(prompt, steps), expected)
    assert torch.equal(model.generate(prompt, steps, use_cache=False), expected)


def error_for(state_dict, config) -> str:
    with pytest.raises(ValueError) as info:
        from_mingpt(state_dict, config)
    return str(info.value)


def test_wrong_n_layer_lists_keys_and_suggests_sizes():
    sd = trained_looking_reference().state_dict()
    msg = error_for(sd, GPTConfig(**{**SIZES, "n_layer": 2}))
    assert "Unexpected keys" in msg and "blocks.2.ln1.weight" in msg
    assert "n_layer=3" in msg  # what the checkpoint holds
    msg = error_for(sd, GPTConfig(**{**SIZES, "n_layer": 4}))
    assert "Missing keys" in msg and "blocks.3.attn.key.weight" in msg


def test_wrong_width_reports_expected_and_found_shapes():
    sd = trained_looking_reference().state_dict()
    msg = error_for(sd, GPTConfig(**{**SIZES, "n_embd": 16}))
    assert "Shape mismatches" in msg
    assert "tok_emb.weight: expected (13, 16), found (13, 32)" in msg
    assert "n_embd=32" in msg and "check n_layer, n_embd" in msg
    msg = error_for(sd, GPTConfig(**{**SIZES, "vocab_size": 14}))
    assert "head.weight: expected (14, 32), found (13, 32)" in msg and "vocab_size=13" in msg
    msg = error_for(sd, GPTConfig(**{**SIZES, "block_size": 12}))
    assert "pos_emb: expected (1, 12, 32), found (1, 10, 32)" in msg and "block_size=10" in msg


def test_missing_and_extra_keys():
    sd = dict(trained_looking_reference().state_dict())
    del sd["blocks.1.mlp.2.bias"]
    sd["head.bias"] = torch.zeros(SIZES["vocab_size"])
    msg = error_for(sd, GPTConfig(**SIZES))
    assert "Missing keys (1): blocks.1.mlp.2.bias" in msg
    assert "Unexpected keys (1): head.bias" in msg


def test_gptlib_names_are_recognised():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SIZES))
    msg = error_for(model.state_dict(), GPTConfig(**SIZES))
    assert "gptlib's own names" in msg and "load_state_dict" in msg


def test_gpt2_names_are_recognised():
    sd = {"transformer.wte.weight": torch.zeros(13, 32), "lm_head.weight": torch.zeros(13, 32)}
    assert "gptlib.gpt2.from_hf_gpt2" in error_for(sd, GPTConfig(**SIZES))


def test_bad_config_and_bad_state_dict():
    sd = trained_looking_reference().state_dict()

    class NoHeads:
        vocab_size, block_size, n_layer, n_embd = 13, 10, 3, 32

    assert "lacks n_head" in error_for(sd, NoHeads())
    assert "mapping" in error_for([1, 2, 3], GPTConfig(**SIZES))
    with pytest.raises(ValueError, match="gptlib GPT"):
        to_mingpt(trained_looking_reference())


def test_the_converters_are_at_the_top_level():
    import gptlib
    from gptlib import gpt2, interop

    assert gptlib.from_mingpt is interop.from_mingpt and gptlib.to_mingpt is interop.to_mingpt
    assert gptlib.from_hf_gpt2 is gpt2.from_hf_gpt2 and gptlib.from_pretrained is gpt2.from_pretrained
    assert {"from_mingpt", "to_mingpt", "from_hf_gpt2", "to_hf_gpt2", "from_pretrained"} <= set(
        gptlib.__all__
    )
