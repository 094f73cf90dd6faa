"""The lesson-08 KV cache checks: every correct variant passes, every known mistake gets its diagnosis.

The variants are written the ways learners write them: cached attention by matmul, einsum or
scaled_dot_product_attention (with gptlib's mask buffer or a mask of their own); generation
loops that stop before the unused last forward pass or run it, that start a new cache for the
slid window or run it without one, written with for or while.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gptlib.checks import (
    CheckFailure,
    NotDoneYet,
    check_kv_cache_attention,
    check_kv_cache_generate,
    show_hints,
)
from gptlib.generate import next_token
from gptlib.kvcache import KVCache

NEG_INF = float("-inf")


def fails_with(check, arg, diagnosis: str) -> CheckFailure:
    """Run a check that must fail with `diagnosis`, and offer the hint for it; return the failure."""
    with pytest.raises(CheckFailure) as excinfo:
        check(arg)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)
    if diagnosis != "not-done":  # "not done yet" says what to do once, with no hint repeating it
        assert "\nHint: " in str(excinfo.value), f"no hint for {diagnosis!r}: {excinfo.value}"
    return excinfo.value


def not_done(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("check", [check_kv_cache_attention, check_kv_cache_generate])
def test_stub_is_not_done_yet_and_rng_is_left_alone(check):
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    with pytest.raises(NotDoneYet):
        check(not_done)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("check", [check_kv_cache_attention, check_kv_cache_generate])
def test_not_a_function(check):
    fails_with(check, 42, "not-callable")


def test_every_exercise_has_hints():
    for exercise in ("kv_cache_attention", "kv_cache_generate"):
        assert len(show_hints(exercise).entry.levels) >= 3


# ---- 8.3 attention with a KV cache --------------------------------------------------------------------


def _heads(attn, x):
    B, T, C = x.shape
    hs = C // attn.n_head

    def split(t):
        return t.view(B, T, attn.n_head, hs).transpose(1, 2)

    return split(attn.query(x)), split(attn.key(x)), split(attn.value(x)), hs


def _append(cache, k, v):
    if "k" in cache:
        k = torch.cat([cache["k"], k], dim=2)
        v = torch.cat([cache["v"], v], dim=2)
    cache["k"], cache["v"] = k, v
    return k, v


def attention_matmul(attn, x, cache):
    B, T, C = x.shape
    q, k, v, hs = _heads(attn, x)
    k, v = _append(cache, k, v)
    past = k.size(2) - T
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
    allowed = torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=past)
    att = att.masked_fill(~allowed, NEG_INF).softmax(-1)
    return attn.proj((att @ v).transpose(1, 2).reshape(B, T, C))


def attention_sdpa(attn, x, cache):
    B, T, C = x.shape
    q, k, v, _ = _heads(attn, x)
    k, v = _append(cache, k, v)
    past = k.size(2) - T
    if past == 0:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    elif T == 1:
        y = F.scaled_dot_product_attention(q, k, v)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn.mask[0, 0, past : past + T, : past + T])
    return attn.proj(y.transpose(1, 2).contiguous().view(B, T, C))


def attention_einsum(attn, x, cache):
    B, T, C = x.shape
    q, k, v, hs = _heads(attn, x)
    k, v = _append(cache, k, v)
    cache["length"] = k.size(2)  # extra entries are fine
    Tk = k.size(2)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * hs**-0.5
    query_pos = torch.arange(Tk - T, Tk).view(T, 1)
    scores = scores.masked_fill(torch.arange(Tk).view(1, Tk) > query_pos, NEG_INF)
    y = torch.einsum("bhqk,bhkd->bqhd", scores.softmax(-1), v).reshape(B, T, C)
    return attn.proj(y)


@pytest.mark.parametrize("fn", [attention_matmul, attention_sdpa, attention_einsum])
def test_kv_attention_correct_variants_pass(fn, capsys):
    check_kv_cache_attention(fn)
    assert "passed" in capsys.readouterr().out


def make_attention(mistake):
    def fn(attn, x, cache):
        B, T, C = x.shape
        q, k, v, hs = _heads(attn, x)
        if mistake == "cache-not-stored":
            past_k = past_v = None
        elif mistake == "cache-overwritten":
            cache_k, cache_v = cache.get("k"), cache.get("v")
            cache["k"], cache["v"] = k, v
            if cache_k is not None:
                k, v = torch.cat([cache_k, k], 2), torch.cat([cache_v, v], 2)
        elif mistake == "cache-not-used":
            _append(cache, k, v)
        elif mistake == "cache-layout":
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 1), torch.cat([cache["v"], v], 1)
            cache["k"], cache["v"] = k, v
        else:
            k, v = _append(cache, k, v)
        if mistake == "cache-not-stored":
            del past_k, past_v
        if mistake == "in-place":
            x.mul_(2)
        if mistake == "crashed" and "k" in cache:
            q = q.transpose(-1, -2)  # a slip unrelated to the cache: must read as the crash it is
        Tk = k.size(2)
        past = Tk - T
        if mistake == "mask-not-offset-sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = q @ k.transpose(-2, -1)
            if mistake != "missing-scale":
                att = att / math.sqrt(hs)
            if mistake == "mask-not-offset":
                att = att.masked_fill(~attn.mask[:, :, :T, :Tk], NEG_INF)
            elif mistake != "no-mask":
                att = att.masked_fill(~attn.mask[:, :, past : past + T, :Tk], NEG_INF)
            y = att.softmax(-2 if mistake == "softmax-axis" else -1) @ v
        y = y.reshape(B, T, C) if mistake == "merge-order" else y.transpose(1, 2).reshape(B, T, C)
        out = y if mistake == "no-proj" else attn.proj(y)
        if mistake == "returned-tuple":
            return out, cache
        return None if mistake == "returned-none" else out

    return fn


@pytest.mark.parametrize(
    "mistake, diagnosis",
    [
        ("cache-not-stored", "cache-not-stored"),
        ("cache-overwritten", "cache-overwritten"),
        ("cache-not-used", "cache-not-used"),
        ("cache-layout", "cache-layout"),
        ("mask-not-offset", "mask-not-offset"),
        ("mask-not-offset-sdpa", "mask-not-offset"),
        ("no-mask", "no-mask"),
        ("missing-scale", "missing-scale"),
        ("no-proj", "no-proj"),
        ("merge-order", "merge-order"),
        ("softmax-axis", "wrong-values"),
        ("in-place", "in-place"),
        ("returned-tuple", "returned-tuple"),
        ("returned-none", "returned-none"),
        ("crashed", "crashed"),
    ],
)
def test_kv_attention_mistakes_are_diagnosed(mistake, diagnosis):
    fails_with(check_kv_cache_attention, make_attention(mistake), diagnosis)


def test_kv_attention_cache_not_used_is_named_even_when_stored():
    text = str(fails_with(check_kv_cache_attention, make_attention("cache-not-used"), "cache-not-used"))
    assert "one position per call" in text


# ---- 8.4 generate with a KV cache ---------------------------------------------------------------------


@torch.no_grad()
def generate_reference(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    logits, _ = model(idx[:, -block_size:], cache=cache)
    for i in range(max_new_tokens):
        tok = next_token(logits[:, -1, :], **sampling)
        idx = torch.cat((idx, tok), dim=1)
        if i == max_new_tokens - 1:
            break
        if cache.length < block_size:
            logits, _ = model(tok, cache=cache)
        else:
            logits, _ = model(idx[:, -block_size:])
    return idx


@torch.no_grad()
def generate_extra_final_step(model, idx, max_new_tokens, **sampling):
    model.eval()
    bs = model.block_size
    cache = KVCache(len(model.blocks), bs)
    logits, _ = model(idx[:, -bs:], cache=cache)
    for _ in range(max_new_tokens):
        tok = next_token(logits[:, -1, :], **sampling)
        idx = torch.cat((idx, tok), dim=1)
        if len(cache) < bs:
            logits, _ = model(tok, cache=cache)
        else:  # a new cache for the slid window (it is full at once)
            cache = KVCache(len(model.blocks), bs)
            logits, _ = model(idx[:, -bs:], cache=cache)
    return idx


@torch.no_grad()
def generate_while_loop(model, idx, max_new_tokens, **sampling):
    model.eval()
    bs = model.block_size
    out = [idx]
    context = idx if idx.size(1) <= bs else idx[:, -bs:]
    cache = KVCache(len(model.blocks), bs)
    logits = model(context, cache=cache)[0][:, -1]
    produced = 0
    while produced < max_new_tokens:
        tok = next_token(logits, **sampling)
        out.append(tok)
        produced += 1
        if produced == max_new_tokens:
            break
        if cache.length == bs:
            logits = model(torch.cat(out, 1)[:, -bs:])[0][:, -1]
        else:
            logits = model(tok, cache=cache)[0][:, -1]
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("fn", [generate_reference, generate_extra_final_step, generate_while_loop])
def test_kv_generate_correct_variants_pass(fn, capsys):
    check_kv_cache_generate(fn)
    assert "passed" in capsys.readouterr().out


def make_generate(mistake):
    @torch.no_grad()
    def fn(model, idx, max_new_tokens, **sampling):
        if mistake != "train-mode":
            model.eval()
        if mistake == "uses-finished-generate":
            return model.generate(idx, max_new_tokens, **sampling)
        bs = model.block_size
        cache = KVCache(len(model.blocks), bs)
        prompt = idx if mistake == "not-cropped" else idx[:, -bs:]
        if mistake == "prefill-not-cached":
            logits, _ = model(prompt)
        else:
            logits, _ = model(prompt, cache=cache)
        if mistake == "extra-work":
            model(prompt)
        start = idx.size(1)
        for i in range(max_new_tokens):
            last = logits[:, 0 if mistake == "first-position" else -1, :]
            tok = next_token(last) if mistake == "sampling-ignored" else next_token(last, **sampling)
            idx = torch.cat((idx, tok), dim=1)
            if i == max_new_tokens - 1:
                break
            limit = {"window-full": bs + 1, "recompute-early": bs - 1}.get(mistake, bs)
            if mistake == "fresh-cache":
                logits, _ = model(tok)
            elif mistake == "no-speedup":
                logits, _ = model(idx[:, -bs:])
            elif cache.length < limit:
                logits, _ = model(tok, cache=cache)
            else:
                logits, _ = model(idx[:, -(bs - 1 if mistake == "window-short" else bs) :])
        if mistake == "wrong-shape":
            return idx[:, start:]
        if mistake == "wrong-dtype":
            return idx.float()
        return idx

    return fn


@pytest.mark.parametrize(
    "mistake",
    [
        "no-speedup",
        "recompute-early",
        "window-full",
        "not-cropped",
        "fresh-cache",
        "prefill-not-cached",
        "window-short",
        "first-position",
        "sampling-ignored",
        "extra-work",
        "wrong-shape",
        "wrong-dtype",
        "train-mode",
        "uses-finished-generate",
    ],
)
def test_kv_generate_mistakes_are_diagnosed(mistake):
    fails_with(check_kv_cache_generate, make_generate(mistake), mistake)


@torch.no_grad()
def generate_token_twice(model, idx, max_new_tokens, **sampling):
    """Each step runs the last two tokens with the cache: the one before the new token is fed a second time."""
    model.eval()
    bs = model.block_size
    cache = KVCache(len(model.blocks), bs)
    logits, _ = model(idx[:, -bs:], cache=cache)
    for i in range(max_new_tokens):
        idx = torch.cat((idx, next_token(logits[:, -1, :], **sampling)), dim=1)
        if i == max_new_tokens - 1:
            break
        if cache.length < bs:
            logits, _ = model(idx[:, -2:], cache=cache)
        else:
            logits, _ = model(idx[:, -bs:])
    return idx


@torch.no_grad()
def generate_last_prompt_token_again(model, idx, max_new_tokens, **sampling):
    """The prompt fills the cache, then every step first runs the last token (already cached) again."""
    model.eval()
    bs = model.block_size
    cache = KVCache(len(model.blocks), bs)
    model(idx[:, -bs:], cache=cache)
    for _ in range(max_new_tokens):
        if cache.length < bs:
            logits, _ = model(idx[:, -1:], cache=cache)
        else:
            cache = KVCache(len(model.blocks), bs)
            logits, _ = model(idx[:, -bs:], cache=cache)
        idx = torch.cat((idx, next_token(logits[:, -1, :], **sampling)), dim=1)
    return idx


@pytest.mark.parametrize("fn", [generate_token_twice, generate_last_prompt_token_again])
def test_kv_generate_token_fed_twice_is_named(fn):
    fails_with(check_kv_cache_generate, fn, "token-twice")


def test_kv_generate_no_speedup_reports_the_positions():
    text = str(fails_with(check_kv_cache_generate, make_generate("no-speedup"), "no-speedup"))
    assert "positions through the model" in text


def test_kv_generate_never_cached_at_all():
    @torch.no_grad()
    def plain(model, idx, max_new_tokens, **sampling):
        model.eval()
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -model.block_size :])
            idx = torch.cat((idx, next_token(logits[:, -1, :], **sampling)), dim=1)
        return idx

    fails_with(check_kv_cache_generate, plain, "no-speedup")
