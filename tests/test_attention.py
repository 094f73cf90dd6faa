"""CausalSelfAttention: the fast (SDPA) path equals the explicit path, the weights are causal and sum to 1."""

import math

import pytest
import torch

from gptlib.attention import CausalSelfAttention
from gptlib.config import GPTConfig
from gptlib.kvcache import LayerCache
from gptlib.model import GPT

CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=32)


def attention(config: GPTConfig = CONFIG) -> CausalSelfAttention:
    torch.manual_seed(0)
    return CausalSelfAttention(config).eval()


def by_hand(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Single-head-at-a-time attention with loops: an independent statement of what the module computes."""
    B, T, C = x.shape
    hs = C // attn.n_head
    q, k, v = attn.query(x), attn.key(x), attn.value(x)
    out = torch.zeros(B, T, C)
    for h in range(attn.n_head):
        cols = slice(h * hs, (h + 1) * hs)
        for t in range(T):
            scores = (
                q[:, t, cols].unsqueeze(1) @ k[:, : t + 1, cols].transpose(1, 2) / math.sqrt(hs)
            )  # (B, 1, t+1)
            out[:, t, cols] = (scores.softmax(-1) @ v[:, : t + 1, cols]).squeeze(1)
    return attn.proj(out)


@pytest.mark.parametrize("T", [1, 5, 8])
def test_shapes_and_both_paths_equal(T):
    attn = attention()
    x = torch.randn(2, T, CONFIG.n_embd)
    with torch.no_grad():
        fast = attn(x)
        explicit, weights = attn(x, return_weights=True)
        expected = by_hand(attn, x)
    assert fast.shape == explicit.shape == (2, T, CONFIG.n_embd)
    assert weights.shape == (2, CONFIG.n_head, T, T)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=1e-5)


def test_weights_are_causal_distributions():
    attn = attention()
    _, w = attn(torch.randn(3, 8, CONFIG.n_embd), return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, CONFIG.n_head, 8))
    upper = torch.triu(torch.ones(8, 8, dtype=torch.bool), diagonal=1)
    assert (w[..., upper] == 0).all()  # exactly zero, not just small
    assert (w[..., ~upper] > 0).all()
    assert torch.equal(w[..., 0, 0], torch.ones(3, CONFIG.n_head))  # the first position sees only itself


def test_mask_is_not_saved():
    attn = attention()
    assert "mask" not in attn.state_dict()
    assert attn.mask.shape == (1, 1, CONFIG.block_size, CONFIG.block_size) and attn.mask.dtype == torch.bool


def test_whole_model_fast_equals_explicit():
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        idx = torch.randint(0, CONFIG.vocab_size, (2, 8))
        fast, _ = model(idx)
        x = model.embeddings(idx)
        for block in model.blocks:
            x, _ = block(x, return_weights=True)
        explicit, _ = model.head(x)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)


def test_attention_maps():
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    idx = torch.randint(0, CONFIG.vocab_size, (2, 6))
    maps = model.attention_maps(idx)
    assert len(maps) == CONFIG.n_layer
    upper = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    for w in maps:
        assert w.shape == (2, CONFIG.n_head, 6, 6)
        assert not w.requires_grad
        torch.testing.assert_close(w.sum(-1), torch.ones(2, CONFIG.n_head, 6))
        assert (w[..., upper] == 0).all()
    # the first layer's map is the first block's attention on ln1 of the embeddings' output
    with torch.no_grad():
        _, first = model.blocks[0].attn(model.blocks[0].ln1(model.embeddings(idx)), return_weights=True)
    torch.testing.assert_close(maps[0], first)
    assert not model.training
    model.train()
    model.attention_maps(idx)
    assert model.training  # attention_maps leaves the mode alone
    with pytest.raises(ValueError, match="block_size"):
        model.attention_maps(torch.zeros(1, 9, dtype=torch.long))


def test_attention_dropout_only_in_train_mode():
    attn = attention(CONFIG.replace(attn_pdrop=0.5, resid_pdrop=0.0))
    x = torch.randn(2, 8, CONFIG.n_embd)
    attn.train()
    assert not torch.allclose(attn(x), attn(x))
    _, w = attn(x, return_weights=True)
    torch.testing.assert_close(
        w.sum(-1), torch.ones(2, CONFIG.n_head, 8)
    )  # weights are reported before dropout
    attn.eval()
    assert torch.equal(attn(x), attn(x))


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("chunks", [(8,), (3, 5), (1, 1, 1, 1, 4), (5, 1, 2)])
def test_cache_in_chunks_equals_one_pass(chunks, explicit):
    """Feeding the sequence in pieces through a LayerCache gives the one-pass outputs (every path of forward)."""
    attn = attention()
    x = torch.randn(2, 8, CONFIG.n_embd)
    with torch.no_grad():
        full = attn(x)
        cache = LayerCache(CONFIG.block_size)
        outs, start = [], 0
        for n in chunks:
            y = attn(x[:, start : start + n], cache=cache, return_weights=explicit)
            outs.append(y[0] if explicit else y)
            start += n
    assert cache.length == 8
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


def test_scale_is_one_over_sqrt_head_size():
    """With q = k = x (identity projections), the weights are softmax(x x^T / sqrt(hs)) under the mask."""
    config = GPTConfig(vocab_size=3, block_size=4, n_layer=1, n_head=1, n_embd=16)
    attn = attention(config)
    with torch.no_grad():
        for lin in (attn.query, attn.key):
            lin.weight.copy_(torch.eye(16))
            lin.bias.zero_()
    x = torch.randn(1, 4, 16)
    _, w = attn(x, return_weights=True)
    scores = (x[0] @ x[0].T) / 4.0
    scores = scores.masked_fill(torch.triu(torch.ones(4, 4, dtype=torch.bool), 1), float("-inf"))
    torch.testing.assert_close(w[0, 0], scores.softmax(-1))
