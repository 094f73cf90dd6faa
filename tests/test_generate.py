"""Generation: greedy and sampled tokens with and without the KV cache, the filters, argument checks."""

import math

import pytest
import torch

from gptlib.config import GPTConfig
from gptlib.generate import check_sampling_args, generate, next_token, top_k_filter, top_p_filter
from gptlib.kvcache import KVCache, LayerCache
from gptlib.model import GPT

CONFIG = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)
BS = CONFIG.block_size


@pytest.fixture(scope="module")
def model() -> GPT:
    """A model with large random weights, so its next-token distributions are far from uniform."""
    torch.manual_seed(0)
    m = GPT(CONFIG)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return m.eval()


def greedy_by_hand(model: GPT, idx: torch.Tensor, n: int) -> torch.Tensor:
    """The plainest greedy loop: re-run the cropped context for every token."""
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(idx[:, -BS:])
            idx = torch.cat((idx, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return idx


def prompt(T: int, B: int = 2) -> torch.Tensor:
    return torch.randint(0, CONFIG.vocab_size, (B, T), generator=torch.Generator().manual_seed(T))


@pytest.mark.parametrize("T", [1, BS - 1, BS, BS + 3])
def test_greedy_with_and_without_cache(model, T):
    idx = prompt(T)
    n = 2 * BS + 1  # well past block_size: the window slides
    expected = greedy_by_hand(model, idx, n)
    cached = model.generate(idx, n, use_cache=True)
    uncached = model.generate(idx, n, use_cache=False)
    assert cached.shape == (2, T + n)
    assert torch.equal(cached[:, :T], idx)
    assert torch.equal(cached, expected)
    assert torch.equal(uncached, expected)
    assert len(set(expected[0, T:].tolist())) > 1  # a non-trivial continuation, not one repeated token


def test_cached_logits_equal_full_logits(model):
    """Step by step, the one-position forward with a cache gives the full forward's last logits."""
    idx = prompt(BS)
    cache = KVCache(CONFIG.n_layer, BS)
    with torch.no_grad():
        logits, _ = model(idx[:, :3], cache=cache)
        torch.testing.assert_close(logits, model(idx[:, :3])[0], atol=1e-5, rtol=1e-5)
        for t in range(3, BS):
            step, _ = model(idx[:, t : t + 1], cache=cache)
            full, _ = model(idx[:, : t + 1])
            torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)
    assert len(cache) == cache.length == BS


@pytest.mark.parametrize("T", [1, BS, BS + 2])
@pytest.mark.parametrize(
    "kw", [{}, {"top_k": 3}, {"top_p": 0.7}, {"temperature": 1.7, "top_k": 5, "top_p": 0.9}]
)
def test_sampling_is_reproducible_and_cache_independent(model, T, kw):
    idx = prompt(T)
    runs = [
        model.generate(idx, 12, do_sample=True, use_cache=c, generator=torch.Generator().manual_seed(7), **kw)
        for c in (True, False, True)
    ]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    other = model.generate(idx, 12, do_sample=True, generator=torch.Generator().manual_seed(8), **kw)
    greedy = model.generate(idx, 12)
    assert not (torch.equal(other, runs[0]) and torch.equal(greedy, runs[0]))  # sampling does sample


def test_zero_new_tokens_and_function_form(model):
    idx = prompt(4)
    assert torch.equal(model.generate(idx, 0), idx)
    assert torch.equal(generate(model, idx, 5), model.generate(idx, 5))


def test_generate_restores_mode_and_ignores_dropout():
    torch.manual_seed(0)
    m = GPT(CONFIG.replace(embd_pdrop=0.5, resid_pdrop=0.5, attn_pdrop=0.5))
    idx = prompt(3)
    m.train()
    a = m.generate(idx, 6)
    assert m.training
    b = m.generate(idx, 6)
    assert torch.equal(a, b)  # no dropout while generating
    m.eval()
    assert torch.equal(m.generate(idx, 6), a)
    assert not m.training


def probs_to_logits(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows).log()


def kept(logits: torch.Tensor) -> list[list[int]]:
    return [torch.nonzero(torch.isfinite(row)).flatten().tolist() for row in logits]


@pytest.mark.parametrize(
    "p, expected",
    [(0.3, [0]), (0.49, [0]), (0.51, [0, 1]), (0.74, [0, 1]), (0.76, [0, 1, 2]), (0.99, [0, 1, 2, 3])],
)
def test_top_p_keeps_smallest_set_reaching_p(p, expected):
    logits = probs_to_logits([0.5, 0.25, 0.15, 0.1])
    assert kept(top_p_filter(logits, p)) == [expected]
    # the same distribution in shuffled vocabulary order keeps the same tokens
    perm = torch.tensor([2, 0, 3, 1])
    assert sorted(perm[kept(top_p_filter(logits[:, perm], p))[0]].tolist()) == expected


def test_top_p_rows_are_independent_and_values_unchanged():
    logits = probs_to_logits([0.1, 0.6, 0.3], [0.34, 0.33, 0.33])
    out = top_p_filter(logits, 0.8)
    assert kept(out) == [[1, 2], [0, 1, 2]]
    finite = torch.isfinite(out)
    assert torch.equal(out[finite], logits[finite])
    assert kept(top_p_filter(probs_to_logits([0.97, 0.01, 0.01, 0.01]), 0.5)) == [[0]]


def test_top_k():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    assert kept(top_k_filter(logits, 2)) == [[1, 3], [0, 1]]
    assert kept(top_k_filter(logits, 1)) == [[1], [0]]
    assert kept(top_k_filter(logits, 99)) == [[0, 1, 2, 3, 4]] * 2  # k larger than the vocabulary keeps all


def test_next_token():
    logits = probs_to_logits([0.1, 0.6, 0.3], [0.7, 0.2, 0.1])
    assert next_token(logits).tolist() == [[1], [0]]
    g = torch.Generator().manual_seed(0)
    assert next_token(logits, do_sample=True, top_k=1, generator=g).tolist() == [[1], [0]]
    assert next_token(logits, do_sample=True, temperature=1e-3, generator=g).tolist() == [[1], [0]]
    many = logits.repeat_interleave(3000, dim=0)  # rows 0..2999 are distribution 0, the rest distribution 1
    # top_p=0.65: distribution 0 needs {1, 2} (0.6 < 0.65), distribution 1 only {0} (0.7 >= 0.65)
    draws = next_token(many, do_sample=True, top_p=0.65, generator=g).flatten()
    assert set(draws[:3000].tolist()) == {1, 2} and set(draws[3000:].tolist()) == {0}
    assert abs((draws[:3000] == 1).float().mean().item() - 0.6 / 0.9) < 0.03
    # top_k=2 keeps {1, 2} and {0, 1}; the frequencies follow the renormalised probabilities
    draws = next_token(many, do_sample=True, top_k=2, generator=g).flatten()
    assert set(draws[:3000].tolist()) == {1, 2} and set(draws[3000:].tolist()) == {0, 1}
    assert abs((draws[3000:] == 0).float().mean().item() - 0.7 / 0.9) < 0.03
    # no filter: all three tokens, at about their probabilities
    draws = next_token(many, do_sample=True, generator=g).flatten()
    assert abs((draws[:3000] == 2).float().mean().item() - 0.3) < 0.03


def test_temperature_flattens_and_sharpens():
    logits = probs_to_logits([0.5, 0.3, 0.2]).expand(3000, 3)

    def freq_of_top(t: float) -> float:
        draws = next_token(logits, t, do_sample=True, generator=torch.Generator().manual_seed(1))
        return (draws == 0).float().mean().item()

    assert freq_of_top(0.3) > 0.8 > 0.6 > freq_of_top(1.0) > 0.4 > freq_of_top(10.0) > 0.3


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"temperature": 0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"temperature": math.nan}, "temperature must be > 0"),
        ({"temperature": "1"}, "temperature must be > 0"),
        ({"top_k": 0}, "top_k must be a whole number >= 1"),
        ({"top_k": -2}, "top_k must be a whole number >= 1"),
        ({"top_k": 2.5}, "top_k must be a whole number >= 1"),
        ({"top_k": True}, "top_k must be a whole number >= 1"),
        ({"top_p": 0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"top_p": -0.1}, r"top_p must be in \(0, 1\]"),
        ({"max_new_tokens": -1}, "max_new_tokens must be a whole number >= 0"),
        ({"max_new_tokens": 2.0}, "max_new_tokens must be a whole number >= 0"),
        ({"max_new_tokens": True}, "max_new_tokens must be a whole number >= 0"),
    ],
)
def test_invalid_arguments(model, kw, match):
    kw = {"max_new_tokens": 3, **kw}
    with pytest.raises(ValueError, match=match):
        model.generate(prompt(2), do_sample=True, **kw)


def test_invalid_prompts(model):
    with pytest.raises(ValueError, match="unsqueeze"):
        model.generate(torch.tensor([1, 2]), 3)
    with pytest.raises(ValueError, match="torch.long"):
        model.generate(prompt(2).float(), 3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate(torch.tensor([[1, CONFIG.vocab_size]]), 3)
    with pytest.raises(ValueError, match="empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    # a long prompt is fine: only its last block_size tokens are used
    long = prompt(3 * BS)
    assert torch.equal(model.generate(long, 2)[:, -2:], model.generate(long[:, -BS:], 2)[:, -2:])


def test_check_sampling_args_accepts_sensible_values():
    check_sampling_args(1, None, None)
    check_sampling_args(0.7, 1, 1.0)
    check_sampling_args(2.0, 50, 0.01)


def test_layer_cache_overflow():
    cache = LayerCache(capacity=4)
    k = torch.randn(1, 2, 3, 5)
    cache.update(k, k)
    with pytest.raises(ValueError) as info:
        cache.update(k[:, :, :2], k[:, :, :2])
    msg = str(info.value)
    assert "KV cache full" in msg and "holds 3" in msg and "2 more" in msg and "block_size=4" in msg
    assert cache.length == 3  # the failed update changed nothing
    k_all, _ = cache.update(k[:, :, :1], k[:, :, :1])
    assert k_all.shape == (1, 2, 4, 5) and torch.equal(k_all[:, :, :3], k)


def test_model_refuses_to_overrun_its_cache(model):
    cache = KVCache(CONFIG.n_layer, BS)
    with torch.no_grad():
        model(prompt(6), cache=cache)
        with pytest.raises(ValueError, match="6 cached \\+ 3 new tokens"):
            model(prompt(3), cache=cache)
        assert cache.length == 6
