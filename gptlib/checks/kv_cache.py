"""Checks for lesson 08, generation and speed (part 2): the KV cache.

- `attention_with_cache(attn, x, cache)`: fed the sequence in chunks (all at once, one
  token at a time, uneven chunks), it must give gptlib's attention over the whole sequence,
  and leave every position's keys and values in the cache.
- `generate_with_cache(model, idx, max_new_tokens, **sampling)`: the same tokens as
  gptlib's generate (greedy and seeded sampling; prompts shorter than, equal to and longer
  than block_size), and no more positions run through the model than a cache needs
  (counted by a hook on the model's embeddings).

A wrong answer is matched against a reference with one known mistake switched on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from gptlib.attention import CausalSelfAttention
from gptlib.checks.base import CheckFailure, call, max_diff, passed
from gptlib.checks.generation import NEG_INF, _is_function, _isolated, _tensor_out, _unchanged
from gptlib.checks.hints import register_hints
from gptlib.config import GPTConfig
from gptlib.generate import generate as _reference_generate
from gptlib.generate import next_token as _next_token
from gptlib.kvcache import KVCache
from gptlib.model import GPT

__all__ = ["check_kv_cache_attention", "check_kv_cache_generate"]


# ==== 8.3 attention with a KV cache ===================================================================

_KV_ATT = "kv_cache_attention"

register_hints(
    _KV_ATT,
    levels=[
        "Compute q, k, v for the NEW positions only, split into heads. Append the new k, v to the ones in "
        "the cache (along the time dimension) and store the result back in the cache. The new queries then "
        "attend to every key so far; a new query at position past + i may see keys 0 .. past + i.",
        "Split heads with `.view(B, T, nh, hs).transpose(1, 2)` -> (B, nh, T, hs). If 'k' in cache: "
        "`k = torch.cat([cache['k'], k], dim=2)` (same for v). `cache['k'], cache['v'] = k, v`. "
        "`past = k.size(2) - T`. Scores (B, nh, T, past + T) scaled by 1/sqrt(hs). The mask is the lower "
        "triangle shifted right by past: `torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=past)`. "
        "(is_causal=True lines query 0 up with key 0, which is wrong once there is a past.)",
        "q = attn.query(x).view(B, T, nh, hs).transpose(1, 2)      # (B, nh, T, hs)\n"
        "k = attn.key(x).view(B, T, nh, hs).transpose(1, 2)\n"
        "v = attn.value(x).view(B, T, nh, hs).transpose(1, 2)\n"
        "if 'k' in cache:\n"
        "    k = torch.cat([cache['k'], k], dim=2)                # (B, nh, past + T, hs)\n"
        "    v = torch.cat([cache['v'], v], dim=2)\n"
        "cache['k'], cache['v'] = k, v\n"
        "past = k.size(2) - T\n"
        "att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)          # (B, nh, T, past + T)\n"
        "allowed = torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=past)\n"
        "att = att.masked_fill(~allowed, float('-inf')).softmax(dim=-1)\n"
        "y = (att @ v).transpose(1, 2).reshape(B, T, C)           # heads side by side\n"
        "return attn.proj(y)",
    ],
    diagnoses={
        "not-a-function": "pass the function itself: check_kv_cache_attention(attention_with_cache).",
        "not-a-tensor": "return the output tensor, attn.proj(y), of shape (B, T, C).",
        "nan": "a row of scores that is entirely -inf gives NaN after the softmax: query i must be allowed to "
        "see keys 0 .. past + i, itself included.",
        "crashed": "print the shapes: q (B, nh, T, hs), k and v (B, nh, past + T, hs) after the "
        "concatenation, scores (B, nh, T, past + T), the mask (T, past + T).",
        "wrong-shape": "return (B, T, C) for the T new positions: merge the heads with "
        "`.transpose(1, 2).reshape(B, T, C)` and apply attn.proj.",
        "in-place": "do not change x; compute new tensors from it.",
        "cache-not-stored": "store the keys and values of every position seen so far in the dict: "
        "`cache['k'], cache['v'] = k, v` after the concatenation.",
        "cache-layout": "store k and v split into heads, shape (B, n_head, positions so far, head_size), and "
        "concatenate along dim=2 (time).",
        "cache-length": "after each call the cache must hold every position seen so far, each once: "
        "concatenate the old keys with the new ones (not the new ones twice, not only the new ones).",
        "cache-not-used": "the new queries must also attend to the cached keys and values: concatenate "
        "cache['k'] (and cache['v']) in front of the new ones before computing the scores.",
        "cache-overwritten": "store ALL the keys and values so far in the cache (the concatenated k, v), not "
        "only this call's new ones.",
        "mask-not-offset": "with a past, new query i sits at position past + i: allow keys 0 .. past + i "
        "with `tril(diagonal=past)` on a (T, past + T) matrix. is_causal=True and mask[:T, :T + past] line "
        "query 0 up with key 0 instead.",
        "no-mask": "within one call of several new positions, a position must not see the ones after it: "
        "mask scores above the shifted diagonal with -inf.",
        "no-scale": "scale the scores by 1/sqrt(head_size) before the softmax, as attention does.",
        "no-proj": "finish with the output projection: return attn.proj(y).",
        "heads-merged-wrong": "merge heads with y.transpose(1, 2).reshape(B, T, C): (B, nh, T, hs) -> "
        "(B, T, nh, hs) first, so each position's heads sit side by side.",
        "wrong-values": "compare with: q, k, v of the new positions; k, v appended to the cache; softmax of "
        "masked scaled scores; weighted sum of values; heads merged; attn.proj.",
    },
)


def _attention_setup() -> tuple[CausalSelfAttention, torch.Tensor]:
    cfg = GPTConfig(
        vocab_size=11, block_size=16, n_layer=1, n_head=4, n_embd=16, embd_pdrop=0.0, resid_pdrop=0.0,
        attn_pdrop=0.0,
    )  # fmt: skip
    attn = CausalSelfAttention(cfg).eval()
    g = torch.Generator().manual_seed(5)
    for prm in attn.parameters():
        prm.copy_(torch.randn(prm.shape, generator=g) * 0.4)  # sharp, unequal weights: slips show
    x = torch.randn(2, 12, 16, generator=g)
    return attn, x


def _chunks(T: int, sizes: list[int]) -> list[tuple[int, int]]:
    out, start = [], 0
    for s in sizes:
        out.append((start, start + s))
        start += s
    assert start == T
    return out


def _variant_attention(
    attn: CausalSelfAttention, x: torch.Tensor, cache: dict[str, torch.Tensor], mistake: str = ""
) -> torch.Tensor:
    """attention_with_cache with at most one known mistake."""
    B, T, C = x.shape
    nh = attn.n_head
    hs = C // nh

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(B, T, nh, hs).transpose(1, 2)

    q, k, v = heads(attn.query(x)), heads(attn.key(x)), heads(attn.value(x))
    new_k, new_v = k, v
    if "k" in cache and mistake != "cache-not-used":
        k = torch.cat([cache["k"], k], dim=2)
        v = torch.cat([cache["v"], v], dim=2)
    if mistake == "cache-overwritten":
        cache["k"], cache["v"] = new_k, new_v
    else:
        cache["k"], cache["v"] = k, v
    past = k.size(2) - T
    att = q @ k.transpose(-2, -1)
    if mistake != "no-scale":
        att = att / math.sqrt(hs)
    if mistake != "no-mask":
        shift = 0 if mistake == "mask-not-offset" else past
        allowed = torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=shift)
        att = att.masked_fill(~allowed, NEG_INF)
    y = att.softmax(dim=-1) @ v  # (B, nh, T, hs)
    y = y.reshape(B, T, C) if mistake == "heads-merged-wrong" else y.transpose(1, 2).reshape(B, T, C)
    return y if mistake == "no-proj" else attn.proj(y)


_KV_ATT_MISTAKES = {
    "cache-not-used": "new positions attending only to each other, never to the cached keys and values",
    "cache-overwritten": "a cache that keeps only the last call's keys and values",
    "mask-not-offset": "a causal mask that is not shifted by the number of cached positions (is_causal=True, "
    "or tril on the new positions only), so query i sees keys 0..i instead of 0..past + i",
    "no-mask": "no causal mask (positions in one call see the ones after them)",
    "no-scale": "scores not scaled by 1/sqrt(head_size)",
    "no-proj": "the output projection attn.proj left out",
    "heads-merged-wrong": "heads merged by reshape without the transpose",
}

_SCHEDULES: list[tuple[str, list[int]]] = [
    ("all 12 positions in one call (empty cache)", [12]),
    ("one position per call", [1] * 12),
    ("calls of 5, 1, 3, 2 and 1 positions", [5, 1, 3, 2, 1]),
]


def _run_schedule(
    fn: Callable[..., Any],
    attn: CausalSelfAttention,
    x: torch.Tensor,
    sizes: list[int],
    learner: bool,
    label: str,
) -> torch.Tensor:
    """Feed x to fn in chunks of `sizes` positions, one cache throughout; the outputs side by side."""
    cache: dict[str, Any] = {}
    outs = []
    B, T, C = x.shape
    for a, b in _chunks(T, sizes):
        chunk = x[:, a:b].clone()
        if learner:
            what = f"attention_with_cache ({label}), positions {a}..{b - 1}"
            before = chunk.clone()
            try:
                out = call(_KV_ATT, what, fn, attn, chunk, cache)
            except CheckFailure as e:
                if e.diagnosis == "crashed" and isinstance(cache, dict) and "k" in cache:
                    # A cache of the wrong layout explains the crash better than the crash itself.
                    _check_cache(cache, attn, x, b, b - a, what, layout_only=True)
                raise
            _unchanged(_KV_ATT, "attention_with_cache", before, chunk)
            out = _tensor_out(_KV_ATT, what, out, (B, b - a, C))
            _check_cache(cache, attn, x, b, b - a, what)
        else:
            out = fn(attn, chunk, cache)
        outs.append(out)
    return torch.cat(outs, dim=1)


def _check_cache(
    cache: Any,
    attn: CausalSelfAttention,
    x: torch.Tensor,
    seen: int,
    new: int,
    what: str,
    layout_only: bool = False,
) -> None:
    """The cache dict holds 'k' and 'v' of every position seen, (B, n_head, seen, head_size)."""
    B, _, C = x.shape
    nh = attn.n_head
    want = (B, nh, seen, C // nh)
    if not isinstance(cache, dict) or "k" not in cache or "v" not in cache:
        found = sorted(cache) if isinstance(cache, dict) else type(cache).__name__
        raise CheckFailure(
            _KV_ATT,
            "cache-not-stored",
            f"after {what}, the cache dict holds {found}; expected 'k' and 'v', the keys and values of "
            f"all {seen} positions so far.",
        )
    for name in ("k", "v"):
        t = cache[name]
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.size(1) != nh or t.size(3) != C // nh:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckFailure(
                _KV_ATT,
                "cache-layout",
                f"after {what}, cache['{name}'] has shape {shape}; expected {want} "
                "(B, n_head, positions so far, head_size).",
            )
        if layout_only:
            continue
        if t.size(2) == new != seen:
            raise CheckFailure(
                _KV_ATT,
                "cache-overwritten",
                f"after {what}, cache['{name}'] holds only the {new} new positions; {seen} have been seen "
                "so far.",
            )
        if t.size(2) != seen:
            raise CheckFailure(
                _KV_ATT,
                "cache-length",
                f"after {what}, cache['{name}'] holds {t.size(2)} positions; {seen} have been seen so far.",
            )


def _variant_fn(mistake: str) -> Callable[..., torch.Tensor]:
    def fn(attn: CausalSelfAttention, x: torch.Tensor, cache: dict[str, torch.Tensor]) -> torch.Tensor:
        return _variant_attention(attn, x, cache, mistake)

    return fn


@_isolated
def check_kv_cache_attention(attention_with_cache: Any) -> None:
    """Check `attention_with_cache(attn, x_new (B, T, C), cache) -> (B, T, C)` against full attention."""
    _is_function(_KV_ATT, attention_with_cache, "attention_with_cache")
    attn, x = _attention_setup()
    full = attn(x)  # (B, 12, C): gptlib's attention over the whole sequence at once
    for label, sizes in _SCHEDULES:
        out = _run_schedule(attention_with_cache, attn, x, sizes, learner=True, label=label)
        if torch.allclose(out, full, atol=1e-5, rtol=1e-4):
            continue
        what = f"attention_with_cache with {label}"
        for mistake, says in _KV_ATT_MISTAKES.items():
            want = _run_schedule(_variant_fn(mistake), attn, x, sizes, learner=False, label=label)
            if torch.allclose(out, want, atol=1e-4, rtol=1e-3):
                raise CheckFailure(_KV_ATT, mistake, f"{what} matches {says}.")
        bad = (out - full).abs().amax(dim=(0, 2)) > 1e-4
        raise CheckFailure(
            _KV_ATT,
            "wrong-values",
            f"{what} differs from attention over the whole sequence at positions "
            f"{bad.nonzero().flatten().tolist()} (largest difference {max_diff(out, full):.3g}).",
        )
    passed(
        _KV_ATT,
        "fed all at once, one position at a time, or in uneven chunks, the cached attention equals gptlib's "
        "attention over the whole sequence; the cache holds every position's keys and values, split into "
        "heads.",
    )


# ==== 8.4 generate with a KV cache ====================================================================

_KV_GEN = "kv_cache_generate"

register_hints(
    _KV_GEN,
    levels=[
        "Run the (cropped) prompt through the model once, with a fresh KVCache: that fills the cache. Then, "
        "for each new token: choose it from the last position's logits, append it, and run the model on that "
        "ONE token with the same cache. When the cache holds block_size positions, the window has to slide: "
        "every position moves, so run the whole cropped window again (without the cache).",
        "`cache = KVCache(len(model.blocks), block_size)`; `logits, _ = model(idx[:, -block_size:], "
        "cache=cache)`. In the loop: `tok = next_token(logits[:, -1, :], **sampling)` (B, 1); `idx = "
        "torch.cat((idx, tok), dim=1)`; then `model(tok, cache=cache)` while `cache.length < block_size`, "
        "else `model(idx[:, -block_size:])`. The model reads the position of the new token from "
        "cache.length. The logits after the last token are never used: you may stop before computing them.",
        "cache = KVCache(len(model.blocks), block_size)\n"
        "logits, _ = model(idx[:, -block_size:], cache=cache)       # the prompt fills the cache\n"
        "for i in range(max_new_tokens):\n"
        "    tok = next_token(logits[:, -1, :], **sampling)          # (B, 1)\n"
        "    idx = torch.cat((idx, tok), dim=1)\n"
        "    if i == max_new_tokens - 1:\n"
        "        break                                               # no logits needed after the last\n"
        "    if cache.length < block_size:\n"
        "        logits, _ = model(tok, cache=cache)                 # one new position\n"
        "    else:\n"
        "        logits, _ = model(idx[:, -block_size:])             # window full: recompute it",
    ],
    diagnoses={
        "not-a-function": "pass the function itself: check_kv_cache_generate(generate_with_cache).",
        "not-a-tensor": "return idx, the (B, T + max_new_tokens) tensor of token ids.",
        "crashed": "idx is (B, T); next_token gives (B, 1); the model takes (B, T) ids with T <= block_size, "
        "or (B, 1) with a cache that is not full.",
        "wrong-shape": "return the prompt followed by the new tokens, (B, T + max_new_tokens): keep "
        "concatenating each token to idx and return idx.",
        "wrong-dtype": "return token ids (torch.long): concatenate the (B, 1) ids from next_token.",
        "prompt-changed": "the result must start with the prompt exactly as given; append the new tokens "
        "after it.",
        "uses-finished-generate": "write the loop yourself with model(...) and a KVCache, instead of calling "
        "model.generate.",
        "dropout-on": "keep model.eval() at the top: in training mode dropout makes every run different.",
        "not-cropped": "the model takes at most block_size positions: crop the prompt, and the window when "
        "you recompute it, with idx[:, -block_size:].",
        "window-full": "a KVCache holds at most block_size positions. When cache.length reaches block_size "
        "(full: the condition is `cache.length < block_size`, not <=), recompute the cropped window "
        "instead: with learned absolute positions the old keys and values belong to positions that moved.",
        "fresh-cache": "create the KVCache once, before the loop, and pass the same cache at every step: a "
        "new or missing cache makes the new token look like position 0 with nothing before it.",
        "prefill-not-cached": "run the prompt through the model WITH the cache (model(prompt, cache=cache)), "
        "so its keys and values are stored; otherwise the first new token sees no past.",
        "window-short": "when the window slides, recompute the last block_size tokens, "
        "idx[:, -block_size:]: the same context the model would see without a cache.",
        "first-position": "choose the next token from the LAST position's logits: logits[:, -1, :].",
        "sampling-ignored": "pass the sampling options on: next_token(logits[:, -1, :], **sampling).",
        "no-speedup": "with the cache, each step after the prompt should run ONE new position through the "
        "model (model(tok, cache=cache)), not the whole context again.",
        "recompute-early": "use the cache while cache.length < block_size: it is full only at block_size "
        "positions. Recomputing one step early costs a whole window.",
        "extra-work": "run the prompt once, then one position per step until the window is full, then one "
        "window per step.",
        "wrong-tokens": "compare step by step with generate(model, idx, n, use_cache=False): which step is "
        "the first to differ?",
    },
)


def _generation_model() -> GPT:
    cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)  # dropout 0.1: eval matters
    model = GPT(cfg)
    g = torch.Generator().manual_seed(11)
    for prm in model.parameters():
        if prm.dim() > 1:  # weights and the position table (zeros at init): random, so positions matter
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.5)
    return model.train()


@contextmanager
def _counting(model: GPT) -> Iterator[list[int]]:
    """Counts the positions run through the model: one entry per forward pass, its T."""
    counts: list[int] = []

    def hook(module: Any, args: tuple[Any, ...]) -> None:
        counts.append(int(args[0].size(1)))

    handle = model.embeddings.register_forward_pre_hook(hook)
    try:
        yield counts
    finally:
        handle.remove()


def _variant_generate(
    model: GPT, idx: torch.Tensor, n: int, mistake: str = "", **sampling: Any
) -> torch.Tensor:
    """A cached generation loop with at most one known mistake (model in eval mode)."""
    bs = model.block_size
    cache = KVCache(len(model.blocks), bs)
    if mistake == "prefill-not-cached":
        logits, _ = model(idx[:, -bs:])
    else:
        logits, _ = model(idx[:, -bs:], cache=cache)
    pos = 0 if mistake == "first-position" else -1
    for i in range(n):
        tok = _next_token(logits[:, pos, :], **sampling)
        idx = torch.cat((idx, tok), dim=1)
        if i == n - 1 and mistake != "extra-final":
            break
        full_at = bs - 1 if mistake == "recompute-early" else bs
        if mistake == "fresh-cache":
            logits, _ = model(tok)
        elif mistake == "no-speedup":
            logits, _ = model(idx[:, -bs:])
        elif cache.length < full_at:
            logits, _ = model(tok, cache=cache)
        else:
            window = bs - 1 if mistake == "window-short" else bs
            logits, _ = model(idx[:, -window:])
    return idx


_KV_GEN_MISTAKES = {
    "fresh-cache": "running each new token with no cache (or a new one), as if it stood at position 0 with "
    "nothing before it",
    "prefill-not-cached": "running the prompt without the cache, so the new tokens never see it",
    "window-short": "recomputing a window of block_size - 1 tokens once the cache is full",
    "first-position": "choosing each token from the logits of the FIRST position instead of the last",
}

# (what, batch of prompts (B, T), max_new_tokens, sampling options)
_GEN_CASES: list[tuple[str, tuple[int, int], int, dict[str, Any]]] = [
    ("a 3-token prompt and 12 new tokens (the window slides past block_size = 8)", (2, 3), 12, {}),
    ("a prompt of exactly block_size = 8 tokens", (2, 8), 5, {}),
    ("an 11-token prompt, longer than block_size = 8", (2, 11), 4, {}),
    ("a 1-token prompt and 1 new token", (1, 1), 1, {}),
    (
        "a 3-token prompt and 12 sampled tokens",
        (2, 3),
        12,
        {"do_sample": True, "temperature": 0.9, "top_k": 5},
    ),
]


def _prompt(shape: tuple[int, int], seed: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _learner_generate(
    generate_with_cache: Callable[..., Any],
    model: GPT,
    prompt: torch.Tensor,
    n: int,
    what: str,
    **sampling: Any,
) -> tuple[torch.Tensor, int]:
    """The learner's tokens (checked for shape, dtype, the prompt) and the positions they ran."""
    x = prompt.clone()
    model.train()  # the function must put the model in eval mode itself
    with _counting(model) as counts:
        try:
            out = call(_KV_GEN, what, generate_with_cache, model, x, n, **sampling)
        except CheckFailure as e:
            error = e.message.split(" raised ", 1)[-1]
            if e.diagnosis == "crashed" and ("KV cache full" in e.message or " cached + " in e.message):
                raise CheckFailure(
                    _KV_GEN,
                    "window-full",
                    f"{what} went on adding positions to a full KV cache (block_size = {model.block_size}): "
                    f"{error}",
                ) from None
            if e.diagnosis == "crashed" and "Cannot forward" in e.message:
                raise CheckFailure(
                    _KV_GEN,
                    "not-cropped",
                    f"{what} gave the model more than block_size = {model.block_size} positions: {error}",
                ) from None
            raise
    _unchanged(_KV_GEN, "generate_with_cache", prompt, x)
    B, T = prompt.shape
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, n) and n != T + n:
        raise CheckFailure(
            _KV_GEN,
            "wrong-shape",
            f"{what} returned shape {(B, n)}, only the new tokens; return the prompt followed by them, "
            f"{(B, T + n)}.",
        )
    out = _tensor_out(_KV_GEN, what, out, (B, T + n))
    if out.dtype != torch.long:
        raise CheckFailure(_KV_GEN, "wrong-dtype", f"{what} returned dtype {out.dtype}; expected torch.long.")
    if not torch.equal(out[:, :T], prompt):
        raise CheckFailure(_KV_GEN, "prompt-changed", f"{what}: the result does not start with the prompt.")
    return out, sum(counts)


def _seeded(sampling: dict[str, Any]) -> dict[str, Any]:
    """The sampling options with a freshly seeded generator (the same draws every time)."""
    return dict(sampling, generator=torch.Generator().manual_seed(3)) if sampling else {}


def _token_failure(
    model: GPT,
    prompt: torch.Tensor,
    n: int,
    sampling: dict[str, Any],
    out: torch.Tensor,
    want: torch.Tensor,
    what: str,
) -> CheckFailure:
    T = prompt.size(1)
    model.eval()
    for mistake, says in _KV_GEN_MISTAKES.items():
        if torch.equal(_variant_generate(model, prompt, n, mistake, **_seeded(sampling)), out):
            return CheckFailure(_KV_GEN, mistake, f"{what} matches {says}.")
    if sampling and torch.equal(_variant_generate(model, prompt, n), out):
        return CheckFailure(
            _KV_GEN, "sampling-ignored", f"{what} gave the greedy tokens: the sampling options were not used."
        )
    first = int((out[:, T:] != want[:, T:]).any(0).nonzero()[0])
    return CheckFailure(
        _KV_GEN,
        "wrong-tokens",
        f"{what}: new token {first} (counting from 0) differs from gptlib's generate: got "
        f"{out[:, T:].tolist()}, expected {want[:, T:].tolist()}.",
    )


def _forbid_generate(model: GPT) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise CheckFailure(
            _KV_GEN,
            "uses-finished-generate",
            "generate_with_cache called model.generate, gptlib's finished version: write the loop yourself.",
        )

    model.generate = refuse  # type: ignore[method-assign]  # an instance attribute shadows the method


def _positions(model: GPT, prompt: torch.Tensor, n: int, mistake: str, sampling: dict[str, Any]) -> int:
    """How many positions a loop with `mistake` runs through the model."""
    model.eval()
    with _counting(model) as counts:
        _variant_generate(model, prompt, n, mistake, **_seeded(sampling))
    return sum(counts)


def _check_work(
    model: GPT, label: str, prompt: torch.Tensor, n: int, sampling: dict[str, Any], used: int
) -> None:
    """The learner's loop ran no more positions through the model than a cache needs.

    Allowed: exactly what gptlib's loop runs, or that plus one forward pass after the last token
    (logits that are never used)."""
    needed = _positions(model, prompt, n, "", sampling)
    if used <= needed or used == _positions(model, prompt, n, "extra-final", sampling):
        return
    what = f"generate_with_cache with {label}"
    words = f"ran {used} positions through the model, where a KV cache needs {needed}"
    if used >= _positions(model, prompt, n, "no-speedup", sampling):
        raise CheckFailure(
            _KV_GEN,
            "no-speedup",
            f"{what} {words}: the tokens are right, but every step runs the whole context again, so the "
            "cache saves nothing.",
        )
    if used == _positions(model, prompt, n, "recompute-early", sampling):
        raise CheckFailure(
            _KV_GEN,
            "recompute-early",
            f"{what} {words}: it recomputes the window one step before the cache is full (off by one).",
        )
    raise CheckFailure(_KV_GEN, "extra-work", f"{what} {words}.")


@_isolated
def check_kv_cache_generate(generate_with_cache: Any) -> None:
    """Check `generate_with_cache(model, idx, max_new_tokens, **sampling)` against gptlib's generate."""
    _is_function(_KV_GEN, generate_with_cache, "generate_with_cache")
    model = _generation_model()
    _forbid_generate(model)
    V = model.config.vocab_size
    for i, (label, shape, n, sampling) in enumerate(_GEN_CASES):
        prompt = _prompt(shape, 20 + i, V)
        what = f"generate_with_cache with {label}"
        out, used = _learner_generate(generate_with_cache, model, prompt, n, what, **_seeded(sampling))
        want = _reference_generate(model, prompt, n, **_seeded(sampling))
        if not torch.equal(out, want):
            again, _ = _learner_generate(generate_with_cache, model, prompt, n, what, **_seeded(sampling))
            if not torch.equal(again, out):
                raise CheckFailure(
                    _KV_GEN,
                    "dropout-on",
                    f"{what} gave different tokens on two runs with the same input: dropout is on (the "
                    "model is in training mode).",
                )
            raise _token_failure(model, prompt, n, sampling, out, want, what)
        _check_work(model, label, prompt, n, sampling, used)
    passed(
        _KV_GEN,
        f"the same tokens as gptlib's generate in {len(_GEN_CASES)} cases (greedy and seeded sampling; "
        "prompts shorter than, equal to and longer than block_size; the window sliding); after the prompt, "
        "one new position per step until the window is full.",
    )
