"""Lesson 08, generation and speed: top_p_filter (8.1), choose_next (8.2), attention_with_cache (8.3),
generate_with_cache (8.4)."""

import math

import torch
import torch.nn.functional as F

from gptlib import KVCache
from gptlib.generate import next_token, top_k_filter
from gptlib.generate import top_p_filter as library_top_p
from tests.variants import Lesson
from tests.variants import words as W

V = Lesson()

# ---------------------------------------------------------------- 8.1 top_p_filter


@V.correct("8.1", "argsort-inverse")
def top_p_inverse(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs
    drop_sorted = before >= p
    drop = drop_sorted.gather(-1, order.argsort(dim=-1))  # inverse permutation: back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


@V.correct("8.1", "shift-right")
def top_p_shift(logits, p):
    sorted_logits, idx = torch.sort(logits, descending=True)
    cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    # a token goes when the tokens ranked above it already reached p
    reached_before = torch.cat([torch.zeros_like(cum[:, :1], dtype=torch.bool), cum[:, :-1] >= p], dim=-1)
    drop = torch.zeros_like(reached_before).scatter(1, idx, reached_before)
    return torch.where(drop, torch.full_like(logits, float("-inf")), logits)


@V.correct("8.1", "loop-per-row")
def top_p_loop(logits, p):
    out = torch.full_like(logits, float("-inf"))
    for b in range(logits.size(0)):
        probs = F.softmax(logits[b], dim=-1)
        total = 0.0
        for i in torch.argsort(probs, descending=True).tolist():
            out[b, i] = logits[b, i]
            total += probs[i].item()
            if total >= p:
                break
    return out


def _sorted(logits, descending=True):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=descending)
    return sorted_logits, order, F.softmax(sorted_logits, dim=-1)


def _back(logits, drop_sorted, order):
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))


@V.mistake(
    "8.1",
    "crossing-token-dropped",
    ["cross", "reaches p", "that reaches", "reach p", "the token that"],
    "cum > p drops the token whose probability makes the total reach p: that token stays in.",
)
def top_p_drops_crossing(logits, p):
    sorted_logits, order, probs = _sorted(logits)
    drop = probs.cumsum(-1) > p
    drop[:, 0] = False  # the most likely token always stays
    return _back(logits, drop, order)


@V.mistake(
    "8.1",
    "vocabulary-order",
    ["vocabulary order", "sort", "unsorted"],
    "You add the probabilities up in vocabulary order: sort them from most to least likely first.",
)
def top_p_unsorted(logits, p):
    probs = F.softmax(logits, dim=-1)
    before = probs.cumsum(-1) - probs
    return logits.masked_fill(before >= p, float("-inf"))


@V.mistake(
    "8.1",
    "least-likely-first",
    ["least likely", "ascending", "descending"],
    "sort() is ascending by default: you add up from the least likely token. Use descending=True.",
)
def top_p_ascending(logits, p):
    sorted_logits, order, probs = _sorted(logits, descending=False)
    before = probs.cumsum(-1) - probs
    return _back(logits, before >= p, order)


@V.mistake(
    "8.1",
    "cumsum-of-logits",
    ["logits instead", "probabilit", "softmax"],
    "You add up the logits: turn the sorted logits into probabilities (softmax) first.",
)
def top_p_logits(logits, p):
    sorted_logits, order, _ = _sorted(logits)
    before = sorted_logits.cumsum(-1) - sorted_logits
    return _back(logits, before >= p, order)


@V.mistake(
    "8.1",
    "not-mapped-back",
    ["map", "back", "vocabulary order", "sorted order", "scatter"],
    "The decision is in sorted order: map it back to vocabulary order before masking.",
)
def top_p_no_scatter(logits, p):
    sorted_logits, order, probs = _sorted(logits)
    before = probs.cumsum(-1) - probs
    return logits.masked_fill(before >= p, float("-inf"))


@V.mistake(
    "8.1",
    "mapped-back-with-gather",
    ["gather", "inverse", "scatter"],
    "drop_sorted.gather(-1, order) applies the permutation again instead of undoing it: scatter it back.",
)
def top_p_gather(logits, p):
    sorted_logits, order, probs = _sorted(logits)
    before = probs.cumsum(-1) - probs
    return logits.masked_fill((before >= p).gather(-1, order), float("-inf"))


@V.mistake(
    "8.1",
    "returns-probabilities",
    ["probabilit", "logits"],
    "You return probabilities; the filter returns logits, with -inf for the dropped tokens.",
)
def top_p_probs(logits, p):
    return F.softmax(library_top_p(logits, p), dim=-1)


@V.mistake("8.1", "filled-with-zero", W.FILL_ZERO, "Dropped tokens get 0, which keeps probability: use -inf.")
def top_p_zero(logits, p):
    sorted_logits, order, probs = _sorted(logits)
    before = probs.cumsum(-1) - probs
    drop = before >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), 0.0)


@V.mistake("8.1", "in-place", W.IN_PLACE, "masked_fill_ changes the caller's logits.")
def top_p_inplace(logits, p):
    sorted_logits, order, probs = _sorted(logits)
    before = probs.cumsum(-1) - probs
    drop = before >= p
    return logits.masked_fill_(drop.scatter(-1, order, drop), float("-inf"))


@V.mistake(
    "8.1",
    "top-token-unprotected",
    ["most likely", "top token", "always", "every token", "nothing", "empty", "cross"],
    "Keeping cum <= p can drop every token (p = 0.05): the most likely token always stays, and so does the one "
    "that crosses p.",
)
def top_p_le(logits, p):
    sorted_logits, order, probs = _sorted(logits)
    drop = probs.cumsum(-1) > p
    return _back(logits, drop, order)


# ---------------------------------------------------------------- 8.2 choose_next


@V.correct("8.2", "library-filters")
def choose_library(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return torch.argmax(logits, dim=-1).unsqueeze(-1)
    z = logits / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = library_top_p(z, top_p)
    return torch.multinomial(torch.softmax(z, dim=-1), num_samples=1, generator=generator)


@V.correct("8.2", "own-filters")
def choose_own(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if not temperature:
        return logits.max(dim=-1, keepdim=True).indices
    z = logits.div(temperature)
    if top_k:
        vals, ix = torch.topk(z, min(top_k, z.size(-1)))
        z = torch.full_like(z, float("-inf")).scatter(-1, ix, vals)
    if top_p is not None:
        z = top_p_inverse(z, top_p)
    return torch.multinomial(F.softmax(z, -1), 1, generator=generator)


@V.correct("8.2", "probabilities-masked")
def choose_probs(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0.0:
        return logits.argmax(-1, keepdim=True)
    z = logits / temperature
    if top_k is not None:
        kth = z.topk(min(top_k, z.size(-1)), dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p is not None:
        z = top_p_shift(z, top_p)
    probs = z.softmax(-1)
    return probs.multinomial(1, generator=generator)


def _choose(
    logits,
    temperature=1.0,
    top_k=None,
    top_p=None,
    generator=None,
    *,
    order=("t", "k", "p"),
    t_mul=False,
    k_off=0,
):
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    z = logits
    for step in order:
        if step == "t":
            z = z * temperature if t_mul else z / temperature
        elif step == "k" and top_k is not None:
            k = min(top_k + k_off, z.size(-1))
            kth = torch.topk(z, k, dim=-1).values[:, [-1]]
            z = z.masked_fill(z < kth, float("-inf"))
        elif step == "p" and top_p is not None:
            z = library_top_p(z, top_p)
    return torch.multinomial(F.softmax(z, dim=-1), 1, generator=generator)


@V.mistake(
    "8.2",
    "temperature-multiplied",
    W.SCALE_MULTIPLIED + ("divide",),
    "logits * temperature: divide by the temperature.",
)
def choose_mul(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _choose(logits, temperature, top_k, top_p, generator, t_mul=True)


@V.mistake(
    "8.2",
    "top-k-keeps-one-more",
    ["off by one", "k + 1", "k+1", "one more", "one too many"],
    "Your top-k keeps k + 1 tokens.",
)
def choose_k_plus(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _choose(logits, temperature, top_k, top_p, generator, k_off=1)


@V.mistake(
    "8.2",
    "top-p-before-temperature",
    [("top-p", "before"), ("top_p", "before"), "order"],
    "The nucleus must be measured after the temperature: apply top-p last.",
)
def choose_p_first(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _choose(logits, temperature, top_k, top_p, generator, order=("p", "t", "k"))


@V.mistake(
    "8.2",
    "top-p-before-top-k",
    [("top-p", "before"), ("top_p", "before"), "order"],
    "top-p runs before top-k: the nucleus is measured on the distribution after top-k.",
)
def choose_p_before_k(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _choose(logits, temperature, top_k, top_p, generator, order=("t", "p", "k"))


@V.mistake(
    "8.2",
    "softmax-twice",
    ["twice", "second softmax", "double"],
    "softmax of probabilities flattens the distribution: one softmax.",
)
def choose_double(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    z = logits / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = library_top_p(z, top_p)
    return torch.multinomial(F.softmax(F.softmax(z, -1), -1), 1, generator=generator)


@V.mistake(
    "8.2",
    "rows-mixed-up",
    ["row"],
    "topk(...).values[-1] takes the last ROW's k largest: the threshold of each row is values[:, [-1]].",
)
def choose_rows(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    z = logits / temperature
    if top_k is not None:
        kth = torch.topk(z, top_k, dim=-1).values[-1, -1]  # one number, from the last row
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p is not None:
        z = library_top_p(z, top_p)
    return torch.multinomial(F.softmax(z, -1), 1, generator=generator)


@V.mistake(
    "8.2",
    "greedy-divides-by-zero",
    ["temperature 0", "temperature == 0", "temperature=0", "division by zero", "greedy", "argmax"],
    "At temperature 0 you divide by zero: return the argmax instead.",
)
def choose_no_greedy(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    z = logits / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = library_top_p(z, top_p)
    return torch.multinomial(F.softmax(z, -1), 1, generator=generator)


@V.mistake(
    "8.2",
    "greedy-flat-shape",
    ["shape", "(b, 1)", "keepdim"],
    "argmax without keepdim gives (B,); return (B, 1).",
)
def choose_greedy_flat(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    return _choose(logits, temperature, top_k, top_p, generator)


@V.mistake("8.2", "generator-ignored", ["generator"], "multinomial must draw with generator=generator.")
def choose_no_gen(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _choose(logits, temperature, top_k, top_p, None)


@V.mistake("8.2", "in-place", W.IN_PLACE, "logits /= temperature changes the caller's logits.")
def choose_inplace(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits /= temperature
    return _choose(logits, 1.0, top_k, top_p, generator)


@V.mistake("8.2", "top-p-ignored", ["top_p", "top-p"], "top_p is never applied.")
def choose_no_p(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _choose(logits, temperature, top_k, None, generator)


@V.mistake("8.2", "top-k-ignored", ["top_k", "top-k"], "top_k is never applied.")
def choose_no_k(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _choose(logits, temperature, None, top_p, generator)


# ---------------------------------------------------------------- 8.3 attention_with_cache


@V.correct("8.3", "sdpa-bool-mask")
def cache_sdpa(attn, x, cache):
    B, T, C = x.shape
    nh, hs = attn.n_head, C // attn.n_head
    q, k, v = (layer(x).view(B, T, nh, hs).transpose(1, 2) for layer in (attn.query, attn.key, attn.value))
    if cache:
        k = torch.cat((cache["k"], k), dim=-2)
        v = torch.cat((cache["v"], v), dim=-2)
    cache["k"], cache["v"] = k, v
    past = k.shape[2] - T
    allowed = torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=past)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return attn.proj(y.transpose(1, 2).contiguous().view(B, T, C))


@V.correct("8.3", "positions-compared")
def cache_positions(attn, x, cache):
    B, T, C = x.shape
    nh = attn.n_head
    hs = C // nh
    past = cache["k"].size(2) if "k" in cache else 0
    q = attn.query(x).reshape(B, T, nh, hs).permute(0, 2, 1, 3)
    k_new = attn.key(x).reshape(B, T, nh, hs).permute(0, 2, 1, 3)
    v_new = attn.value(x).reshape(B, T, nh, hs).permute(0, 2, 1, 3)
    k = k_new if past == 0 else torch.cat([cache["k"], k_new], 2)
    v = v_new if past == 0 else torch.cat([cache["v"], v_new], 2)
    cache.update(k=k, v=v)
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(hs)
    query_pos = torch.arange(past, past + T)[:, None]
    key_pos = torch.arange(past + T)[None, :]
    scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
    y = torch.einsum("bhts,bhsd->bhtd", scores.softmax(-1), v)
    return attn.proj(y.permute(0, 2, 1, 3).reshape(B, T, C))


@V.correct("8.3", "layer-mask-buffer")
def cache_buffer(attn, x, cache):
    B, T, C = x.shape
    nh, hs = attn.n_head, C // attn.n_head
    q = attn.query(x).view(B, T, nh, hs).transpose(1, 2)
    k = attn.key(x).view(B, T, nh, hs).transpose(1, 2)
    v = attn.value(x).view(B, T, nh, hs).transpose(1, 2)
    if "k" in cache:
        k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
    cache["k"] = k
    cache["v"] = v
    Tk = k.size(2)
    past = Tk - T
    att = q @ k.transpose(-2, -1) * hs**-0.5
    att = att.masked_fill(~attn.mask[:, :, past : past + T, :Tk].bool(), float("-inf"))
    return attn.proj((F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, T, C))


def _qkv(attn, x):
    B, T, C = x.shape
    nh, hs = attn.n_head, C // attn.n_head
    return tuple(layer(x).view(B, T, nh, hs).transpose(1, 2) for layer in (attn.query, attn.key, attn.value))


def _attend(attn, q, k, v, past, T, B, C, mask="shifted", scale=True, proj=True, merge="transpose"):
    att = q @ k.transpose(-2, -1)
    if scale:
        att = att / math.sqrt(q.size(-1))
    if mask == "shifted":
        allowed = torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=past)
        att = att.masked_fill(~allowed, float("-inf"))
    elif mask == "unshifted":
        allowed = torch.ones(T, past + T, dtype=torch.bool).tril()
        att = att.masked_fill(~allowed, float("-inf"))
    y = att.softmax(dim=-1) @ v
    y = y.transpose(1, 2).reshape(B, T, C) if merge == "transpose" else y.reshape(B, T, C)
    return attn.proj(y) if proj else y


def _cached(attn, x, cache, **how):
    B, T, C = x.shape
    q, k, v = _qkv(attn, x)
    if "k" in cache:
        k = torch.cat([cache["k"], k], dim=2)
        v = torch.cat([cache["v"], v], dim=2)
    cache["k"], cache["v"] = k, v
    return _attend(attn, q, k, v, k.size(2) - T, T, B, C, **how)


@V.mistake(
    "8.3",
    "cache-never-read",
    [
        "never read",
        "not read",
        "old keys",
        "not used",
        "only the new",
        "ignores the cache",
        "never to the cached",
    ],
    "The cache is filled but never read: the new queries must also see the cached keys and values.",
)
def cache_unread(attn, x, cache):
    B, T, C = x.shape
    q, k, v = _qkv(attn, x)
    out = _attend(attn, q, k, v, 0, T, B, C)
    if "k" in cache:
        cache["k"], cache["v"] = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
    else:
        cache["k"], cache["v"] = k, v
    return out


@V.mistake(
    "8.3",
    "cache-keeps-last-call",
    ["only the last", "last call", "overwrit", "holds only the", "every position", "replac"],
    "cache['k'] = k keeps only this call's keys: store the concatenation, every position so far.",
)
def cache_last(attn, x, cache):
    B, T, C = x.shape
    q, k_new, v_new = _qkv(attn, x)
    k, v = k_new, v_new
    if "k" in cache:
        k, v = torch.cat([cache["k"], k_new], 2), torch.cat([cache["v"], v_new], 2)
    cache["k"], cache["v"] = k_new, v_new
    return _attend(attn, q, k, v, k.size(2) - T, T, B, C)


@V.mistake(
    "8.3",
    "mask-not-shifted",
    ["shift", "past", "diagonal=past"],
    "tril() lines query 0 up with key 0; the new queries sit after the past: tril(diagonal=past).",
)
def cache_unshifted(attn, x, cache):
    return _cached(attn, x, cache, mask="unshifted")


@V.mistake(
    "8.3", "no-mask", W.NO_MASK, "Without a mask a chunk's queries see the later positions of the chunk."
)
def cache_no_mask(attn, x, cache):
    return _cached(attn, x, cache, mask="none")


@V.mistake(
    "8.3",
    "is-causal-with-past",
    ["is_causal", "shift", "past"],
    "is_causal=True lines query 0 up with key 0, which is right only when the cache is empty.",
)
def cache_is_causal(attn, x, cache):
    B, T, C = x.shape
    q, k, v = _qkv(attn, x)
    if "k" in cache:
        k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
    cache["k"], cache["v"] = k, v
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return attn.proj(y.transpose(1, 2).reshape(B, T, C))


@V.mistake("8.3", "no-scale", W.NO_SCALE, "The scores are not divided by sqrt(head_size).")
def cache_no_scale(attn, x, cache):
    return _cached(attn, x, cache, scale=False)


@V.mistake("8.3", "no-projection", W.NO_PROJ, "attn.proj is never applied to the heads' output.")
def cache_no_proj(attn, x, cache):
    return _cached(attn, x, cache, proj=False)


@V.mistake(
    "8.3",
    "heads-merged-without-transpose",
    W.HEADS_MERGED,
    "(B, nh, T, hs) reshaped straight to (B, T, C) mixes heads and positions: transpose(1, 2) first.",
)
def cache_no_transpose(attn, x, cache):
    return _cached(attn, x, cache, merge="reshape")


@V.mistake(
    "8.3",
    "concatenated-on-heads-axis",
    ["dim", "axis", "positions axis", "heads"],
    "torch.cat(..., dim=1) stacks heads, not positions: the positions are dim 2.",
)
def cache_cat_dim1(attn, x, cache):
    B, T, C = x.shape
    q, k, v = _qkv(attn, x)
    if "k" in cache:
        k, v = torch.cat([cache["k"], k], 1), torch.cat([cache["v"], v], 1)
    cache["k"], cache["v"] = k, v
    k_use = k[:, -attn.n_head :] if k.size(1) > attn.n_head else k
    v_use = v[:, -attn.n_head :] if v.size(1) > attn.n_head else v
    return _attend(attn, q, k_use, v_use, 0, T, B, C)


@V.mistake(
    "8.3",
    "cache-not-split-into-heads",
    ["split into heads", "n_head", "(b, n_head", "shape", "heads"],
    "The cache holds (B, T, C) keys: it must hold them split into heads, (B, n_head, T, head_size).",
)
def cache_flat(attn, x, cache):
    B, T, C = x.shape
    nh, hs = attn.n_head, C // attn.n_head
    k_flat, v_flat = attn.key(x), attn.value(x)
    if "k" in cache:
        k_flat = torch.cat([cache["k"], k_flat], dim=1)
        v_flat = torch.cat([cache["v"], v_flat], dim=1)
    cache["k"], cache["v"] = k_flat, v_flat
    Tk = k_flat.size(1)
    q = attn.query(x).view(B, T, nh, hs).transpose(1, 2)
    k = k_flat.view(B, Tk, nh, hs).transpose(1, 2)
    v = v_flat.view(B, Tk, nh, hs).transpose(1, 2)
    return _attend(attn, q, k, v, Tk - T, T, B, C)


@V.mistake(
    "8.3",
    "new-keys-first",
    ["order", "before", "prepend", "old keys first", "after the old", "after the cached"],
    "torch.cat([k, cache['k']]) puts the new keys before the old: append them after the cached ones.",
)
def cache_prepend(attn, x, cache):
    B, T, C = x.shape
    q, k, v = _qkv(attn, x)
    if "k" in cache:
        k, v = torch.cat([k, cache["k"]], 2), torch.cat([v, cache["v"]], 2)
    cache["k"], cache["v"] = k, v
    return _attend(attn, q, k, v, k.size(2) - T, T, B, C)


@V.mistake("8.3", "values-from-key-layer", ["value"], "v comes from attn.key: use attn.value.")
def cache_v_from_k(attn, x, cache):
    B, T, C = x.shape
    q, k, _ = _qkv(attn, x)
    v = k
    if "k" in cache:
        k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
    cache["k"], cache["v"] = k, v
    return _attend(attn, q, k, v, k.size(2) - T, T, B, C)


# ---------------------------------------------------------------- 8.4 generate_with_cache


@V.correct("8.4", "last-forward-kept")
@torch.no_grad()
def gen_all_forwards(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    logits, _ = model(idx[:, -block_size:], cache=cache)
    for _ in range(max_new_tokens):
        tok = next_token(logits[:, -1, :], **sampling)
        idx = torch.cat([idx, tok], dim=1)
        if cache.length < block_size:
            logits, _ = model(tok, cache=cache)
        else:
            logits, _ = model(idx[:, -block_size:])
    return idx


@V.correct("8.4", "while-loop")
@torch.no_grad()
def gen_while(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    target = idx.size(1) + max_new_tokens
    cache = KVCache(len(model.blocks), block_size)
    logits = model(idx[:, -block_size:], cache=cache)[0]
    while idx.size(1) < target:
        nxt = next_token(logits[:, -1], **sampling)
        idx = torch.cat((idx, nxt), 1)
        if idx.size(1) == target:
            break
        full = cache.length >= block_size
        logits = model(idx[:, -block_size:])[0] if full else model(nxt, cache=cache)[0]
    return idx


@V.correct("8.4", "collect-then-cat")
@torch.no_grad()
def gen_collect(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    context = idx[:, -block_size:]
    logits, _ = model(context, cache=cache)
    new = []
    for step in range(max_new_tokens):
        tok = next_token(logits[:, -1, :], **sampling)
        new.append(tok)
        context = torch.cat([context, tok], dim=1)[:, -block_size:]
        if step + 1 < max_new_tokens:
            if len(cache) < block_size:
                logits, _ = model(tok, cache=cache)
            else:
                logits, _ = model(context)
    return torch.cat([idx, *new], dim=1)


@V.mistake(
    "8.4",
    "new-token-fed-twice",
    ["twice", "again", "already in the cache", "fed twice", "two times"],
    "Each step runs idx[:, -1:] through the model, but that token is already in the cache: run only the new one.",
)
@torch.no_grad()
def gen_twice(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    model(idx[:, -block_size:], cache=cache)
    for _ in range(max_new_tokens):
        if cache.length < block_size:
            logits, _ = model(idx[:, -1:], cache=cache)  # the last token, again
        else:
            logits, _ = model(idx[:, -block_size:])
        idx = torch.cat((idx, next_token(logits[:, -1, :], **sampling)), dim=1)
    return idx


@V.mistake(
    "8.4",
    "recomputes-context",
    ["recompute", "whole context", "speed", "every step", "one new position", "positions your loop", "cache"],
    "The loop recomputes the whole context at every step: the right tokens, but no speed-up.",
)
@torch.no_grad()
def gen_recompute(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block_size:])
        idx = torch.cat((idx, next_token(logits[:, -1, :], **sampling)), dim=1)
    return idx


@V.mistake(
    "8.4",
    "prompt-not-cropped",
    ["crop", "block_size", "longer"],
    "A prompt longer than block_size must be cropped to its last block_size tokens.",
)
@torch.no_grad()
def gen_no_crop(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    logits, _ = model(idx, cache=cache)
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


@V.mistake(
    "8.4",
    "window-never-slides",
    ["full", "slide", "window", "block_size"],
    "Once the cache holds block_size positions it cannot take more: recompute the cropped window.",
)
@torch.no_grad()
def gen_no_slide(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    logits, _ = model(idx[:, -block_size:], cache=cache)
    for i in range(max_new_tokens):
        tok = next_token(logits[:, -1, :], **sampling)
        idx = torch.cat((idx, tok), dim=1)
        if i < max_new_tokens - 1:
            logits, _ = model(tok, cache=cache)
    return idx


@V.mistake(
    "8.4",
    "sampling-options-ignored",
    ["sampling", "do_sample", "**sampling", "options", "greedy"],
    "next_token(logits) without **sampling is always greedy: pass the options on.",
)
@torch.no_grad()
def gen_greedy_only(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    logits, _ = model(idx[:, -block_size:], cache=cache)
    for i in range(max_new_tokens):
        tok = next_token(logits[:, -1, :])
        idx = torch.cat((idx, tok), dim=1)
        if i == max_new_tokens - 1:
            break
        logits, _ = model(tok, cache=cache) if cache.length < block_size else model(idx[:, -block_size:])
    return idx


@V.mistake(
    "8.4",
    "new-cache-every-step",
    ["new cache", "every step", "one cache", "forget", "or a new one", "no cache"],
    "A new KVCache at every step forgets the context: make one before the loop.",
)
@torch.no_grad()
def gen_fresh_cache(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    logits, _ = model(idx[:, -block_size:], cache=KVCache(len(model.blocks), block_size))
    for i in range(max_new_tokens):
        tok = next_token(logits[:, -1, :], **sampling)
        idx = torch.cat((idx, tok), dim=1)
        if i == max_new_tokens - 1:
            break
        logits, _ = model(tok, cache=KVCache(len(model.blocks), block_size))
    return idx


@V.mistake(
    "8.4",
    "first-position-logits",
    ["last position", "[:, -1", "-1", "first position"],
    "logits[:, 0] is the first position's prediction: the next token comes from the last, logits[:, -1].",
)
@torch.no_grad()
def gen_first_logits(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    logits, _ = model(idx[:, -block_size:], cache=cache)
    for i in range(max_new_tokens):
        tok = next_token(logits[:, 0, :], **sampling)
        idx = torch.cat((idx, tok), dim=1)
        if i == max_new_tokens - 1:
            break
        logits, _ = model(tok, cache=cache) if cache.length < block_size else model(idx[:, -block_size:])
    return idx


@V.mistake(
    "8.4",
    "whole-sequence-with-cache",
    ["only the new", "new token", "whole", "twice", "again", "full"],
    "Running all of idx through the model with the cache adds every old position again: run only the new token.",
)
@torch.no_grad()
def gen_whole(model, idx, max_new_tokens, **sampling):
    model.eval()
    block_size = model.block_size
    cache = KVCache(len(model.blocks), block_size)
    logits, _ = model(idx[:, -block_size:], cache=cache)
    for i in range(max_new_tokens):
        idx = torch.cat((idx, next_token(logits[:, -1, :], **sampling)), dim=1)
        if i == max_new_tokens - 1:
            break
        logits, _ = model(idx[:, -block_size:], cache=cache)
    return idx


@V.mistake(
    "8.4",
    "returns-new-tokens-only",
    ["prompt", "shape", "followed by"],
    "Return the prompt followed by the new tokens, (B, T + max_new_tokens).",
)
@torch.no_grad()
def gen_new_only(model, idx, max_new_tokens, **sampling):
    out = gen_all_forwards(model, idx, max_new_tokens, **sampling)
    return out[:, idx.size(1) :]
